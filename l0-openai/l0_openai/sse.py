r"""An incremental Server-Sent Events decoder over bytes.

It follows the WHATWG event-stream rules that matter for LLM streams: lines end with ``\\n``,
``\\r\\n`` or a lone ``\\r`` (a ``\\r`` at the end of a read waits for the next read, which may
start with its ``\\n``); a leading UTF-8 byte-order mark is dropped; ``:`` lines are comments
(keep-alives); ``data:`` lines of one event are joined with ``\\n``; a blank line dispatches the
event; an event whose data is empty is not dispatched (the spec's rule, so ``data:`` alone and
``event: ping`` keep-alives yield nothing). ``id:`` and ``retry:`` are read and ignored (L0 never
reconnects with ``Last-Event-ID``; it re-issues the request).

Data stays ``bytes`` until the caller decodes it (``orjson.loads`` takes bytes), so a multi-byte
UTF-8 character split across network reads needs no special case: reads are only ever cut at
line ends, which are ASCII.
"""

from __future__ import annotations

__all__ = ["SSEDecoder"]

_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    r"""Turns network reads into ``(event, data)`` pairs.

    Example:
        >>> decoder = SSEDecoder()
        >>> decoder.feed(b'data: {"a": 1}\\n\\nda')
        [(None, b'{"a": 1}')]
        >>> decoder.feed(b"ta: 2\\n\\n")
        [(None, b'2')]
    """

    __slots__ = ("_buffer", "_data", "_event", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """Read the next bytes; return the events they complete, in order."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer  # maybe the start of a byte-order mark: wait for more
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[3:]
        tail = b""
        if buffer[-1:] == b"\r":
            # Maybe the first half of "\r\n": decide when the next read comes.
            buffer, tail = buffer[:-1], b"\r"
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._buffer = lines.pop() + tail
        events: list[tuple[str | None, bytes]] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    payload = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    if payload:
                        events.append((self._event, payload))
                self._event = None
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[0] != 58:  # not a ":" comment
                self._field(line)
        return events

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace") or None
        elif name == b"data":  # "data" with no colon: an empty data line
            self._data.append(value)

    def finish(self) -> tuple[str | None, bytes] | None:
        """The stream ended: return the event left without its closing blank line, if any.

        Servers that omit the last blank line still sent a whole event; a connection cut in
        the middle of one leaves data that the caller will fail to decode, so the caller
        decides what an undecodable last event means.
        """
        rest = self._buffer.rstrip(b"\r")
        self._buffer = b""
        if rest:
            if rest.startswith(b"data:"):
                self._data.append(rest[6:] if rest[5:6] == b" " else rest[5:])
            elif rest[0] != 58:
                self._field(rest)
        data = self._data
        event = self._event
        self._data = []
        self._event = None
        payload = b"\n".join(data)
        return (event, payload) if payload else None
