"""A loopback OpenAI-compatible server that writes pre-rendered SSE answers as fast as it can.

For the HTTP benchmarks and the soak: the server must cost the client nothing, so it runs in
its own process, renders each answer once, and answers every request with one write. The
request's ``model`` picks the answer: ``"n<count>"`` streams ``count`` content chunks (the
words of :func:`token`, then a ``finish_reason`` chunk and ``[DONE]``).

Run it with ``python benchmarks/sse_server.py``: it binds ``127.0.0.1`` on a free port, prints
the port on the first line of stdout, and serves until stdin closes. :func:`start` does that
from a benchmark script and returns the base URL and the process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from functools import cache

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


def token(i: int) -> str:
    """The ``i``-th content chunk's text."""
    return WORDS[i % len(WORDS)]


def expected(count: int) -> str:
    """The whole text of an answer of ``count`` chunks."""
    return "".join(token(i) for i in range(count))


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    # The shape (and size, about 230 bytes) of a real chat-completions chunk.
    payload = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@cache
def response(count: int) -> bytes:
    """The whole HTTP response for an answer of ``count`` chunks."""
    parts = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    parts += [_chunk({"content": token(i)}) for i in range(count)]
    parts += [_chunk({}, "stop"), b"data: [DONE]\n\n"]
    body = b"".join(parts)
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            try:
                model = str(json.loads(body).get("model", "n10"))
                count = int(model.lstrip("n").split("-")[0])
            except (ValueError, AttributeError):
                count = 10
            assert self._transport is not None
            self._transport.write(response(count))


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    # Serve until the parent closes our stdin (it exited or is done).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def start() -> tuple[str, subprocess.Popen[str]]:
    """Start the server in a child process; return its base URL and the process."""
    process = subprocess.Popen(
        [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return f"http://127.0.0.1:{port}/v1", process


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a server started with :func:`start`."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
