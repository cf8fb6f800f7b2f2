"""``l0.consensus``: ask several models, accept the answer they agree on.

Text is compared after normalisation (case folded, punctuation removed, whitespace collapsed)
with :func:`similarity`: the ratio ``2 * M / T`` of :class:`difflib.SequenceMatcher` over the
two *word* sequences, where ``M`` is the number of words in matching blocks and ``T`` the total
number of words of both. 1.0 means the same words in the same order; two outputs *agree* when
their similarity is at least ``threshold``.

Structured outputs (``schema=``, a pydantic model) are voted field by field: each top-level
field takes the value most outputs give (strings compared after the same normalisation).
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, overload

import orjson
import pydantic

from l0._group import (
    GroupBus,
    StructuredTask,
    TaskOutcome,
    TextTask,
    ValueTask,
    check_optional_callable,
    check_tasks,
    child_scope,
    gather_cancel,
    run_task,
    split_options,
)
from l0.errors import L0Error
from l0.events import ObservabilityEventType
from l0.structured_output import extract_json
from l0.types import ErrorCategory

__all__ = ["ConsensusError", "ConsensusResult", "consensus", "normalize_text", "similarity"]

T = TypeVar("T")
_OBS = ObservabilityEventType
Strategy = Literal["unanimous", "majority", "best"]
STRATEGIES: Final = ("unanimous", "majority", "best")

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """``text`` case-folded, NFKC-normalised, without punctuation, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", folded)).strip()


def similarity(a: str, b: str) -> float:
    """Similarity of two texts in [0, 1] after :func:`normalize_text` (see the module doc)."""
    wa, wb = normalize_text(a).split(), normalize_text(b).split()
    if wa == wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


@dataclass(frozen=True, slots=True)
class ConsensusResult(Generic[T]):
    """What the outputs agreed on.

    Attributes:
        value: The winning value (for ``schema=``, a model built from the voted fields).
        agreement: Share of the outputs that agree with ``value``, in [0, 1]; with a schema,
            the lowest per-field agreement.
        field_agreement: With a schema, each field's share of outputs that gave the voted
            value; empty otherwise.
        ties: With a schema, the fields that had no strict majority (decided by plurality,
            an exact tie by the earliest task); empty otherwise.
        outputs: Every successful output, in input order.
        dissent: The outputs that disagree with ``value`` (by task index).
        strategy: The strategy used.
        outcomes: One :class:`~l0.TaskOutcome` per task.
        group_id: The consensus' id; child sessions carry it as ``parent_id``.
    """

    value: T
    agreement: float
    field_agreement: dict[str, float]
    ties: list[str]
    outputs: list[Any]
    dissent: dict[int, Any]
    strategy: str
    outcomes: list[TaskOutcome]
    group_id: str


class ConsensusError(L0Error):
    """The outputs did not agree as the strategy requires, or too few tasks succeeded.

    Attributes:
        outputs: Every successful output, by task index.
        errors: The error of each task that failed, by task index.
        agreement: The best agreement found (0.0 when there were too few outputs).
        field_agreement: Per-field agreement, for structured outputs.
    """

    code: ClassVar[str] = "consensus_failed"
    category: ClassVar[ErrorCategory] = ErrorCategory.MODEL
    hint: ClassVar[str] = "See .outputs; lower threshold= or use strategy='majority'."

    def __init__(
        self,
        message: str,
        *,
        outputs: dict[int, Any],
        errors: dict[int, BaseException],
        agreement: float,
        field_agreement: dict[str, float] | None = None,
    ) -> None:
        super().__init__(message)
        self.outputs = outputs
        self.errors = errors
        self.agreement = agreement
        self.field_agreement = field_agreement or {}


@dataclass(slots=True)
class _Vote:
    value: Any
    agreement: float
    supporters: set[int]
    field_agreement: dict[str, float] = field(default_factory=dict)
    ties: list[str] = field(default_factory=list)
    reached: bool = True


def _key(value: Any) -> str:
    if isinstance(value, str):
        return "s:" + normalize_text(value)
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(mode="json")
    try:
        return "j:" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return "r:" + repr(value)


def _vote_text(outputs: dict[int, Any], threshold: float, majority: bool) -> _Vote:
    # Each output's supporters: the outputs at least `threshold` similar to it.
    items = list(outputs.items())
    best: tuple[int, set[int]] | None = None
    for i, value in items:
        supporters = {j for j, other in items if j == i or _agree(value, other, threshold)}
        if best is None or len(supporters) > len(best[1]):
            best = (i, supporters)
    assert best is not None
    index, supporters = best
    agreement = len(supporters) / len(items)
    reached = agreement > 0.5 if majority else len(supporters) == len(items)
    return _Vote(outputs[index], agreement, supporters, reached=reached)


def _agree(a: Any, b: Any, threshold: float) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return similarity(a, b) >= threshold
    return _key(a) == _key(b)


def _vote_fields(
    outputs: dict[int, Any], schema: type[pydantic.BaseModel], majority: bool
) -> _Vote:
    dumped: dict[int, dict[str, Any]] = {}
    for i, value in outputs.items():
        dumped[i] = value.model_dump()
    n = len(dumped)
    voted: dict[str, Any] = {}
    field_agreement: dict[str, float] = {}
    ties: list[str] = []
    supporters = set(dumped)
    reached = True
    for name in schema.model_fields:
        tally: dict[str, list[int]] = {}
        for i, fields in dumped.items():
            tally.setdefault(_key(fields.get(name)), []).append(i)
        # Most votes first; equal counts keep the earliest task's value.
        ranked = sorted(tally.values(), key=lambda group: (-len(group), group[0]))
        top = ranked[0]
        voted[name] = dumped[top[0]].get(name)
        share = len(top) / n
        field_agreement[name] = share
        if share <= 0.5:
            # Under "majority" a field without a strict majority is reported, not a failure.
            ties.append(name)
        if not majority and share < 1.0:
            reached = False
        supporters &= set(top)
    value = schema.model_validate(voted)
    agreement = min(field_agreement.values()) if field_agreement else 1.0
    return _Vote(value, agreement, supporters, field_agreement, ties, reached)


def _as_models(outcomes: list[TaskOutcome], schema: type[pydantic.BaseModel]) -> None:
    """Turn each output into a ``schema`` instance (JSON text is parsed); else it is invalid."""
    for outcome in outcomes:
        if not outcome.ok or isinstance(outcome.value, schema):
            continue
        value = outcome.value
        try:
            if isinstance(value, str | bytes):
                outcome.value = schema.model_validate_json(extract_json(str(value)))
            else:
                outcome.value = schema.model_validate(value)
        except pydantic.ValidationError as exc:
            outcome.status, outcome.error = "invalid", exc


def _check(
    strategy: object, threshold: object, schema: object, score: object, min_outputs: object
) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy={strategy!r}: unknown strategy; choose one of: " + ", ".join(STRATEGIES)
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"threshold={threshold!r}: expected a number in [0, 1]")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r}: expected a number in [0, 1]")
    if schema is not None and not (
        isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)
    ):
        raise TypeError(f"schema={schema!r}: expected a pydantic BaseModel subclass or None")
    check_optional_callable("score", score)
    if score is not None and strategy != "best":
        raise ValueError(f"score= is used by strategy='best' only, not {strategy!r}")
    if min_outputs is not None and (
        isinstance(min_outputs, bool) or not isinstance(min_outputs, int) or min_outputs < 1
    ):
        raise ValueError(f"min_outputs={min_outputs!r}: expected an int >= 1 or None")


def _default_min(strategy: str, total: int) -> int:
    if strategy == "unanimous":
        return total
    if strategy == "majority":
        return total // 2 + 1
    return 1


@overload
async def consensus(
    tasks: Sequence[StructuredTask[T]],
    *,
    strategy: Strategy = "majority",
    threshold: float = 1.0,
    schema: type[pydantic.BaseModel] | None = None,
    score: Callable[[Any], float] | None = None,
    min_outputs: int | None = None,
    on_failure: Literal["ignore", "raise"] = "ignore",
    session_id: str | None = None,
    **run_options: Any,
) -> ConsensusResult[T]: ...


@overload
async def consensus(
    tasks: Sequence[TextTask],
    *,
    strategy: Strategy = "majority",
    threshold: float = 1.0,
    schema: type[pydantic.BaseModel] | None = None,
    score: Callable[[Any], float] | None = None,
    min_outputs: int | None = None,
    on_failure: Literal["ignore", "raise"] = "ignore",
    session_id: str | None = None,
    **run_options: Any,
) -> ConsensusResult[str]: ...


@overload
async def consensus(
    tasks: Sequence[ValueTask[T]],
    *,
    strategy: Strategy = "majority",
    threshold: float = 1.0,
    schema: type[pydantic.BaseModel] | None = None,
    score: Callable[[Any], float] | None = None,
    min_outputs: int | None = None,
    on_failure: Literal["ignore", "raise"] = "ignore",
    session_id: str | None = None,
    **run_options: Any,
) -> ConsensusResult[T]: ...


@overload
async def consensus(
    tasks: Sequence[Callable[..., Any]],
    *,
    strategy: Strategy = "majority",
    threshold: float = 1.0,
    schema: type[pydantic.BaseModel] | None = None,
    score: Callable[[Any], float] | None = None,
    min_outputs: int | None = None,
    on_failure: Literal["ignore", "raise"] = "ignore",
    session_id: str | None = None,
    **run_options: Any,
) -> ConsensusResult[Any]: ...


async def consensus(
    tasks: Sequence[Callable[..., Any]],
    *,
    strategy: Strategy = "majority",
    threshold: float = 1.0,
    schema: type[pydantic.BaseModel] | None = None,
    score: Callable[[Any], float] | None = None,
    min_outputs: int | None = None,
    on_failure: Literal["ignore", "raise"] = "ignore",
    session_id: str | None = None,
    **run_options: Any,
) -> ConsensusResult[Any]:
    """Run every task and return the value their outputs agree on.

    Args:
        tasks: Zero-argument factories (see :func:`l0.race` for the kinds accepted).
        strategy: ``"majority"`` (default): the value agreed on by strictly more than half of
            the outputs. ``"unanimous"``: every output must agree. ``"best"``: the output with
            the highest ``score``; without ``score``, the first valid output (the others are
            then cancelled).
        threshold: For text, the :func:`similarity` at which two outputs agree (1.0, the
            default, means the same words after normalisation).
        schema: A pydantic model: outputs (models, dicts, or JSON text) are voted field by
            field; an output that does not validate is left out as ``"invalid"``.
        score: ``(value) -> float`` for ``strategy="best"``.
        min_outputs: Successful outputs needed; default: every task for ``unanimous``, more
            than half of the tasks for ``majority``, one for ``best``. Failed tasks are left
            out of the vote; below ``min_outputs`` the consensus fails.
        on_failure: ``"ignore"`` (default): a failed task is left out of the vote, as above.
            ``"raise"``: the first failure cancels the other tasks and raises
            :class:`ConsensusError` (its ``.errors`` has the failure).
        session_id: ``session_id`` of the consensus' observability events.
        **run_options: Options of :func:`l0.run` for the sessions it starts itself.

    Returns:
        A :class:`ConsensusResult`.

    Raises:
        ConsensusError: no agreement as the strategy requires (it carries every output), or
            fewer than ``min_outputs`` tasks succeeded.
        TypeError, ValueError: bad arguments (raised before anything starts).
    """
    checked = check_tasks(tasks)
    _check(strategy, threshold, schema, score, min_outputs)
    if on_failure not in ("ignore", "raise"):
        raise ValueError(f"on_failure={on_failure!r}: choose one of: ignore, raise")
    needed = min_outputs if min_outputs is not None else _default_min(strategy, len(checked))
    if needed > len(checked):
        raise ValueError(f"min_outputs={min_outputs!r}: more than the {len(checked)} tasks given")
    pm, on_event, options = split_options(run_options, session_id)
    bus = GroupBus("consensus", pm, on_event, session_id)
    start = time.monotonic()
    bus.emit(_OBS.GROUP_START, task_count=len(checked), mode=strategy)
    first_only = strategy == "best" and score is None
    outcomes = await _collect(checked, options, bus, first_only, on_failure == "raise")
    if schema is not None:
        _as_models(outcomes, schema)
    outputs = {o.index: o.value for o in outcomes if o.ok}
    errors = {o.index: o.error for o in outcomes if o.error is not None}
    try:
        if on_failure == "raise" and errors:
            raise ConsensusError(
                f"consensus: task {min(errors)} failed (on_failure='raise'): "
                f"{errors[min(errors)]!r}",
                outputs=outputs,
                errors=errors,
                agreement=0.0,
            )
        if len(outputs) < (1 if first_only else needed):
            raise ConsensusError(
                f"consensus: {len(outputs)} of {len(checked)} tasks succeeded, "
                f"{needed} needed (min_outputs)",
                outputs=outputs,
                errors=errors,
                agreement=0.0,
            )
        vote = _decide(strategy, outputs, threshold, schema, score)
        if not vote.reached:
            raise ConsensusError(
                f"consensus: no {strategy} agreement among {len(outputs)} outputs "
                f"(best agreement {vote.agreement:.2f})",
                outputs=outputs,
                errors=errors,
                agreement=vote.agreement,
                field_agreement=vote.field_agreement,
            )
    except ConsensusError as exc:
        bus.emit(
            _OBS.CONSENSUS_FAILED,
            strategy=strategy,
            agreement=exc.agreement,
            outputs=len(outputs),
            reason=exc.message,
        )
        bus.emit(_OBS.GROUP_END, status="failed", duration_ms=_ms(start))
        raise
    bus.emit(
        _OBS.CONSENSUS_REACHED, strategy=strategy, agreement=vote.agreement, outputs=len(outputs)
    )
    bus.emit(_OBS.GROUP_END, status="success", duration_ms=_ms(start))
    return ConsensusResult(
        value=vote.value,
        agreement=vote.agreement,
        field_agreement=vote.field_agreement,
        ties=vote.ties,
        outputs=list(outputs.values()),
        dissent={i: v for i, v in outputs.items() if i not in vote.supporters},
        strategy=strategy,
        outcomes=outcomes,
        group_id=bus.group_id,
    )


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _decide(
    strategy: str,
    outputs: dict[int, Any],
    threshold: float,
    schema: type[pydantic.BaseModel] | None,
    score: Callable[[Any], float] | None,
) -> _Vote:
    if strategy == "best":
        if score is None:
            index = min(outputs)
        else:
            index = max(outputs, key=lambda i: (score(outputs[i]), -i))
        value = outputs[index]
        agreeing = {
            i for i, other in outputs.items() if i == index or _agree(value, other, threshold)
        }
        return _Vote(value, len(agreeing) / len(outputs), agreeing)
    if schema is not None:
        return _vote_fields(outputs, schema, strategy == "majority")
    return _vote_text(outputs, threshold, strategy == "majority")


async def _collect(
    checked: list[Callable[..., Any]],
    options: dict[str, Any],
    bus: GroupBus,
    first_only: bool,
    stop_on_failure: bool,
) -> list[TaskOutcome]:
    outcomes = [TaskOutcome(i) for i in range(len(checked))]
    # Resolved when the remaining tasks are no longer needed.
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def one(index: int) -> None:
        outcome = outcomes[index]
        began = time.monotonic()
        try:
            with child_scope(bus.group_id):
                outcome.value, _ = await run_task(checked[index], options)
        except asyncio.CancelledError:
            outcome.status = "cancelled"
            bus.emit(_OBS.GROUP_TASK_CANCELLED, index=index)
            raise
        except Exception as exc:
            outcome.status, outcome.error = "failed", exc
            bus.emit(_OBS.GROUP_TASK_FAILED, index=index, error=repr(exc))
            if stop_on_failure and not stop.done():
                stop.set_result(None)
        else:
            outcome.status = "completed"
            bus.emit(_OBS.GROUP_TASK_COMPLETE, index=index, duration_ms=_ms(began))
            if first_only and not stop.done():
                stop.set_result(None)
        finally:
            outcome.duration = time.monotonic() - began

    loop = asyncio.get_running_loop()
    running = [loop.create_task(one(i), name=f"l0-consensus-{i}") for i in range(len(checked))]
    try:
        waiter: asyncio.Future[Any] = asyncio.gather(*running, return_exceptions=True)
        await asyncio.wait([waiter, stop], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        await gather_cancel(running)
    return outcomes
