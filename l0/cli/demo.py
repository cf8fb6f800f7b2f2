"""The scenes of ``l0 demo``: the real OpenAI SDK against a local server that misbehaves on cue.

Each scene starts a :class:`l0.testing.ChaosServer` with a fault script, sends one streaming
request through ``openai.AsyncOpenAI`` wrapped by L0, and reports what happened. The scenes know
nothing about terminals: a :class:`Watcher` sees every stream event, and :func:`play` returns
one :class:`SceneReport` per scene, which the command renders as a table or as JSON.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

import l0

if TYPE_CHECKING:
    from l0.testing import ChaosServer, Fault

__all__ = [
    "SCENES",
    "Release",
    "Scene",
    "SceneReport",
    "Watcher",
    "play",
    "scene_names",
    "select_scenes",
]

ANSWER = (
    "Streams fail in production: connections drop, providers stall, models ramble. "
    "L0 retries what is worth retrying, continues from the last good token, and checks the "
    "answer while it streams."
)
PROMPT = "Why do LLM apps need a reliability layer?"
MESSAGES: Any = [{"role": "user", "content": PROMPT}]
LOOP = "I keep saying the same thing. " * 40
AS_AN_AI = "As an AI language model, I cannot have opinions about reliability layers."
# The server cuts this answer off before the JSON closes; L0 repairs the end.
TRUNCATED_JSON = (
    'Here is the release: {"name": "L0", "version": "0.1", '
    '"features": ["retries", "fallbacks", "guardrails", "structured output"'
)


class Release(BaseModel):
    """What the structured-output scene parses the answer into."""

    name: str
    version: str
    features: list[str]


class Watcher(Protocol):
    """Sees a scene as it runs (the live view, or nothing for ``--json``)."""

    def begin(self, scene: Scene) -> None:
        """A scene starts."""

    def event(self, event: l0.Event) -> None:
        """A stream event arrived (token, reset, error, complete ...)."""

    def end(self, report: SceneReport) -> None:
        """The scene ended."""


@dataclass(frozen=True, slots=True)
class SceneReport:
    """What one scene did; the summary table and ``--json`` print these fields.

    Attributes:
        scene: The scene's name (``--scene NAME``).
        title: One line saying what goes wrong.
        ok: True when L0 delivered a whole answer.
        requests: HTTP requests the server received.
        retries: Retries over the whole session, every model together.
        network_retries: Of those, retries that did not count toward ``Retry.attempts``.
        model_retries: Of those, retries that counted toward ``Retry.attempts``.
        fallback: Index of the model that answered (0 = the primary).
        seconds: Wall time of the scene.
        tokens: Tokens in the final answer.
        errors: Type names of the failures L0 recovered from (or the one that ended it).
        text: The final answer as the consumer reads it.
        note: What the scene shows, e.g. where a continuation joined.
    """

    scene: str
    title: str
    ok: bool
    requests: int
    retries: int
    network_retries: int
    model_retries: int
    fallback: int
    seconds: float
    tokens: int
    errors: tuple[str, ...]
    text: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        data = asdict(self)
        data["errors"] = list(self.errors)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True, slots=True)
class Scene:
    """One demo scene: a fault script and the L0 options that recover from it.

    Attributes:
        name: Short name for ``--scene``.
        title: One line saying what goes wrong.
        script: Faults for the server's requests, in order.
        model_scripts: Scripts of their own for some model names.
        options: Keyword options for ``l0.wrap`` (built per run: some are stateful).
        kind: ``"text"`` (read the answer), ``"structured"`` (parse it into :class:`Release`)
            or ``"race"`` (race two models with ``l0.race_stream``; the first to stream leads).
    """

    name: str
    title: str
    script: Callable[[], Sequence[Fault]]
    model_scripts: Callable[[], Mapping[str, Sequence[Fault]]] = dict
    options: Callable[[], dict[str, Any]] = dict
    kind: str = "text"


def _retry(**overrides: Any) -> l0.Retry:
    values: dict[str, Any] = {"base_delay": 0.05, "max_delay": 0.2, "seed": 7}
    values.update(overrides)
    return l0.Retry(**values)


def _scenes() -> tuple[Scene, ...]:
    from l0.testing import Fault

    return (
        Scene(
            "rate-limit",
            "rate limited, then the connection drops mid-answer",
            lambda: [
                Fault.status(429, headers={"Retry-After": "0.1"}),
                Fault.drop_after(6),
                Fault.ok(),
            ],
        ),
        Scene(
            "continue",
            "the connection drops; the next request continues where the answer broke off",
            # The continuing model repeats " L0 retries" at the seam; L0 removes the repeat.
            lambda: [
                Fault.drop_after(12),
                Fault.ok(text=" L0 retries what is worth retrying, and resumes."),
            ],
            options=lambda: {
                "continue_from_last_good_token": True,
                "check_intervals": {"checkpoint": 4},
            },
        ),
        Scene(
            "guardrail",
            "a meta answer about being an AI is rejected by the guardrails",
            lambda: [Fault.ok(text=AS_AN_AI), Fault.ok()],
            options=lambda: {"guardrails": l0.Guardrails.recommended()},
        ),
        Scene(
            "drift",
            "a looping answer is cut off by drift detection",
            lambda: [Fault.ok(text=LOOP), Fault.ok()],
            options=lambda: {"drift": True},
        ),
        Scene(
            "fallback",
            "the primary model stalls, then is down; the fallback model answers",
            list,
            model_scripts=lambda: {
                "demo-large": [Fault.stall_after(3, seconds=5), *[Fault.status(503)] * 9]
            },
            options=lambda: {
                "fallback_models": ["demo-small"],
                # Retry the stalled model first (by default a stall goes to the fallback at
                # once, see Retry.fallback_on), so the scene shows retries, then the fallback.
                "retry": _retry(max_retries=2, fallback_on=()),
            },
        ),
        Scene(
            "structured",
            "a JSON answer is cut off; L0 repairs it into a Pydantic model",
            lambda: [Fault.ok(text=TRUNCATED_JSON)],
            kind="structured",
        ),
        Scene(
            "race",
            "two models race; the fast one leads, then stalls for good; the steady one wins",
            list,
            model_scripts=lambda: {
                "demo-fast": [Fault.stall_after(3, seconds=30)] * 2,
                # Starts late, so the fast model leads the race at first.
                "demo-steady": [Fault.slow_first_token(0.5)],
            },
            options=lambda: {"retry": _retry(max_retries=1)},
            kind="race",
        ),
    )


SCENES: tuple[Scene, ...] = _scenes()
"""Every scene, in the order ``l0 demo`` plays them."""


def scene_names() -> list[str]:
    """Names accepted by ``--scene``."""
    return [scene.name for scene in SCENES]


def select_scenes(names: Sequence[str]) -> list[Scene]:
    """The scenes named (all of them for an empty list), in the order given.

    Raises:
        ValueError: a name is not a scene; the message lists the scenes.
    """
    if not names:
        return list(SCENES)
    by_name = {scene.name: scene for scene in SCENES}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(
            f"--scene {unknown[0]!r}: no such scene; choose one of: {', '.join(by_name)}"
        )
    return [by_name[name] for name in names]


@dataclass(slots=True)
class _Seen:
    errors: list[str] = field(default_factory=list)


async def _watch(events: Any, watcher: Watcher, seen: _Seen) -> None:
    async for event in events:
        if event.is_error and event.error is not None:
            seen.errors.append(type(event.error).__name__)
        watcher.event(event)


@dataclass(slots=True)
class _Outcome:
    ok: bool
    text: str
    sessions: list[l0.State]
    note: str = ""


async def _text(sdk: Any, options: dict[str, Any], watcher: Watcher, seen: _Seen) -> _Outcome:
    client = l0.wrap(sdk, **options)
    result = client.chat.completions.create(model="demo-large", messages=MESSAGES, stream=True)
    state: l0.State = result.state
    ok = True
    try:
        await _watch(result, watcher, seen)
    except l0.L0Error as exc:
        ok = False
        seen.errors.append(type(exc).__name__)
    note = ""
    if state.resumed:
        note = f"continued after {state.resume_from} chars; nothing shown twice"
    return _Outcome(ok and state.completed, state.content, [state], note)


async def _structured(sdk: Any, options: dict[str, Any], watcher: Watcher, seen: _Seen) -> _Outcome:
    def factory() -> Awaitable[Any]:
        return sdk.chat.completions.create(  # type: ignore[no-any-return]
            model="demo-large", messages=MESSAGES, stream=True
        )

    watched = l0.structured_stream(Release, factory, **options)
    try:
        await _watch(watched, watcher, seen)
        parsed = await watched.result()
    except l0.L0Error as exc:
        seen.errors.append(type(exc).__name__)
        return _Outcome(False, watched.state.content, [watched.state])
    note = f"{parsed.data!r}; repaired: {', '.join(parsed.corrections)}"
    return _Outcome(watched.state.completed, parsed.raw, [watched.state], note)


async def _race(sdk: Any, options: dict[str, Any], watcher: Watcher, seen: _Seen) -> _Outcome:
    client = l0.wrap(sdk, **options)
    models = ("demo-fast", "demo-steady")
    sessions: list[tuple[str, l0.Result]] = []

    def contender(model: str) -> Callable[[], l0.Result]:
        def start() -> l0.Result:
            result: l0.Result = client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )
            sessions.append((model, result))
            return result

        return start

    race = l0.race_stream([contender(model) for model in models])
    ok = True
    try:
        await _watch(race, watcher, seen)
    except l0.L0Error as exc:
        ok = False
        seen.errors.append(type(exc).__name__)
    winners = [o.index for o in race.outcomes if o.status == "won"]
    winner = sessions[-1][1].state if sessions else l0.State()
    if winners:
        winner = next(r.state for m, r in reversed(sessions) if m == models[winners[0]])
    statuses = ", ".join(f"{models[o.index]} {o.status}" for o in race.outcomes)
    return _Outcome(ok and bool(winners), winner.content, [r.state for _, r in sessions], statuses)


_KINDS = {"text": _text, "structured": _structured, "race": _race}


async def _run_scene(scene: Scene, server: ChaosServer, watcher: Watcher) -> SceneReport:
    import openai

    options = {
        "retry": _retry(),
        "timeout": l0.Timeout(initial_token=1.0, inter_token=0.3),
        **scene.options(),
    }
    seen = _Seen()
    started = time.monotonic()
    # max_retries=0: L0 decides every retry, so the SDK's own never multiply them.
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="no-key-needed", max_retries=0)
    try:
        outcome = await _KINDS[scene.kind](sdk, options, watcher, seen)
    finally:
        await sdk.close()
    # Every session of the scene counts: a race runs several, each with its own retries.
    network = sum(state.network_retry_count for state in outcome.sessions)
    model = sum(state.model_retry_count for state in outcome.sessions)
    final = outcome.sessions[-1] if outcome.sessions else l0.State()
    return SceneReport(
        scene=scene.name,
        title=scene.title,
        ok=outcome.ok,
        requests=len(server.requests),
        retries=network + model,
        network_retries=network,
        model_retries=model,
        fallback=final.fallback_index,
        seconds=time.monotonic() - started,
        tokens=final.token_count,
        errors=tuple(seen.errors),
        text=outcome.text,
        note=outcome.note,
    )


async def play(scenes: Sequence[Scene], watcher: Watcher) -> list[SceneReport]:
    """Play ``scenes`` in order, each against a fresh local server; one report per scene."""
    from l0.testing import ChaosServer

    reports = []
    for scene in scenes:
        watcher.begin(scene)
        async with ChaosServer(
            script=scene.script(), text=ANSWER, model_scripts=scene.model_scripts()
        ) as server:
            report = await _run_scene(scene, server, watcher)
        watcher.end(report)
        reports.append(report)
    return reports
