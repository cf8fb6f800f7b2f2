"""Provider health shared across sessions: circuit breakers, ``Retry-After`` windows, retry budgets.

Every session that knows which provider and model it talks to (``provider=`` on ``l0.run``, or
the base URL and model an SDK wrap such as ``l0-openai`` supplies) consults one *health store*
when an attempt starts and tells it how the attempt ended. Nothing happens per token.

* **Circuit breaker** per key: ``failure_threshold`` outage failures (network errors, timeouts,
  5xx; not rate limits, model or content errors) in a row within ``failure_window`` seconds open
  it. While open, attempts on that key fail at once with :class:`~l0.errors.CircuitOpenError`, so
  the session moves to its next fallback. After ``open_seconds`` one probe goes through
  (half-open); its success closes the circuit, its failure opens it again.
* **Shared Retry-After**: a ``Retry-After`` on a 429/503 holds every session of that key back
  until the time is up: a session with a fallback moves on, one without waits it out (up to
  ``Retry.max_retry_after``).
* **Retry budget**: retries of a key may add at most ``retry_budget`` times the requests of the
  last ``budget_window`` seconds (at least ``retry_budget_min``); a refused retry moves to the
  fallback or fails fast with :class:`~l0.errors.RetryBudgetExhaustedError`.
* **First contact**: while a key has no recent success in this process, one attempt goes first
  and the others of this process wait (at most ``contact_wait`` seconds) for its answer.

The store is a plugin (``l0_open_health_store``); the builtin one lives in this process.
``l0-redis`` shares it between processes. A shared store that fails or is slow never blocks a
stream: L0 logs once and carries on with this process's own knowledge.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from l0.config import Settings
    from l0.plugins import L0PluginManager

__all__ = [
    "Admission",
    "Health",
    "HealthStore",
    "LocalHealthStore",
    "health_status",
    "provider_key",
]

log = logging.getLogger("l0")
_now = time.monotonic

Verdict = Literal["go", "probe", "open", "wait"]


def _check(name: str, value: object, *, minimum: float, integer: bool, above: bool) -> None:
    kind = "an int" if integer else "a number"
    relation = ">" if above else ">="
    bad_type = isinstance(value, bool) or not isinstance(value, int if integer else int | float)
    if bad_type or (isinstance(value, float) and math.isnan(value)):
        raise TypeError(f"Health({name}={value!r}): expected {kind} {relation} {minimum:g}")
    number = float(value)  # type: ignore[arg-type]
    if (number <= minimum if above else number < minimum) or math.isinf(number):
        raise ValueError(f"Health({name}={value!r}): expected {kind} {relation} {minimum:g}")


@dataclass(frozen=True, slots=True)
class Health:
    """Provider-health thresholds (``[tool.l0.health]``, or ``l0.run(..., health=...)``).

    Attributes:
        enabled: Consult the health store at all.
        failure_threshold: Outage failures in a row (within ``failure_window``) that open a
            circuit.
        failure_window: Seconds in which those failures must fall.
        open_seconds: How long an open circuit refuses attempts before one probe may go.
        retry_budget: Retries allowed per request of the window (``0.2`` = 20%).
        retry_budget_min: Retries always allowed per window, whatever the traffic.
        budget_window: Seconds of the retry budget's sliding window.
        contact_wait: Longest wait (seconds) for the first attempt on a key that has no
            recent success; ``0`` lets every attempt go at once.
        store_timeout: Longest wait (seconds) for a shared store before local knowledge
            answers instead.
    """

    enabled: bool = True
    failure_threshold: int = 5
    failure_window: float = 30.0
    open_seconds: float = 30.0
    retry_budget: float = 0.2
    retry_budget_min: int = 10
    budget_window: float = 10.0
    contact_wait: float = 5.0
    store_timeout: float = 0.005

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"Health(enabled={self.enabled!r}): expected True or False")
        _check("failure_threshold", self.failure_threshold, minimum=1, integer=True, above=False)
        _check("failure_window", self.failure_window, minimum=0, integer=False, above=True)
        _check("open_seconds", self.open_seconds, minimum=0, integer=False, above=True)
        _check("retry_budget", self.retry_budget, minimum=0, integer=False, above=False)
        _check("retry_budget_min", self.retry_budget_min, minimum=0, integer=True, above=False)
        _check("budget_window", self.budget_window, minimum=0, integer=False, above=True)
        _check("contact_wait", self.contact_wait, minimum=0, integer=False, above=False)
        _check("store_timeout", self.store_timeout, minimum=0, integer=False, above=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Health:
        """The thresholds configured in ``[tool.l0.health]`` / ``L0_HEALTH_*``.

        Raises:
            ConfigError: a value is out of range; the message names the key and its source.
        """
        from l0.errors import ConfigError

        values = dict(settings.values.get("health", {}))
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            sources = ", ".join(
                sorted({settings.sources.get(f"health.{k}", "config") for k in values})
            )
            raise ConfigError(f"{sources}: [tool.l0.health]: {exc}", key="health") from None


HEALTH_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Health))
"""The keys of ``[tool.l0.health]``."""


def provider_key(base_url: str, model: str) -> str:
    """The health key of an SDK call: ``base URL`` + ``|`` + ``model`` (trailing ``/`` removed).

    Args:
        base_url: The client's base URL, e.g. ``https://api.openai.com/v1``.
        model: The model of the request.
    """
    return f"{str(base_url).rstrip('/')}|{model}"


@dataclass(frozen=True, slots=True)
class Admission:
    """What the store says about an attempt that wants to start.

    Attributes:
        verdict: ``"go"``; ``"probe"`` (the one attempt let through a half-open circuit);
            ``"open"`` (the circuit refuses it); ``"wait"`` (a shared ``Retry-After`` runs).
        wait: Seconds until the key may be tried again (``open`` and ``wait``).
        half_open: This admission turned an open circuit half-open.
    """

    verdict: Verdict
    wait: float = 0.0
    half_open: bool = False


GO = Admission("go")


@runtime_checkable
class HealthStore(Protocol):
    """Where health knowledge lives; every update is atomic per key.

    Times are durations in seconds, so each store may use its own clock. Methods are called
    only when an attempt starts or ends, never per token.
    """

    async def admit(self, key: str, retry: bool, config: Health) -> Admission:
        """May an attempt on ``key`` start? Counts first attempts for the retry budget."""
        ...

    async def record(self, key: str, ok: bool, outage: bool, probe: bool, config: Health) -> str:
        """Record an attempt's end; returns ``"opened"``, ``"closed"`` or ``""``."""
        ...

    async def note_retry_after(self, key: str, seconds: float) -> None:
        """Hold ``key`` back for ``seconds`` (a window already longer is kept)."""
        ...

    async def take_retry_token(self, key: str, config: Health) -> tuple[bool, int, int]:
        """Take one retry from the budget: ``(allowed, retries, requests)`` in the window."""
        ...

    async def status(self) -> Mapping[str, Any]:
        """The store's own health: at least ``{"ok": bool}``."""
        ...


class _Key:
    __slots__ = ("fail_start", "failures", "open_until", "probe_until", "ra_until", "req", "rty")

    def __init__(self) -> None:
        self.failures = 0
        self.fail_start = 0.0
        self.open_until: float | None = None  # None: closed
        self.probe_until = 0.0  # > 0: half-open with a probe out until then
        self.ra_until = 0.0
        self.req: deque[float] = deque()
        self.rty: deque[float] = deque()


class LocalHealthStore:
    """The in-process store: plain dicts, no locks needed on one event loop at a time."""

    def __init__(self) -> None:
        """Start with no knowledge."""
        self._keys: dict[str, _Key] = {}

    def _get(self, key: str) -> _Key:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
        return state

    async def admit(self, key: str, retry: bool, config: Health) -> Admission:
        """See :meth:`HealthStore.admit`."""
        now = _now()
        state = self._get(key)
        if state.ra_until > now:
            return Admission("wait", state.ra_until - now)
        if state.open_until is not None:
            if state.probe_until > now:
                return Admission("open", state.probe_until - now)
            if state.probe_until == 0.0 and now < state.open_until:
                return Admission("open", state.open_until - now)
            # Half-open; a probe that never reported back (its process died) is replaced
            # once its lease of one open period has run out.
            first = state.probe_until == 0.0
            state.probe_until = now + config.open_seconds
            return Admission("probe", half_open=first)
        if not retry:
            _trim(state.req, now - config.budget_window)
            state.req.append(now)
        return GO

    async def record(self, key: str, ok: bool, outage: bool, probe: bool, config: Health) -> str:
        """See :meth:`HealthStore.record`."""
        now = _now()
        state = self._get(key)
        if state.open_until is not None:
            # Only the probe speaks for an open circuit: attempts admitted before it opened
            # may end long after and say nothing about the provider now.
            if not probe:
                return ""
            if ok or not outage:
                state.open_until, state.probe_until, state.failures = None, 0.0, 0
                return "closed"
            state.open_until, state.probe_until = now + config.open_seconds, 0.0
            return "opened"
        if ok or not outage:
            if ok:
                state.failures = 0
            return ""
        if state.failures == 0 or now - state.fail_start > config.failure_window:
            state.failures, state.fail_start = 0, now
        state.failures += 1
        if state.failures >= config.failure_threshold:
            state.open_until, state.probe_until, state.failures = now + config.open_seconds, 0.0, 0
            return "opened"
        return ""

    async def note_retry_after(self, key: str, seconds: float) -> None:
        """See :meth:`HealthStore.note_retry_after`."""
        state = self._get(key)
        state.ra_until = max(state.ra_until, _now() + seconds)

    async def take_retry_token(self, key: str, config: Health) -> tuple[bool, int, int]:
        """See :meth:`HealthStore.take_retry_token`."""
        now = _now()
        state = self._get(key)
        since = now - config.budget_window
        _trim(state.req, since)
        _trim(state.rty, since)
        retries, requests = len(state.rty), len(state.req)
        if retries + 1 > max(config.retry_budget_min, config.retry_budget * requests):
            return False, retries, requests
        state.rty.append(now)
        return True, retries + 1, requests

    async def status(self) -> Mapping[str, Any]:
        """See :meth:`HealthStore.status`."""
        return {"ok": True, "store": "local", "keys": len(self._keys)}


def _trim(times: deque[float], since: float) -> None:
    while times and times[0] < since:
        times.popleft()


_RETRY_DOWN = 1.0
"""Seconds a failed shared store is left alone before L0 tries it again."""


class HealthService:
    """One per plugin manager: the store (with a local mirror) and the first-contact gates."""

    def __init__(self, shared: HealthStore | None, name: str) -> None:
        """Wrap ``shared`` (or nothing) with the local store every update also goes to."""
        self.local = LocalHealthStore()
        self.shared = shared
        self.name = name
        self._down_until = 0.0
        self._warned = False
        self.version = -1
        self._pending: set[asyncio.Future[Any]] = set()
        self._answered: dict[str, bool] = {}
        self._scouts: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[None]]
        ] = weakref.WeakKeyDictionary()

    async def _call(self, name: str, config: Health, *args: Any) -> Any:
        local = await getattr(self.local, name)(*args)
        shared = self.shared
        if shared is None or _now() < self._down_until:
            return local
        task = asyncio.ensure_future(getattr(shared, name)(*args))
        try:
            async with asyncio.timeout(config.store_timeout):
                answer = await asyncio.shield(task)
        except TimeoutError:
            # Slow, not broken: local knowledge answers this once, and the call goes on in
            # the background (a first connection, say), so the update still lands.
            self._pending.add(task)
            task.add_done_callback(self._finished)
            return local
        except Exception as exc:
            self._failed(exc)
            return local
        if self._warned:
            self._warned = False
            log.info("l0: the shared health store %s answers again", self.name)
        return answer

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed(task.exception())  # type: ignore[arg-type]

    def _failed(self, exc: BaseException) -> None:
        self._down_until = _now() + _RETRY_DOWN
        if not self._warned:
            self._warned = True
            log.warning(
                "l0: the shared health store %s failed (%s); carrying on with this "
                "process's own knowledge until it answers again",
                self.name,
                exc,
            )

    async def admit(self, key: str, retry: bool, config: Health) -> Admission:
        """Ask the store; see :meth:`HealthStore.admit`."""
        if self.shared is None:  # the common case: no extra coroutine, no lookups
            return await self.local.admit(key, retry, config)
        answer: Admission = await self._call("admit", config, key, retry, config)
        return answer

    async def record(self, key: str, ok: bool, outage: bool, probe: bool, config: Health) -> str:
        """Tell the store; see :meth:`HealthStore.record`."""
        self._answered[key] = ok
        if self.shared is None:
            return await self.local.record(key, ok, outage, probe, config)
        transition: str = await self._call("record", config, key, ok, outage, probe, config)
        return transition

    async def note_retry_after(self, key: str, seconds: float, config: Health) -> None:
        """Tell the store; see :meth:`HealthStore.note_retry_after`."""
        await self._call("note_retry_after", config, key, seconds)

    async def take_retry_token(self, key: str, config: Health) -> tuple[bool, int, int]:
        """Ask the store; see :meth:`HealthStore.take_retry_token`."""
        answer: tuple[bool, int, int] = await self._call("take_retry_token", config, key, config)
        return answer

    # --- first contact: one attempt of this process goes first on a key not known to answer ---

    def _gates(self) -> dict[str, asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        gates = self._scouts.get(loop)
        if gates is None:
            gates = self._scouts[loop] = {}
        return gates

    async def wait_turn(self, key: str, config: Health) -> asyncio.Future[None] | None:
        """Wait while another attempt of this process makes first contact with ``key``.

        Returns the gate this attempt now holds (it goes first), or ``None``.
        """
        if config.contact_wait <= 0 or self._answered.get(key):
            return None
        gates = self._gates()
        deadline = _now() + config.contact_wait
        while True:
            gate = gates.get(key)
            if gate is None or gate.done():
                mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                gates[key] = mine
                return mine
            left = deadline - _now()
            if left <= 0:
                return None
            try:
                async with asyncio.timeout(left):
                    await asyncio.shield(gate)
            except TimeoutError:
                return None
            if self._answered.get(key):
                return None

    def answered(self, key: str) -> None:
        """The provider answered (a first item arrived): the key needs no first contact."""
        self._answered[key] = True

    def release(self, key: str, gate: asyncio.Future[None]) -> None:
        """Let the attempts waiting behind ``gate`` go."""
        if not gate.done():
            gate.set_result(None)
        gates = self._scouts.get(gate.get_loop())
        if gates is not None and gates.get(key) is gate:
            del gates[key]

    async def status(self) -> dict[str, Any]:
        """The store's own health, and whether knowledge is shared."""
        report: dict[str, Any] = {"store": self.name, "shared": self.shared is not None}
        if self.shared is None:
            report.update(await self.local.status())
            return report
        try:
            async with asyncio.timeout(1.0):
                report.update(await self.shared.status())
        except Exception as exc:
            report.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        report["ok"] = bool(report.get("ok"))
        return report


class SessionHealth:
    """The health keys of one session's streams and what its current attempt holds."""

    __slots__ = ("active", "config", "gate", "keys", "refused", "service")

    def __init__(self, service: HealthService, config: Health, keys: tuple[str | None, ...]):
        self.service = service
        self.config = config
        self.keys = keys
        self.active: tuple[str, bool] | None = None
        """(key, is probe) of the attempt in flight, once admitted."""
        self.gate: tuple[str, asyncio.Future[None]] | None = None
        self.refused = False
        """The last retry was refused by the retry budget."""

    def release(self) -> None:
        """Let attempts waiting behind this session's first contact go."""
        gate = self.gate
        if gate is not None:
            self.gate = None
            self.service.release(*gate)


_services: weakref.WeakKeyDictionary[L0PluginManager, HealthService] = weakref.WeakKeyDictionary()


def health_service(pm: L0PluginManager, settings: Settings) -> HealthService:
    """The health service of ``pm``: asks ``l0_open_health_store`` once, then cached."""
    service = _services.get(pm)
    if service is None or service.version != pm.version:
        from l0.errors import L0PluginError

        try:
            shared = pm.hooks.open_health_store(settings)
        except L0PluginError as exc:
            # Health is an optimisation: a broken store plugin must not stop every stream.
            log.error("l0: %s; provider health stays in this process", exc)
            shared = None
        if shared is not None and not isinstance(shared, HealthStore):
            raise L0PluginError(
                f"l0_open_health_store returned {type(shared).__name__}; expected an object "
                "with admit, record, note_retry_after, take_retry_token and status"
            )
        name = getattr(shared, "name", type(shared).__name__) if shared is not None else "local"
        service = HealthService(shared, str(name))
        service.version = pm.version
        _services[pm] = service
    return service


async def health_status(plugins: L0PluginManager | None = None) -> dict[str, Any]:
    """Report the health store in use: its name, whether it is shared, and its own health.

    Args:
        plugins: The plugin manager (the default one if omitted).

    Returns:
        ``{"store": name, "shared": bool, "ok": bool, ...}``; a shared store adds its own
        fields (``l0-redis``: ``url``, ``latency_ms`` or ``error``).
    """
    from l0.config import load_config
    from l0.plugins import default_plugin_manager

    pm = plugins if plugins is not None else default_plugin_manager()
    return await health_service(pm, load_config()).status()
