"""Drift detection: notice output that degrades while it streams (loops, meta talk, tone, format).

The kernel owns the engine; the detectors come from plugins through
``l0_register_drift_detectors`` (the ``l0-drift`` distribution registers the standard five).

How a run sees the text
    The session hands the run the text added since its last call every few tokens
    (``check_intervals["drift"]``). ``feed`` only appends it: the detectors run when
    ``stride`` new characters have arrived (one window), over a sliding window of the last
    ``window`` tokens. A token is counted as :data:`CHARS_PER_TOKEN` characters, so the window
    has a fixed size in characters and every check costs the same however long the output
    grows. Detectors also see the *baseline* (the first window of the output) to compare the
    recent text with how the answer started, and the chunk that is new since the last check
    for incremental state. Nothing ever rescans the whole content.

Config keys (``[drift]``): ``enabled``, ``detectors``, ``window``, ``threshold``; an explicit
``drift=DriftConfig(...)`` wins field by field over them.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from l0.config import MIN_DRIFT_WINDOW
from l0.errors import ConfigError, GuardrailCheckError, L0PluginError

if TYPE_CHECKING:
    from l0.config import Settings
    from l0.plugins import L0PluginManager

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW",
    "DetectorCheck",
    "DetectorSpec",
    "DriftConfig",
    "DriftDetector",
    "DriftEngine",
    "DriftResult",
    "DriftRun",
    "DriftView",
    "available_detectors",
    "create_drift_engine",
    "resolve_drift",
]

CHARS_PER_TOKEN: Final = 4
"""Characters counted per token when sizing the window (English text averages about four)."""
DEFAULT_WINDOW: Final = 256
"""Tokens in the sliding window (1024 characters)."""
DEFAULT_THRESHOLD: Final = 0.6
"""Score at which a detector reports drift."""
MIN_WINDOW: Final = MIN_DRIFT_WINDOW
"""Smallest window, in tokens: fewer characters than this carry no usable statistics."""
MIN_CHARS: Final = 64
"""Outputs shorter than this are never judged (a check is reported as skipped)."""
STRATEGY: Final = "sliding_window"

Emit = Callable[..., None]


# --- records and config ---------------------------------------------------------------------


class DriftView:
    """What a detector sees at one check. One object per run, updated in place.

    Attributes:
        window: The most recent text, at most ``window_chars`` characters.
        new: The text added since the previous check (feed incremental state from it).
        baseline: The first ``window_chars`` characters of the output; ``""`` until that much
            has arrived.
        head: The start of the output (up to ``window_chars`` characters) while the baseline
            is still filling, then the baseline itself.
        total: Characters received so far.
        window_chars: The window size in characters.
        final: True for the last check of the stream (and for ``validate``).
    """

    __slots__ = ("baseline", "final", "head", "new", "total", "window", "window_chars")

    def __init__(self, window_chars: int) -> None:
        self.window = ""
        self.new = ""
        self.baseline = ""
        self.head = ""
        self.total = 0
        self.window_chars = window_chars
        self.final = False

    @property
    def separate(self) -> bool:
        """True once the recent window no longer overlaps the baseline."""
        return self.total >= 2 * self.window_chars


DetectorCheck = Callable[[DriftView], float]
"""Per-run check: returns a score in [0, 1] for the current view."""


class DriftDetector(Protocol):
    """A configured detector. ``start`` is called once per attempt and returns its check."""

    def start(self) -> DetectorCheck:
        """Fresh per-attempt state; the returned callable is called at every check."""
        ...


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """A drift detector offered by a plugin through ``l0_register_drift_detectors``.

    Attributes:
        name: The name ``DriftConfig.detectors`` and ``[drift] detectors`` select.
        factory: Builds the detector from its options (``DriftConfig.options[name]``); raises
            ``ValueError`` naming a bad option.
        description: One line for listings and error messages.
    """

    name: str
    factory: Callable[[Mapping[str, Any]], DriftDetector]
    description: str = ""


@dataclass(frozen=True, slots=True)
class DriftResult:
    """The verdict of one check.

    Attributes:
        detected: True when at least one detector scored at or above the threshold.
        types: Names of the detectors that did, strongest first.
        confidence: The highest score of any detector, in [0, 1].
        details: Every detector's score by name.
    """

    detected: bool
    types: list[str]
    confidence: float
    details: Mapping[str, float] = field(default_factory=dict)


def _empty_options() -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """How to detect drift; pass as ``l0.run(..., drift=DriftConfig(...))``.

    A field left at ``None`` takes the ``[drift]`` config value, else the default.

    Attributes:
        detectors: Names of registered detectors to run (default: every registered one).
        window: Tokens in the sliding window (counted as 4 characters each; default 256).
        threshold: Score in (0, 1] at which a detector reports drift (default 0.6).
        options: Per-detector options, e.g. ``{"repetition": {"min_repeats": 4}}``.
    """

    detectors: Sequence[str] | None = None
    window: int | None = None
    threshold: float | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty_options)

    def __post_init__(self) -> None:
        if self.detectors is not None:
            if isinstance(self.detectors, str) or not all(
                isinstance(d, str) for d in self.detectors
            ):
                raise TypeError(
                    f"DriftConfig(detectors={self.detectors!r}): expected a list of detector "
                    'names, e.g. ["repetition", "meta_commentary"]'
                )
            if not self.detectors:
                raise ValueError("DriftConfig(detectors=[]): name at least one detector")
            object.__setattr__(self, "detectors", tuple(self.detectors))
        if self.window is not None:
            _check_window(self.window, "DriftConfig(window=…)")
        if self.threshold is not None:
            _check_threshold(self.threshold, "DriftConfig(threshold=…)")
        options: object = self.options  # typed, but callers may pass anything
        if not isinstance(options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in options.items()
        ):
            raise TypeError(
                f"DriftConfig(options={self.options!r}): expected a dict of detector name -> "
                "dict of options"
            )
        object.__setattr__(
            self,
            "options",
            MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.options.items()}),
        )


def _check_window(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_WINDOW:
        raise ValueError(
            f"{where.replace('…', repr(value))}: window must be an int >= {MIN_WINDOW} "
            f"(tokens of {CHARS_PER_TOKEN} characters)"
        )
    return value


def _check_threshold(value: object, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= 1  # NaN fails this too
    ):
        raise ValueError(
            f"{where.replace('…', repr(value))}: threshold must be a number > 0 and <= 1"
        )
    return float(value)


# --- the registry ---------------------------------------------------------------------------

# Detector lookups are cached per plugin manager and rebuilt when its registrations change
# (``pm.version``), so ``l0.run`` does not call the registration hook per session.
_REGISTRY: weakref.WeakKeyDictionary[Any, tuple[int, dict[str, tuple[DetectorSpec, str]]]] = (
    weakref.WeakKeyDictionary()
)


def available_detectors(pm: L0PluginManager) -> dict[str, tuple[DetectorSpec, str]]:
    """Registered detectors by name, with the plugin that offers each.

    Raises:
        L0PluginError: a record is not a ``DetectorSpec``, or two plugins offer one name.
    """
    cached = _REGISTRY.get(pm)
    if cached is not None and cached[0] == pm.version:
        return cached[1]
    found: dict[str, tuple[DetectorSpec, str]] = {}
    caller = pm.hook.l0_register_drift_detectors
    # get_hookimpls tells us which plugin offered each record (for the duplicate message).
    for impl in caller.get_hookimpls():
        records: Iterable[Any] | None = impl.function()  # type: ignore[assignment]
        for spec in records or ():
            if not isinstance(spec, DetectorSpec):
                raise L0PluginError(
                    f"plugin {impl.plugin_name!r}: l0_register_drift_detectors yielded "
                    f"{spec!r}; expected l0.drift.DetectorSpec"
                )
            if spec.name in found:
                raise L0PluginError(
                    f"drift detector {spec.name!r} is offered by both plugin "
                    f"{found[spec.name][1]!r} and plugin {impl.plugin_name!r}; disable one"
                )
            found[spec.name] = (spec, impl.plugin_name)
    _REGISTRY[pm] = (pm.version, found)
    return found


def _describe(found: Mapping[str, tuple[DetectorSpec, str]]) -> str:
    return ", ".join(f"{name} ({found[name][1]})" for name in sorted(found))


# --- the engine -----------------------------------------------------------------------------


class DriftRun:
    """Drift state of one attempt: ``feed`` deltas, then ``finish``."""

    __slots__ = (
        "_checks",
        "_emit",
        "_engine",
        "_evaluated",
        "_pending",
        "_pending_len",
        "_stride",
        "_view",
    )

    def __init__(self, engine: DriftEngine, emit: Emit | None) -> None:
        self._engine = engine
        self._emit = emit
        checks = []
        for name, det in engine.detectors:
            try:
                checks.append((name, det.start()))
            except Exception as exc:
                raise engine._failed(name, exc) from exc
        self._checks = tuple(checks)
        self._view = DriftView(engine.window_chars)
        self._pending: list[str] = []
        self._pending_len = 0
        self._stride = engine.stride
        self._evaluated = False

    @property
    def wants(self) -> int:
        """Characters still to come before the next check (a caller may hold them until then)."""
        return self._stride - self._pending_len

    def feed(self, delta: str) -> DriftResult | None:
        """Take the text added since the last call; check once ``stride`` characters are new.

        Returns:
            The verdict when a check ran, else ``None``.
        """
        # Hot path: called every few tokens; appending is all it does between checks.
        self._pending.append(delta)
        self._pending_len += len(delta)
        if self._pending_len < self._stride:
            return None
        return self._check(final=False)

    def finish(self, content: str) -> DriftResult | None:
        """Check whatever arrived since the last check, once the stream has ended.

        ``content`` is the whole answer; it is used only when nothing was fed (a session that
        never reached a check interval), and then only its start and end are read.
        """
        if not self._evaluated and not self._pending and self._view.total == 0 and content:
            self._pending.append(content)
            self._pending_len = len(content)
        return self._check(final=True)

    def _check(self, *, final: bool) -> DriftResult | None:
        emit = self._emit
        view = self._view
        if view.total + self._pending_len < MIN_CHARS:
            # Keep the text pending: incremental detectors must see every character once.
            if final and emit is not None:
                emit(
                    "DRIFT_CHECK_SKIPPED",
                    reason=f"too little text ({view.total + self._pending_len} characters; "
                    f"checks need {MIN_CHARS})",
                )
            return None
        new = "".join(self._pending) if len(self._pending) != 1 else self._pending[0]
        self._pending.clear()
        self._pending_len = 0
        size = view.window_chars
        view.total += len(new)
        view.new = new
        view.final = final
        # O(window + new): the window never grows past its size.
        view.window = (view.window + new)[-size:] if len(new) < size else new[-size:]
        if not view.baseline:
            view.head = (view.head + new[: size - len(view.head)])[:size]
            if len(view.head) >= size:
                view.baseline = view.head
        if not new and self._evaluated:
            return None
        self._evaluated = True
        started = 0.0
        if emit is not None:
            started = time.perf_counter()
            emit(
                "DRIFT_CHECK_START",
                checkpoint=view.window,
                token_count=view.total // CHARS_PER_TOKEN,
                strategy=STRATEGY,
            )
        result = self._engine.judge(self._checks, view)
        if emit is not None:
            emit(
                "DRIFT_CHECK_RESULT",
                detected=result.detected,
                score=result.confidence,
                metrics=dict(result.details),
                threshold=self._engine.threshold,
            )
            emit("DRIFT_CHECK_END", duration_ms=(time.perf_counter() - started) * 1000)
        return result


class DriftEngine:
    """Configured drift detection for a session; the runtime calls ``start`` per attempt."""

    __slots__ = (
        "detectors",
        "names",
        "plugins",
        "stride",
        "threshold",
        "window_chars",
        "window_tokens",
    )

    def __init__(
        self,
        detectors: Sequence[tuple[str, DriftDetector]],
        window: int,
        threshold: float,
        plugins: Mapping[str, str] | None = None,
    ) -> None:
        self.detectors = tuple(detectors)
        self.plugins: Mapping[str, str] = dict(plugins or {})
        self.names = tuple(name for name, _ in self.detectors)
        self.window_tokens = window
        self.window_chars = window * CHARS_PER_TOKEN
        # One window between checks: each check costs O(window), so this keeps the cost per
        # character constant (about 0.05 us with the standard detectors); loops and collapses
        # persist, so a check per window still catches them within a window of text.
        self.stride = max(MIN_CHARS, self.window_chars)
        self.threshold = threshold

    def __repr__(self) -> str:
        return (
            f"DriftEngine(detectors={list(self.names)!r}, window={self.window_tokens}, "
            f"threshold={self.threshold})"
        )

    def start(self, emit: Emit | None = None) -> DriftRun:
        """New per-attempt state. ``emit(kind, **fields)`` receives DRIFT_CHECK_* events."""
        return DriftRun(self, emit)

    def validate(self, text: str) -> DriftResult | None:
        """Judge a whole text at once (a checkpoint before a continuation builds on it)."""
        run = DriftRun(self, None)
        # Only the start (baseline) and the end (window) matter to the statistics; the
        # incremental detectors read ``new``, which is bounded to keep this O(window).
        size = self.window_chars
        if len(text) > 3 * size:
            run._view.head = run._view.baseline = text[:size]
            run._view.total = len(text) - 2 * size
            run._pending.append(text[-2 * size :])
            run._pending_len = 2 * size
        else:
            run._pending.append(text)
            run._pending_len = len(text)
        return run._check(final=True)

    def _failed(self, name: str, exc: BaseException) -> GuardrailCheckError:
        plugin = self.plugins.get(name)
        where = f"drift detector {name!r}" + (f" (from plugin {plugin!r})" if plugin else "")
        return GuardrailCheckError(
            f"{where} raised {type(exc).__name__}: {exc}; this is a bug in the detector, not a "
            "model failure, so it is not retried",
            detector=name,
            plugin=plugin,
        )

    def judge(self, checks: Sequence[tuple[str, DetectorCheck]], view: DriftView) -> DriftResult:
        """Run every detector over ``view`` and combine their scores."""
        threshold = self.threshold
        details: dict[str, float] = {}
        hits: list[str] = []
        name = ""
        try:
            for name, check in checks:
                score = float(check(view))
                if score < 0:
                    score = 0.0
                elif score > 1.0:
                    score = 1.0
                details[name] = score
                if score >= threshold:
                    hits.append(name)
        except Exception as exc:
            # A bug in a detector is not a model failure: raised at once (#8 item 7).
            raise self._failed(name, exc) from exc
        if len(hits) > 1:
            hits.sort(key=lambda n: -details[n])  # stable: ties keep the detectors' order
        confidence = max(details.values(), default=0.0)
        return DriftResult(bool(hits), hits, confidence, details)


def create_drift_engine(config: DriftConfig, pm: L0PluginManager) -> DriftEngine:
    """Build the engine for ``config`` from the detectors registered with ``pm``.

    Raises:
        L0PluginError: no plugin registers drift detectors (``pip install l0-drift``).
        ValueError: an unknown detector name or option.
    """
    found = available_detectors(pm)
    if not found:
        raise L0PluginError(
            "drift detection needs detectors, and no plugin registers any: "
            "pip install l0-drift (or enable its 'drift' plugin if it is disabled)"
        )
    names = list(config.detectors) if config.detectors is not None else sorted(found)
    for name in [*names, *config.options]:
        if name not in found:
            raise ValueError(
                f"drift detector {name!r} is not registered; choose one of: {_describe(found)}"
            )
    detectors = []
    for name in dict.fromkeys(names):
        spec = found[name][0]
        try:
            detector = spec.factory(config.options.get(name, MappingProxyType({})))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"drift detector {name!r}: {exc}") from exc
        detectors.append((name, detector))
    return DriftEngine(
        detectors,
        config.window if config.window is not None else DEFAULT_WINDOW,
        config.threshold if config.threshold is not None else DEFAULT_THRESHOLD,
        {name: found[name][1] for name, _ in detectors},
    )


def resolve_drift(value: Any, pm: L0PluginManager, settings: Settings) -> DriftEngine | None:
    """The drift engine in force for ``l0.run(drift=value)``, or ``None`` for none.

    ``value`` is ``True``, ``False``, ``None`` (config decides: on when ``drift.enabled`` is
    true) or a :class:`DriftConfig`, whose fields win over the ``[drift]`` keys.

    Raises:
        ConfigError: a ``[drift]`` value the engine cannot use; the message names its source.
        L0PluginError: no plugin registers drift detectors.
    """
    if value is False:
        return None
    if value is None:
        if not settings.get("drift", "enabled", False):
            return None
        config = DriftConfig()
    elif value is True:
        config = DriftConfig()
    elif isinstance(value, DriftConfig):
        config = value
    else:
        raise TypeError(f"drift={value!r}: expected True, False, None or l0.DriftConfig(...)")
    merged: dict[str, Any] = {}
    for key, check in (("window", _check_window), ("threshold", _check_threshold)):
        if getattr(config, key) is None and settings.get("drift", key) is not None:
            source = settings.sources.get(f"drift.{key}", "config")
            raw = settings.get("drift", key)
            try:
                merged[key] = check(raw, f"{source}: drift.{key} = …")
            except ValueError as exc:
                raise ConfigError(str(exc), key=f"drift.{key}", value=raw) from None
    if config.detectors is None and settings.get("drift", "detectors"):
        names = list(settings.get("drift", "detectors"))
        found = available_detectors(pm)
        unknown = [n for n in names if n not in found]
        if found and unknown:
            source = settings.sources.get("drift.detectors", "config")
            raise ConfigError(
                f"{source}: drift.detectors = {names!r}: {unknown[0]!r} is not registered; "
                f"choose from: {_describe(found)}",
                key="drift.detectors",
                value=names,
            )
        merged["detectors"] = names
    if merged:
        config = DriftConfig(
            detectors=merged.get("detectors", config.detectors),
            window=merged.get("window", config.window),
            threshold=merged.get("threshold", config.threshold),
            options=config.options,
        )
    return create_drift_engine(config, pm)
