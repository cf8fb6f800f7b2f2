"""What the native transport keeps so that ``result.raw()`` can rebuild the SDK's chunk objects.

Keeping every event's ``data:`` bytes costs about 250 bytes per chunk, which at hundreds of
concurrent answers is most of a session's memory. Nearly every chunk of an answer is the same
JSON document with another ``delta.content`` string, and the session already keeps that string.
So a text-only chunk is kept as its text (a reference to the string the session holds) against
a *template*: the bytes before and after its content string, taken from the first such chunk.
Any chunk that is not byte-for-byte the template around its content (a role, a finish reason,
usage, tool calls, a refusal, logprobs, another ``id`` …) is kept whole, as its bytes, or starts
a new template. :meth:`RawChunks.rebuild_all` turns both back into the same ``data`` the SDK would
have decoded, in order, and hands them to the SDK's own ``_process_response_data``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, overload

import orjson

__all__ = ["RawChunks"]

_SENTINEL = "\x00l0\x00"
_SENTINEL_BODY = orjson.dumps(_SENTINEL)[1:-1]
_MAX_TEMPLATES = 8
"""Templates one stream may start; past that, text chunks that differ are kept as bytes (a
server that varies a field in every chunk would otherwise keep a template per chunk)."""
_MAX_OCCURRENCES = 8
_NO_JSON = b"\x00"


class RawChunks(Sequence[Any]):
    """The SDK chunk objects of a native stream, rebuilt on first access.

    The stream records each event with :meth:`add` (bytes kept whole) or :meth:`add_text` (a
    text-only chat chunk). Building the objects costs what the SDK pays per chunk; each is
    built once.

    Attributes:
        prefix: The current template's bytes up to and including the opening quote of the
            content string (before the first template, bytes no JSON document starts with).
        suffix: The current template's bytes from the closing quote of the content string.
    """

    __slots__ = (
        "_before",
        "_built",
        "_entries",
        "_fixed",
        "_read",
        "_stream",
        "_templates",
        "prefix",
        "suffix",
    )

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        # bytes: a chunk kept whole; str: a text chunk of the current template;
        # tuple: (prefix, suffix), the template of the text entries after it.
        self._entries: list[bytes | str | tuple[bytes, bytes]] = []
        self._templates = 0
        self._built: list[Any] = []
        self._read = 0
        self.prefix = _NO_JSON
        self.suffix = b""
        # len(prefix) + len(suffix), and the index of the byte before the suffix; -1 matches
        # no chunk before the first template.
        self._fixed = -1
        self._before = -1

    def __len__(self) -> int:
        return len(self._entries) - self._templates

    def add(self, data: bytes) -> None:
        """Keep one chunk's ``data:`` bytes whole."""
        self._entries.append(data)

    def add_text(self, data: bytes, chunk: dict[str, Any], text: str) -> None:
        """Keep a text-only chunk (one choice whose delta is only ``content``) as ``text``.

        Args:
            data: The event's bytes.
            chunk: ``data`` decoded.
            text: Its ``choices[0].delta.content``.
        """
        # The common case, per token, in four cheap tests: ``data`` is the template around
        # exactly ``len(text)`` bytes, and the template's closing quote is not escaped. The
        # content string then ends at that quote, and since it decoded to ``len(text)``
        # characters from as many bytes, it has no escape and no multi-byte character: it
        # is ``text``, and the rest of ``data`` is the template's.
        if (
            len(data) - self._fixed == len(text)
            and data[self._before] != 92  # a backslash
            and data.startswith(self.prefix)
            and data.endswith(self.suffix)
        ):
            self._entries.append(text)
            return
        self._add_text(data, chunk, text)

    def _add_text(self, data: bytes, chunk: dict[str, Any], text: str) -> None:
        entries = self._entries
        prefix = self.prefix
        if data.startswith(prefix) and data.endswith(self.suffix):
            start, end = len(prefix), len(data) - len(self.suffix)
            if start <= end and _is_string_body(data[start:end]):
                # Escapes or multi-byte characters: the parse of ``data`` is still the
                # template's with this content string.
                entries.append(text)
                return
        if self._templates < _MAX_TEMPLATES:
            found = _template(data, chunk, text)
            if found is not None:
                self._templates += 1
                self.prefix, self.suffix = found
                self._fixed = len(found[0]) + len(found[1])
                self._before = -len(found[1]) - 1
                entries.append(found)
                entries.append(text)
                return
        entries.append(data)

    def rebuild_all(self) -> list[Any]:
        """Every chunk object recorded so far (built once each), in order."""
        built = self._built
        entries = self._entries
        if self._read < len(entries):
            stream = self._stream
            process = stream._client._process_response_data
            cast_to, response = stream._cast_to, stream.response
            loads, dumps = orjson.loads, orjson.dumps
            template: tuple[bytes, bytes] = (b"", b"")
            # The template in force at ``_read``: the last one before it.
            for entry in reversed(entries[: self._read]):
                if type(entry) is tuple:
                    template = entry
                    break
            for entry in entries[self._read :]:
                if type(entry) is bytes:
                    data = loads(entry)
                elif type(entry) is str:
                    data = loads(template[0] + dumps(entry)[1:-1] + template[1])
                else:
                    template = entry  # type: ignore[assignment]
                    continue
                built.append(process(data=data, cast_to=cast_to, response=response))
            self._read = len(entries)
        return built

    @property
    def kept_bytes(self) -> int:
        """Bytes held for chunks kept whole and for templates (for tests and measurements)."""
        total = 0
        for entry in self._entries:
            if type(entry) is bytes:
                total += len(entry)
            elif type(entry) is tuple:
                total += len(entry[0]) + len(entry[1])
        return total

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.rebuild_all()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rebuild_all())


def _is_string_body(body: bytes) -> bool:
    """True when ``body`` between two quotes is one JSON string (escapes, no bare quote)."""
    if b'"' not in body and b"\\" not in body:
        return True
    try:
        return type(orjson.loads(b'"' + body + b'"')) is str
    except orjson.JSONDecodeError:
        return False


def _template(data: bytes, chunk: dict[str, Any], text: str) -> tuple[bytes, bytes] | None:
    """The bytes around ``chunk``'s content string in ``data``, if they can be found exactly.

    A candidate is accepted only when putting another string in its place decodes to the same
    chunk with that string as its content, so the cut is never in the wrong place (the same
    characters may also appear as the model's name, say).
    """
    choice = chunk["choices"][0]
    expected = {
        **chunk,
        "choices": [{**choice, "delta": {**choice["delta"], "content": _SENTINEL}}],
    }
    encodings = [orjson.dumps(text)]
    escaped = json.dumps(text).encode()  # servers that escape non-ASCII characters
    if escaped != encodings[0]:
        encodings.append(escaped)
    for encoded in encodings:
        at = data.find(encoded)
        tries = 0
        while at >= 0 and tries < _MAX_OCCURRENCES:
            tries += 1
            prefix, suffix = data[: at + 1], data[at + len(encoded) - 1 :]
            try:
                probe = orjson.loads(prefix + _SENTINEL_BODY + suffix)
            except orjson.JSONDecodeError:
                probe = None
            if probe == expected:
                return prefix, suffix
            at = data.find(encoded, at + 1)
    return None
