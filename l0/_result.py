"""The :class:`Result` of ``l0.run`` and ``l0.wrap``: read, iterate, abort, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from l0.types import Event, State

if TYPE_CHECKING:
    from l0._runtime import Session

__all__ = ["Result"]

_READING: Any = object()


class Result:
    """A running L0 session.

    Iterate it (``async for event in result``) for stream events, or ``await result.read()`` for
    the whole text; do one or the other, once. ``result.state`` is readable at any time. Use it
    as an async context manager to make sure the provider stream is closed when you stop early.
    ``await l0.run(...)`` returns the result itself, so both ``result = await l0.run(...)`` and
    ``async for event in l0.run(...)`` work.
    """

    __slots__ = ("_gen", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        # The event generator, or _READING while read() runs without one.
        self._gen: Any = None

    def __await__(self) -> Generator[Any, None, Result]:
        async def itself() -> Result:
            return self

        return itself().__await__()

    @property
    def state(self) -> State:
        """The live session state (content, token_count, retries, violations, …)."""
        return self._session.state

    @property
    def errors(self) -> list[Any]:
        """Every failed attempt so far (``l0.errors.AttemptError``)."""
        return list(self._session.errors)

    @property
    def stream_id(self) -> str:
        """The session's UUIDv7, as in its observability events."""
        return self._session.stream_id

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._gen is not None:
            if self._session.finished:
                raise RuntimeError(
                    "this L0 result has finished; a result streams once. Its text is in "
                    "result.state.content (or await result.read()); call l0.run(...) again "
                    "for a new answer"
                )
            raise RuntimeError("this L0 result is already being consumed; iterate or read it once")
        events = self._gen = self._events(self._session.run(emit=True))
        return events

    def _events(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        recording = self._session._recording
        if recording is None:
            return events
        return _recorded(events, recording)

    async def read(self) -> str:
        """Run the session to the end and return the text of the answer.

        Raises:
            RetryExhaustedError: every attempt failed (``.errors`` lists them).
            AbortedError: ``abort()`` was called.
            Exception: a fatal provider error, re-raised as the provider's own type.
        """
        session = self._session
        if self._gen is None:
            if session._recording is None:
                self._gen = _READING
                return await session.read_text()
            # A recording needs the consumer events, so read() then produces them too.
            self._gen = self._events(session.run(emit=True))
            async for _ in self._gen:
                pass
        elif not session.finished:
            raise RuntimeError("read() called while this result is being iterated")
        elif session.state.error is not None:
            raise session.state.error
        return session.state.content

    def raw(self) -> list[Any]:
        """The provider's own chunks of the attempt that produced ``state.content``.

        For SDK streams these are the SDK's chunk objects (as the adapter reports them in
        ``Event.raw``); for plain string streams, the strings themselves.
        """
        return self._session.raw_chunks

    def abort(self) -> None:
        """Stop the session now: the provider stream is closed even if it is silent.

        No token is delivered afterwards; the consumer's iteration or ``read()`` raises
        ``l0.errors.AbortedError``. ``on_abort`` and the ABORT events are reported once.
        Calling it on a finished session does nothing.
        """
        self._session.abort()

    def move_to_current_task(self) -> None:
        """Continue the session in the calling task: its timeouts and ``abort()`` act there.

        A session belongs to the task that started iterating it. Call this between two events,
        from the task that reads the next ones, when another task read the first ones (L0's
        streaming race reads each contender in a task of its own until its first token).

        Raises:
            RuntimeError: another task is waiting on the session right now.
        """
        session = self._session
        if not session._started or session.finished:
            return
        task = asyncio.current_task()
        if session._parked and task is not session._task:
            raise RuntimeError("this L0 result is being read by another task right now")
        session._task = task

    async def aclose(self) -> None:
        """Close the session: abort it if it has not finished, and close the provider stream."""
        session = self._session
        if not session.finished:
            session.abort()
        gen = self._gen
        # A generator suspended inside another task's ``read()`` or iteration cannot be closed
        # from here; the abort above wakes that task, which ends its own generator.
        if gen is not None and not getattr(gen, "ag_running", False):
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                await aclose()
        closing = session._closing
        if closing is not None:
            await closing

    def tool_started(self, tool_call_id: str, tool_name: str) -> None:
        """Report that your code started running a tool call (emits ``TOOL_START``)."""
        self._session.tool_started(tool_call_id, tool_name)

    def tool_finished(
        self, tool_call_id: str, *, result: Any = None, error: BaseException | str | None = None
    ) -> None:
        """Report a tool call's outcome: ``TOOL_RESULT`` or ``TOOL_ERROR``, then ``TOOL_COMPLETED``.

        L0 does not run tools; these two methods put your tool execution on the same event bus
        (and the same exporters) as the stream that requested it.
        """
        self._session.tool_finished(tool_call_id, result=result, error=error)

    async def wait_callbacks(self) -> None:
        """Wait until every callback and ``l0_on_*`` hook queued by this session has run."""
        await self._session.wait_callbacks()

    async def __aenter__(self) -> Result:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _recorded(events: AsyncIterator[Event], recording: Any) -> AsyncIterator[Event]:
    try:
        async for event in events:
            recording.stream(event)
            yield event
    except Exception as exc:
        # The error the consumer sees is recorded, so replay raises it again (#8 item 5). Not
        # GeneratorExit or cancellation: a consumer that stops early did not see a failure.
        recording.end(exc)
        raise
    finally:
        recording.end()
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
