"""Shared machinery of the many-session features (race, parallel, pool, consensus).

* :func:`run_task` turns one task (an ``l0.run`` factory, a wrapped-client call, an
  ``l0.structured`` call or a plain coroutine factory) into its value.
* :class:`GroupBus` emits a group's observability events on the same path as sessions.
* :func:`child_scope` marks the sessions a group creates with the group's id.

The "first contender to deliver a token wins" core, shared with hedging, is
:mod:`l0._first_token`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

from l0._api import Result, run
from l0._callbacks import Notifier
from l0.errors import L0Error, categorize_error
from l0.events import ObservabilityEvent, ObservabilityEventType, current_parent, uuid7
from l0.plugins import L0PluginManager, default_plugin_manager
from l0.structured_output import StructuredResult, StructuredStream
from l0.types import ErrorCategory

__all__ = [
    "AllTasksFailedError",
    "GroupBus",
    "TaskOutcome",
    "TaskStatus",
]

log = logging.getLogger("l0.group")

T = TypeVar("T")

TaskStatus: TypeAlias = Literal["won", "completed", "failed", "invalid", "cancelled", "pending"]

StructuredTask: TypeAlias = (
    Callable[..., Awaitable[StructuredResult[T]]] | Callable[..., StructuredStream[T]]
)
"""A task whose value is the ``.data`` of an ``l0.structured`` call (typed ``T``)."""
TextTask: TypeAlias = (
    Callable[..., Result]
    | Callable[..., AsyncIterator[Any]]
    | Callable[..., Awaitable[AsyncIterator[Any]]]
)
"""A task whose value is the text of a stream: ``l0.run``, a wrapped client, a raw stream."""
ValueTask: TypeAlias = Callable[..., Awaitable[T]]
"""A plain coroutine factory; its value is what it returns."""


@dataclass(slots=True)
class TaskOutcome:
    """What happened to one task of a group.

    Attributes:
        index: Position of the task in the list given.
        status: ``"won"`` (race winner), ``"completed"``, ``"failed"``, ``"invalid"`` (it
            finished but ``validate=`` rejected it), ``"cancelled"`` or ``"pending"`` (never
            settled, e.g. fail-fast stopped it before it started).
        value: The task's value when it finished, else ``None``.
        error: Why it failed, or ``None``.
        duration: Seconds from its start to its end (0.0 when it never started).
    """

    index: int
    status: TaskStatus = "pending"
    value: Any = None
    error: BaseException | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the task finished with a value (``won`` or ``completed``)."""
        return self.status in ("won", "completed")


class AllTasksFailedError(L0Error):
    """No task of a race (or too few of a consensus) finished validly.

    Attributes:
        errors: For each task, in input order, its error (``None`` for one that did not fail).
        outcomes: Every task's :class:`TaskOutcome`.
    """

    code: ClassVar[str] = "all_tasks_failed"
    category: ClassVar[ErrorCategory] = ErrorCategory.MODEL
    hint: ClassVar[str] = "See .errors for each task's error."

    def __init__(self, message: str, *, outcomes: Sequence[TaskOutcome]) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)
        self.errors: list[BaseException | None] = [o.error for o in self.outcomes]


# --- bad input -------------------------------------------------------------------------------


def check_tasks(tasks: object, name: str = "tasks") -> list[Callable[..., Any]]:
    """The tasks as a list, or a clear error before anything starts."""
    if isinstance(tasks, str | bytes | Mapping) or not isinstance(tasks, Sequence):
        raise TypeError(f"{name}={tasks!r}: expected a list of task factories (callables)")
    if not tasks:
        raise ValueError(f"{name}=[]: expected at least one task")
    checked = []
    for i, task in enumerate(tasks):
        if not callable(task):
            what = type(task).__name__
            advice = (
                " (pass a factory such as `lambda: l0.structured(...)`, not the awaitable)"
                if inspect.isawaitable(task) or hasattr(type(task), "__aiter__")
                else ""
            )
            if inspect.iscoroutine(task):
                task.close()
            raise TypeError(f"{name}[{i}]={what} object: expected a callable{advice}")
        checked.append(task)
    return checked


def check_positive(name: str, value: object, *, integer: bool = False) -> None:
    """Raise unless ``value`` is a positive number (an int >= 1 when ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an int >= 1" if integer else "a positive number"
        raise TypeError(f"{name}={value!r}: expected {kind}")
    if integer and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}={value!r}: expected an int >= 1")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}={value!r}: expected a positive, finite number")


def check_optional_callable(name: str, value: object) -> None:
    """Raise unless ``value`` is ``None`` or callable."""
    if value is not None and not callable(value):
        raise TypeError(f"{name}={value!r}: expected a callable or None")


def split_options(
    options: Mapping[str, Any], session_id: str | None = None
) -> tuple[L0PluginManager, Any, dict[str, Any]]:
    """``(plugin manager, on_event, options for child sessions)`` from a group's options.

    A group's ``session_id`` is also given to the child sessions it starts itself.
    """
    if session_id is not None and not isinstance(session_id, str):
        raise TypeError(f"session_id={session_id!r}: expected a str or None")
    plugins = options.get("plugins")
    if plugins is not None and not isinstance(plugins, L0PluginManager):
        raise TypeError(f"plugins={plugins!r}: expected an l0 plugin manager")
    on_event = options.get("on_event")
    check_optional_callable("on_event", on_event)
    pm = plugins if plugins is not None else default_plugin_manager()
    child = dict(options)
    if session_id is not None:
        child["session_id"] = session_id
    return pm, on_event, child


# --- parent linking --------------------------------------------------------------------------


@contextlib.contextmanager
def child_scope(group_id: str) -> Iterator[None]:
    """Sessions created inside this block carry ``group_id`` as their ``parent_id``."""
    token = current_parent.set(group_id)
    try:
        yield
    finally:
        current_parent.reset(token)


# --- events ----------------------------------------------------------------------------------


class GroupBus:
    """Emits a group's observability events to exporters and ``on_event``.

    Group events have the group's id as ``stream_id`` (and ``session_id``, unless one is
    given), so an exporter can find the children whose ``parent_id`` points at it.
    """

    __slots__ = ("_export", "_kind", "_notifier", "_on_event", "_parent", "_session", "group_id")

    def __init__(
        self,
        kind: str,
        pm: L0PluginManager,
        on_event: Callable[..., Any] | None,
        session_id: str | None = None,
    ) -> None:
        from l0._dispatch import hook_table

        self.group_id = uuid7()
        self._kind = kind
        self._session = session_id if isinstance(session_id, str) else self.group_id
        self._export = hook_table(pm).export
        self._on_event = on_event
        self._notifier = Notifier()
        self._parent = current_parent.get()

    def emit(self, kind: ObservabilityEventType, **data: Any) -> None:
        """Deliver one event of this group (never raises)."""
        if not self._export and self._on_event is None:
            return
        data = {"group_id": self.group_id, "kind": self._kind, **data}
        event = _make_event(kind, self.group_id, self._session, data, self._parent)
        for export in self._export:
            try:
                export(event)
            except Exception:
                log.exception("l0: exporter %r raised; the group goes on", export)
        if self._on_event is not None:
            self._notifier.call("on_event", self._on_event, (event,))

    async def wait(self) -> None:
        """Wait until ``on_event`` has seen every event emitted so far."""
        await self._notifier.wait()


def _make_event(
    kind: ObservabilityEventType,
    stream_id: str,
    session_id: str,
    data: dict[str, Any],
    parent: str | None,
) -> ObservabilityEvent:
    return ObservabilityEvent(
        type=kind,
        ts=time.time_ns() / 1_000_000,
        stream_id=stream_id,
        session_id=session_id,
        data=MappingProxyType(data),
        parent_id=parent,
    )


# --- running one task ------------------------------------------------------------------------


def _is_stream(value: object) -> bool:
    return hasattr(type(value), "__aiter__") and not isinstance(value, Result | StructuredStream)


def _wants_context(task: Callable[..., Any]) -> bool:
    """True for a factory that takes the attempt context (one required positional arg)."""
    try:
        params = inspect.signature(task).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 1


def _usage(state: Any) -> int | None:
    usage = getattr(state, "usage", None)
    if not isinstance(usage, Mapping):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
    ints = [p for p in parts if isinstance(p, int)]
    return sum(ints) if ints else None


async def read_result(result: Result) -> str:
    """Read an ``l0.Result`` to the end; closes its provider stream when cancelled."""
    try:
        return await result.read()
    except BaseException:
        await asyncio.shield(result.aclose())
        raise


def _prefetched(first: Any, task: Callable[..., Any], options: dict[str, Any]) -> Result:
    pending = [first]

    def factory() -> Any:
        # The first attempt reuses the stream already made; retries call the task again.
        return pending.pop() if pending else task()

    return run(factory, **options)


async def run_task(task: Callable[..., Any], options: dict[str, Any]) -> tuple[Any, int | None]:
    """Run one task to ``(value, tokens used or None)``.

    * a factory taking the attempt context, or returning an async iterator (a raw stream, or
      an awaitable of one), runs through :func:`l0.run` with ``options``; the value is the text;
    * one returning an :class:`l0.Result` (``l0.run``, a wrapped client) is read: the text;
    * one returning an ``l0.structured`` awaitable or a ``StructuredStream``: its ``.data``;
    * any other awaitable: whatever it returns.
    """
    if _wants_context(task):
        result = run(task, **options)
        return await read_result(result), _usage(result.state)
    produced = task()
    if isinstance(produced, Result):
        return await read_result(produced), _usage(produced.state)
    if isinstance(produced, StructuredStream):
        try:
            done = await produced.result()
        except BaseException:
            await asyncio.shield(produced.l0_result.aclose())
            raise
        return done.data, _usage(done.state)
    if _is_stream(produced):
        result = _prefetched(produced, task, options)
        return await read_result(result), _usage(result.state)
    if inspect.isawaitable(produced):
        try:
            value = await produced
        except Exception as exc:
            if not _retryable(exc, options):
                raise
            return await _retry_in_session(exc, task, options)
        if isinstance(value, StructuredResult):
            return value.data, _usage(value.state)
        if isinstance(value, Result):
            return await read_result(value), _usage(value.state)
        if _is_stream(value):
            result = _prefetched(value, task, options)
            return await read_result(result), _usage(result.state)
        return value, None
    raise TypeError(
        f"a task returned {type(produced).__name__}: expected an l0.Result, a stream, or an "
        "awaitable (a coroutine)"
    )


class _PlainValue(TypeError):
    """A retried coroutine task gave a value, not a stream; carried out of the session.

    A ``TypeError`` is an internal error to L0, so the session raises it at once, unretried.
    """

    def __init__(self, value: Any) -> None:
        super().__init__("not a stream")
        self.value = value


def _retryable(error: BaseException, options: Mapping[str, Any]) -> bool:
    plugins = options.get("plugins")
    pm = plugins if isinstance(plugins, L0PluginManager) else None
    return categorize_error(error, plugins=pm) in (ErrorCategory.NETWORK, ErrorCategory.TRANSIENT)


async def _stream_or_value(produced: Any) -> Any:
    value = await produced if inspect.isawaitable(produced) else produced
    if isinstance(value, Result | StructuredStream | StructuredResult) or not _is_stream(value):
        raise _PlainValue(value)
    return value


async def _retry_in_session(
    error: BaseException, task: Callable[..., Any], options: dict[str, Any]
) -> tuple[Any, int | None]:
    """Retry a coroutine task whose request failed (a 429, a reset) under ``l0.run``.

    A raw SDK call (``lambda: client.chat.completions.create(..., stream=True)``) fails in
    its request before any stream exists; the group cannot tell it from any other coroutine
    until it succeeds. So the failure becomes the first attempt of an ``l0.run`` session and
    the task is called again for each retry, under the session's retry policy.
    """
    pending = [error]

    def factory() -> Any:
        if pending:
            raise pending.pop()
        return _stream_or_value(task())

    result = run(factory, **options)
    try:
        return await read_result(result), _usage(result.state)
    except _PlainValue as plain:
        value = plain.value
        if isinstance(value, StructuredResult):
            return value.data, _usage(value.state)
        if isinstance(value, Result):
            return await read_result(value), _usage(value.state)
        if isinstance(value, StructuredStream):
            return (await value.result()).data, None
        return value, None


def task_result(task: Callable[..., Any], options: dict[str, Any]) -> Result:
    """One task as an ``l0.Result`` that has not started, for the streaming race.

    Raw streams and awaitables of them run through :func:`l0.run` (the awaitable is awaited
    inside the session, so an error of the request itself is retried like any other).
    """
    if _wants_context(task):
        return run(task, **options)
    produced = task()
    if isinstance(produced, Result):
        return produced
    if isinstance(produced, StructuredStream):
        return produced.l0_result
    if _is_stream(produced) or inspect.isawaitable(produced):
        return _prefetched(produced, task, options)
    raise TypeError(
        f"a task returned {type(produced).__name__}: a streaming race needs streams (an "
        "l0.Result, a wrapped-client call, or a stream factory)"
    )


def validate_value(value: Any, validate: Any) -> str | None:
    """``None`` when ``value`` passes ``validate`` (a predicate or a pydantic type), else why."""
    if validate is None:
        return None
    if isinstance(validate, type) or (not callable(validate)):
        from l0.structured_output import _adapter

        adapter = _adapter(validate)
        try:
            if isinstance(value, str | bytes):
                adapter.validate_json(value)
            else:
                adapter.validate_python(value)
        except Exception as exc:
            return f"not a valid {getattr(validate, '__name__', validate)}: {exc}"
        return None
    verdict = validate(value)
    if inspect.isawaitable(verdict):
        raise TypeError("validate= must be a plain function, not async")
    return None if verdict else "validate= rejected the value"


def check_validate(validate: object) -> None:
    """Raise unless ``validate`` is ``None``, a predicate or a type pydantic can validate."""
    if validate is None:
        return
    if isinstance(validate, type):
        from l0.structured_output import _adapter

        _adapter(validate)
        return
    if not callable(validate) or inspect.iscoroutinefunction(validate):
        raise TypeError(
            f"validate={validate!r}: expected a predicate (value -> bool, not async) or a "
            "pydantic type"
        )


async def gather_cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has really ended."""
    for task in tasks:
        if not task.done():
            task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task
