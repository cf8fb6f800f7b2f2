"""The native SSE decoder of ``l0-openai``: framing rules, reads cut anywhere, the text shortcut."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from l0_openai.native import _NOT_PLAIN, plain_text
from l0_openai.sse import SSEDecoder

from l0.tool_calls import ChatChunkReader
from l0.types import Event

Events = list[tuple[str | None, bytes]]

# Every rule at once: CRLF and lone CR, comments, event lines, empty data, multi-line data,
# a BOM, non-ASCII text, and a last event with no blank line after it.
BODY = (
    "\ufeff: keep-alive\r\n"
    "\r\n"
    'data: {"t": "h\u00e9llo"}\r\n'
    "\r\n"
    "event: response.output_text.delta\n"
    'data: {"t": "\u4e16\u754c \U0001f600"}\n'
    "\n"
    "data:\n"
    "\n"
    "event: ping\n"
    "\n"
    ":comment with data: inside\r"
    'data:{"t": "no space"}\r'
    "id: 7\r"
    "retry: 10\r"
    "\r"
    'data: {"t":\n'
    'data: "two lines"}\n'
    "\n"
    "data: [DONE]"
).encode()

EXPECTED: Events = [
    (None, '{"t": "h\u00e9llo"}'.encode()),
    ("response.output_text.delta", '{"t": "\u4e16\u754c \U0001f600"}'.encode()),
    (None, b'{"t": "no space"}'),
    (None, b'{"t":\n"two lines"}'),
]


def decode(pieces: list[bytes]) -> Events:
    decoder = SSEDecoder()
    events: Events = []
    for piece in pieces:
        events += decoder.feed(piece)
    last = decoder.finish()
    if last is not None:
        events.append(last)
    return events


def test_whole_body() -> None:
    assert decode([BODY]) == [*EXPECTED, (None, b"[DONE]")]


def test_split_at_every_byte_offset() -> None:
    for cut in range(len(BODY) + 1):
        pieces = [BODY[:cut], BODY[cut:]]
        assert decode(pieces) == [*EXPECTED, (None, b"[DONE]")], cut


def test_split_at_every_pair_of_offsets() -> None:
    # Cuts through both halves of every CRLF and every byte of every multi-byte character.
    size = len(BODY)
    for first in range(0, size + 1, 3):
        for second in range(first, size + 1, 5):
            pieces = [BODY[:first], BODY[first:second], BODY[second:]]
            assert decode(pieces) == [*EXPECTED, (None, b"[DONE]")], (first, second)


def test_one_byte_per_read() -> None:
    assert decode([BODY[i : i + 1] for i in range(len(BODY))]) == [*EXPECTED, (None, b"[DONE]")]


def test_decoded_text_survives_utf8_cut_inside_a_character() -> None:
    # The emoji is four bytes; every cut inside it still gives the character back whole.
    body = 'data: {"t": "\U0001f600"}\n\n'.encode()
    start = body.index(b"\xf0")
    for cut in range(start, start + 5):
        events = decode([body[:cut], body[cut:]])
        assert [orjson.loads(data)["t"] for _, data in events] == ["\U0001f600"]


def test_lone_cr_at_the_end_of_a_read_waits_for_the_next() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\ndata: 2\r\r") == [(None, b"1")]
    assert decoder.feed(b"data: 3\n\n") == [(None, b"2"), (None, b"3")]


def test_byte_order_mark_cut_across_reads() -> None:
    assert decode([b"\xef", b"\xbb", b"\xbfdata: 1\n\n"]) == [(None, b"1")]
    assert decode([b"\xef\xbb\xbf", b"data: 1\n\n"]) == [(None, b"1")]


def test_event_name_resets_after_each_event() -> None:
    assert decode([b"event: a\ndata: 1\n\ndata: 2\n\n"]) == [("a", b"1"), (None, b"2")]


def test_field_without_colon_and_unknown_fields() -> None:
    # "data" alone is an empty data line; unknown fields are ignored.
    assert decode([b"data\ndata: x\nfoo: bar\n\n"]) == [(None, b"\nx")]


def test_truncated_last_event_is_returned_for_the_caller_to_judge() -> None:
    assert decode([b'data: {"a": 1}\n\ndata: {"b"']) == [(None, b'{"a": 1}'), (None, b'{"b"')]
    assert decode([b"data: 1\n\n: only a comment"]) == [(None, b"1")]


_payloads = st.lists(
    st.dictionaries(st.text(max_size=4), st.text(max_size=8), max_size=3), min_size=1, max_size=6
)


@settings(max_examples=300, deadline=None)
@given(
    payloads=_payloads,
    names=st.lists(st.sampled_from([None, "delta", "ping"]), min_size=6, max_size=6),
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_any_framing_and_any_cuts_give_the_same_events(
    payloads: list[dict[str, str]],
    names: list[str | None],
    ending: bytes,
    comments: bool,
    cuts: list[int],
) -> None:
    body = b""
    expected: Events = []
    for payload, name in zip(payloads, names, strict=False):
        data = orjson.dumps(payload)
        if comments:
            body += b": keep-alive" + ending
        if name is not None:
            body += b"event: " + name.encode() + ending
        body += b"data: " + data + ending + ending
        expected.append((name, data))
    points = sorted({min(cut, len(body)) for cut in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    events = decode([piece for piece in pieces if piece])
    assert events == expected
    assert [orjson.loads(data) for _, data in events] == payloads


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_arbitrary_bytes_never_crash_and_cuts_do_not_matter(body: bytes, cuts: list[int]) -> None:
    points = sorted({min(cut, len(body)) for cut in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode([piece for piece in pieces if piece]) == decode([body] if body else [])


_KEYS = ["choices", "usage", "index", "delta", "content", "finish_reason", "refusal", "role"]
_KEYS += ["tool_calls", "function_call", "text"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["", "x", "stop", "a b"]),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.sampled_from(_KEYS),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    content=st.text(max_size=5),
    extra=st.dictionaries(st.sampled_from(["usage", "index", "finish_reason", "role"]), _json),
    chunk=_json,
)
def test_plain_text_shortcut_agrees_with_the_chat_reader(
    content: str, extra: dict[str, Any], chunk: Any
) -> None:
    # The shortcut either declines or gives what the general reader gives, with no events
    # and no change to the reader's state.
    shaped = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    for key, value in extra.items():
        target = shaped if key == "usage" else shaped["choices"][0]
        target[key] = value
    for candidate in (shaped, chunk):
        text = plain_text(candidate)
        reader = ChatChunkReader()
        out: deque[Event] = deque()
        try:
            expected = reader.feed(candidate, out)
        except Exception:
            assert text is _NOT_PLAIN
            continue
        if text is not _NOT_PLAIN:
            assert (text or None) == expected
            assert not out
            assert (reader.usage, reader.finish_reason, reader.refusal) == (None, None, None)
            assert not reader.tools.pending
