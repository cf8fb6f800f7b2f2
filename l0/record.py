"""Record sessions as JSON lines and replay them without a provider.

A record file is append-only. Each session is a block of lines:

* ``{"kind": "header", "format": "l0-record", "version": 1, "stream_id": …, "session_id": …}``
* ``{"kind": "stream", "t": …, "event": {…}}`` for every event the consumer received (``t``:
  seconds since the session started, for replay at the original pace), and
  ``{"kind": "obs", "event": {…}}`` for every observability event, in the order they happened
* ``{"kind": "end", "stream_id": …}``

Writing never blocks the event loop: lines are queued and a writer thread appends them.
``l0.run(..., record="session.jsonl")`` records one session with its stream events;
registering :class:`Recorder` as a plugin records the observability events of every session.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from l0.errors import L0Error
from l0.events import ObservabilityEvent, ObservabilityEventType
from l0.plugins import hookimpl
from l0.types import Event, EventType

__all__ = [
    "FORMAT",
    "VERSION",
    "RecordFormatError",
    "RecordedError",
    "Recorder",
    "Replay",
    "replay",
]

FORMAT = "l0-record"
VERSION = 1

_OPTIONS = orjson.OPT_SORT_KEYS


class RecordFormatError(L0Error):
    """A record file is corrupt, truncated, or from a newer L0."""

    code = "record_format"
    hint = "Check the file named in the message; records are append-only JSON lines."


class RecordedError(Exception):
    """Stands in, during replay, for an exception that was recorded by type and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"RecordedError({self.type_name}: {self!s})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, RecordedError):
        return {"__error__": value.type_name, "message": str(value)}
    if isinstance(value, BaseException):
        return {"__error__": type(value).__name__, "message": str(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _error_from(value: Any) -> Any:
    if isinstance(value, Mapping) and "__error__" in value:
        return RecordedError(str(value["__error__"]), str(value.get("message", "")))
    if isinstance(value, Mapping):
        return {k: _error_from(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_error_from(v) for v in value]
    return value


def stream_event_dict(event: Event) -> dict[str, Any]:
    """The JSON form of a consumer event (``raw`` provider chunks are not recorded)."""
    out: dict[str, Any] = {"type": event.type.value}
    if event.text is not None:
        out["text"] = event.text
    if event.data is not None:
        out["data"] = _jsonable(event.data)
    if event.usage is not None:
        out["usage"] = _jsonable(event.usage)
    if event.error is not None:
        out["error"] = _jsonable(event.error)
    return out


def obs_event_dict(event: ObservabilityEvent) -> dict[str, Any]:
    """The JSON form of an observability event."""
    return _jsonable(event.to_dict())  # type: ignore[no-any-return]


class _Writer:
    """Appends lines to one file from a background thread; ``put`` never blocks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[bytes | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"l0-record {path}", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        self._queue.put(line)

    def flush(self, timeout: float | None = 5.0) -> None:
        """Block until everything queued so far is on disk (call from a thread)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            while True:
                item = self._queue.get()
                if item is None:
                    fh.flush()
                    return
                if isinstance(item, threading.Event):
                    fh.flush()
                    os.fsync(fh.fileno())
                    item.set()
                    continue
                fh.write(item)


_writers: dict[Path, _Writer] = {}
_writers_lock = threading.Lock()


def _writer_for(path: str | os.PathLike[str]) -> _Writer:
    resolved = Path(path).resolve()
    with _writers_lock:
        writer = _writers.get(resolved)
        if writer is None:
            writer = _writers[resolved] = _Writer(resolved)
        return writer


@atexit.register
def _close_writers() -> None:
    with _writers_lock:
        for writer in _writers.values():
            writer.close()
        _writers.clear()


def _line(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"kind": kind, **fields}, option=_OPTIONS) + b"\n"


class SessionRecording:
    """Records one session: created by ``l0.run(..., record=path)``."""

    def __init__(self, path: str | os.PathLike[str], stream_id: str, session_id: str) -> None:
        self._writer = _writer_for(path)
        self.stream_id = stream_id
        self._writer.put(
            _line(
                "header",
                format=FORMAT,
                version=VERSION,
                stream_id=stream_id,
                session_id=session_id,
            )
        )
        self._ended = False
        self._started = time.monotonic()

    def stream(self, event: Event) -> None:
        """Record a consumer event with its time since the session started."""
        offset = round(time.monotonic() - self._started, 6)
        self._writer.put(_line("stream", t=offset, event=stream_event_dict(event)))

    def obs(self, event: ObservabilityEvent) -> None:
        """Record an observability event."""
        self._writer.put(_line("obs", event=obs_event_dict(event)))

    def end(self) -> None:
        """Close the session's block (idempotent)."""
        if not self._ended:
            self._ended = True
            self._writer.put(_line("end", stream_id=self.stream_id))

    def flush(self) -> None:
        """Wait until the session's lines are on disk (blocking; run in a thread)."""
        self._writer.flush()


class Recorder:
    """An ``l0_export_event`` plugin that appends every session's observability events.

    Example:
        ``pm.register(l0.record.Recorder("events.jsonl"), name="recorder")``
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._writer = _writer_for(path)
        self._open: set[str] = set()
        self._lock = threading.Lock()

    @hookimpl
    def l0_export_event(self, event: ObservabilityEvent) -> None:
        """Queue the event (and a header/end line around each session)."""
        with self._lock:
            if event.stream_id not in self._open:
                self._open.add(event.stream_id)
                self._writer.put(
                    _line(
                        "header",
                        format=FORMAT,
                        version=VERSION,
                        stream_id=event.stream_id,
                        session_id=event.session_id,
                    )
                )
            self._writer.put(_line("obs", event=obs_event_dict(event)))
            if event.type is ObservabilityEventType.SESSION_END:
                self._open.discard(event.stream_id)
                self._writer.put(_line("end", stream_id=event.stream_id))

    def flush(self) -> None:
        """Block until queued events are on disk."""
        self._writer.flush()


# --- replay -----------------------------------------------------------------------------------


@dataclass(slots=True)
class RecordedSession:
    """One session read back from a record file."""

    stream_id: str
    session_id: str
    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    complete: bool = False
    offsets: list[float | None] = field(default_factory=list)
    """Per item, seconds since the session started (stream events), else ``None``."""


def _fail(path: Path, number: int, message: str) -> RecordFormatError:
    return RecordFormatError(f"{path}:{number}: {message}", path=str(path), line=number)


def read_sessions(path: str | os.PathLike[str]) -> list[RecordedSession]:
    """Parse a record file into sessions.

    Raises:
        RecordFormatError: a line is not JSON, a line is out of place, a session has no end,
            or the file was written by a newer L0 (the message names file and line).
    """
    file = Path(path)
    try:
        lines = file.read_bytes().splitlines()
    except OSError as exc:
        raise RecordFormatError(f"{file}: cannot read: {exc}", path=str(file)) from None
    sessions: list[RecordedSession] = []
    open_sessions: dict[str, RecordedSession] = {}
    current: RecordedSession | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _fail(
                file, number, "expected a JSON object (the line is corrupt or cut)"
            ) from None
        if not isinstance(row, dict) or "kind" not in row:
            raise _fail(file, number, 'expected an object with a "kind" field')
        kind = row["kind"]
        if kind == "header":
            if row.get("format") != FORMAT:
                raise _fail(file, number, f"expected format {FORMAT!r}, got {row.get('format')!r}")
            version = row.get("version")
            if not isinstance(version, int) or version > VERSION:
                raise _fail(
                    file,
                    number,
                    f"record format version {version!r} is newer than this L0 reads "
                    f"(version {VERSION}); upgrade l0 to replay it",
                )
            current = RecordedSession(str(row.get("stream_id")), str(row.get("session_id")))
            sessions.append(current)
            open_sessions[current.stream_id] = current
        elif kind in ("stream", "obs"):
            event = row.get("event")
            if not isinstance(event, dict):
                raise _fail(file, number, 'expected an "event" object')
            owner = current
            if kind == "obs" and isinstance(event.get("stream_id"), str):
                owner = open_sessions.get(event["stream_id"], current)
            if owner is None:
                raise _fail(file, number, "expected a header line before events")
            owner.items.append((kind, event))
            offset = row.get("t")
            owner.offsets.append(float(offset) if isinstance(offset, int | float) else None)
        elif kind == "end":
            ended = open_sessions.pop(str(row.get("stream_id")), None)
            if ended is None:
                raise _fail(file, number, f"end of unknown session {row.get('stream_id')!r}")
            ended.complete = True
        else:
            raise _fail(file, number, f"unknown kind {kind!r}; expected header, stream, obs or end")
    for session in sessions:
        if not session.complete:
            raise _fail(
                file,
                len(lines),
                f"session {session.stream_id} has no end line (the file is truncated)",
            )
    return sessions


def _stream_event(data: dict[str, Any]) -> Event:
    error = _error_from(data.get("error"))
    return Event(
        EventType(data["type"]),
        text=data.get("text"),
        data=_error_from(data.get("data")),
        usage=data.get("usage"),
        error=error if isinstance(error, BaseException) else None,
    )


def _obs_event(data: dict[str, Any]) -> ObservabilityEvent:
    common = {"type", "ts", "stream_id", "session_id", "context", "meta", "parent_id"}
    return ObservabilityEvent(
        type=ObservabilityEventType(data["type"]),
        ts=data["ts"],
        stream_id=data["stream_id"],
        session_id=data["session_id"],
        data=MappingProxyType({k: v for k, v in data.items() if k not in common}),
        context=MappingProxyType(dict(data.get("context") or {})),
        meta=MappingProxyType(dict(data.get("meta") or {})),
        parent_id=data.get("parent_id"),
    )


class Replay:
    """A recorded session played back: iterate it for the stream events.

    Observability events go to ``on_event`` in their recorded order, interleaved with the
    stream events exactly as they happened, and are all in :attr:`observability`.
    """

    def __init__(
        self, session: RecordedSession, on_event: Callable[[ObservabilityEvent], Any] | None
    ) -> None:
        self.session = session
        self._on_event = on_event
        self.observability = [_obs_event(e) for kind, e in session.items if kind == "obs"]

    @property
    def stream_id(self) -> str:
        """The recorded session's stream id."""
        return self.session.stream_id

    def lines(self) -> Iterator[bytes]:
        """The session's event lines, serialised exactly as a recording writes them."""
        offsets = self.session.offsets
        for index, (kind, data) in enumerate(self.session.items):
            if kind == "stream":
                offset = offsets[index] if index < len(offsets) else None
                event = stream_event_dict(_stream_event(data))
                if offset is None:
                    yield _line("stream", event=event)
                else:
                    yield _line("stream", t=offset, event=event)
            else:
                yield _line("obs", event=obs_event_dict(_obs_event(data)))

    async def __aiter__(self) -> AsyncIterator[Event]:
        for kind, data in self.session.items:
            if kind == "stream":
                yield _stream_event(data)
            elif self._on_event is not None:
                self._on_event(_obs_event(data))

    async def timed(self, *, speed: float = 1.0) -> AsyncIterator[tuple[float, Event]]:
        """The stream events with their recorded times, paced as they happened.

        Args:
            speed: Playback speed: 2 plays twice as fast, 0 does not wait at all. Events
                recorded without a time (older files) are not delayed.

        Yields:
            ``(seconds since the session started, event)``.

        Raises:
            ValueError: ``speed`` is negative or not a number.
        """
        given: object = speed  # typed, but callers may pass anything
        if isinstance(given, bool) or not isinstance(given, int | float) or not given >= 0:
            raise ValueError(f"speed={speed!r}: expected a number >= 0 (0: no waiting)")
        offsets = self.session.offsets
        started = time.monotonic()
        last = 0.0
        for index, (kind, data) in enumerate(self.session.items):
            if kind != "stream":
                if self._on_event is not None:
                    self._on_event(_obs_event(data))
                continue
            offset = offsets[index] if index < len(offsets) else None
            if offset is not None:
                last = offset
                if speed > 0:
                    wait = offset / speed - (time.monotonic() - started)
                    if wait > 0:
                        await asyncio.sleep(wait)
            yield last, _stream_event(data)

    async def read(self) -> str:
        """The text the consumer received (tokens, minus withdrawn text)."""
        text = ""
        async for event in self:
            if event.is_token:
                text += event.text or ""
            elif event.is_reset:
                text = text[: len(text) - len(event.data["withdrawn"])]
        return text


def replay(
    path: str | os.PathLike[str],
    *,
    stream_id: str | None = None,
    on_event: Callable[[ObservabilityEvent], Any] | None = None,
) -> Replay:
    """Play back a recorded session (the last one in the file unless ``stream_id`` is given).

    Raises:
        RecordFormatError: the file is corrupt, truncated or newer than this L0.
        LookupError: no session with that ``stream_id`` (the message lists those present).
    """
    sessions = read_sessions(path)
    if not sessions:
        raise RecordFormatError(f"{path}: no recorded session", path=str(path))
    if stream_id is None:
        return Replay(sessions[-1], on_event)
    for session in sessions:
        if session.stream_id == stream_id:
            return Replay(session, on_event)
    present = ", ".join(s.stream_id for s in sessions)
    raise LookupError(f"{path}: no session {stream_id!r}; present: {present}")
