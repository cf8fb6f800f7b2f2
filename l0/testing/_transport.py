"""The chaos server's HTTP side: playing a planned response over ASGI, and uvicorn.

:class:`_Exchange` writes one planned response (see :mod:`l0.testing._plans`) message by
message, so faults can pause between chunks or drop the connection; :class:`_Uvicorn` reports
its port and stops without uvicorn's polling delay. Split from :mod:`l0.testing.server`, whose
:class:`~l0.testing.server.ChaosServer` owns both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from l0.testing._plans import _Drop, _DropConnection, _error_response, _Pause, _Plan, _Send, _settle
from l0.testing.faults import RecordedRequest

if TYPE_CHECKING:
    from l0.testing.server import ChaosServer


class _Exchange(Response):
    """Plays one planned response over raw ASGI messages.

    The body is written message by message so a fault can pause between chunks, and a drop is
    an exception after the headers went out, which makes uvicorn close the transport.
    """

    def __init__(self, owner: ChaosServer, plan: _Plan, record: RecordedRequest) -> None:
        # Response.__init__ is skipped on purpose: it would serialize a body this class never
        # has; __call__ below writes every ASGI message itself.
        self.status_code = plan.status
        self.background = None
        self.raw_headers = plan.headers
        self._owner = owner
        self._plan = plan
        self._record = record
        self._wake = asyncio.Event()
        # Whether the client went away; an interrupt without it means the server is stopping.
        self._gone = False

    def interrupt(self, *, stopping: bool) -> None:
        """End any pause now; ``stopping`` tells a server stop from a client disconnect."""
        if not stopping:
            self._gone = True
        self._wake.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep; False when interrupted, so the caller must give up the response."""
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        return not self._wake.is_set()

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.interrupt(stopping=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = self._owner
        owner._live.add(self)
        owner._peak = max(owner._peak, len(owner._live))
        if owner._stopping:
            self.interrupt(stopping=True)
        listener = asyncio.get_running_loop().create_task(self._listen(receive))
        try:
            await self._play(send)
        finally:
            listener.cancel()
            # The end is recorded first, so a response no longer in flight has its end time.
            owner._ended(self._record, gone=self._gone)
            owner._live.discard(self)

    async def _play(self, send: Send) -> None:
        plan = self._plan
        if plan.header_delay and not await self._pause(plan.header_delay):
            if not self._gone:
                await _send_whole(send, 503, "The chaos server is shutting down.")
            return
        await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
        for step in plan.steps:
            if isinstance(step, _Pause):
                await self._pause(step.seconds)
            if self._wake.is_set():
                if self._gone:
                    return
                raise _DropConnection
            if isinstance(step, _Send):
                await send({"type": "http.response.body", "body": step.data, "more_body": True})
            elif isinstance(step, _Drop):
                raise _DropConnection
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _json_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except ValueError:
        return _error_response(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _error_response(400, "The request body must be a JSON object.")
    return body


async def _send_whole(send: Send, status: int, message: str) -> None:
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Uvicorn(uvicorn.Server):
    """uvicorn server that reports its bound port once listening."""

    def __init__(
        self, config: uvicorn.Config, owner: ChaosServer, started: concurrent.futures.Future[int]
    ) -> None:
        super().__init__(config)
        self._owner = owner
        self._started = started
        self._exit: asyncio.Event | None = None

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; waking on an event instead takes that
        # latency off every stop(), which a test suite pays once per test.
        self._exit = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._exit.wait()

    def request_exit(self) -> None:
        """Ask the server to shut down; call on the server's loop."""
        self.should_exit = True
        if self._exit is not None:
            self._exit.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        port: int = self.servers[0].sockets[0].getsockname()[1]
        # The caller may have stopped or given up on start() while the socket was bound.
        if not _settle(self._started, result=port) or self._owner._stop_requested:
            self.should_exit = True
