"""Fault-injecting, OpenAI-compatible chat completions server for tests.

:class:`ChaosServer` serves ``POST /v1/chat/completions``, ``POST /v1/responses`` (the
Responses API, streaming or not), ``POST /v1/embeddings`` and ``GET /v1/models`` on
``127.0.0.1`` and answers each request with the next :class:`Fault` of a script: a clean
stream, an HTTP error, a dropped connection, a stall, a malformed event and so on. Responses
are byte-for-byte shaped like OpenAI's, so the real ``openai`` SDK (or plain ``httpx``) can be
pointed at :attr:`ChaosServer.base_url`.

uvicorn runs on a thread of its own with its own event loop. The caller's event loop therefore
never sees the server's tasks, a blocked caller cannot stall the server, and the server works
the same under any async framework or none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("l0.testing needs starlette and uvicorn: pip install 'l0[testing]'") from exc

from l0.testing._plans import _install_drop_filter, _plan, _settle
from l0.testing._responses import embeddings_body, input_messages, responses_plan
from l0.testing._transport import _Exchange, _json_body, _Uvicorn
from l0.testing.faults import (
    _GRACEFUL_SHUTDOWN,
    _STARTUP_TIMEOUT,
    DEFAULT_REFUSAL,
    DEFAULT_TEXT,
    Fault,
    FaultKind,
    RecordedRequest,
    _token_tuple,
    split_words,
)

__all__ = [
    "DEFAULT_REFUSAL",
    "DEFAULT_TEXT",
    "ChaosServer",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "split_words",
]


class ChaosServer:
    """An OpenAI-compatible chat completions server that misbehaves on cue.

    Request *i* (0-based) gets ``script[i]``; once the script is used up every request gets
    ``default``. Requests for a model listed in ``model_scripts`` follow that model's script
    and position instead, and do not advance the shared one.

    Use it as ``async with ChaosServer(...) as server:`` (or ``with`` from sync code), or call
    :meth:`start` and :meth:`stop`. It binds ``127.0.0.1`` (on a free port unless ``port`` is
    given) and never touches the network beyond that.

    Args:
        script: Faults for the first requests, in order.
        text: Answer text, split with :func:`split_words`.
        tokens: Exact token split of the answer; wins over ``text``.
        default: Fault once the script is used up; ``Fault.ok()`` if not given.
        model_scripts: Scripts of their own for some model names.
        port: Port to listen on; 0 picks a free one (``l0 chaos serve`` uses a fixed one).
        keep_alive: Seconds an idle keep-alive connection stays open before the server closes
            it (uvicorn's ``timeout_keep_alive``). A long soak raises it: a client reusing a
            connection the server closes at that moment gets a connection error no fault
            scripted.
    """

    def __init__(
        self,
        script: Sequence[Fault] = (),
        *,
        text: str = DEFAULT_TEXT,
        tokens: Sequence[str] | None = None,
        default: Fault | None = None,
        model_scripts: Mapping[str, Sequence[Fault]] | None = None,
        port: int = 0,
        keep_alive: int = 5,
    ) -> None:
        asked: object = port  # typed, but callers may pass anything
        if isinstance(asked, bool) or not isinstance(asked, int) or not 0 <= asked <= 65535:
            raise ValueError(f"port={port!r}: expected an int from 0 to 65535 (0: any free port)")
        idle: object = keep_alive
        if isinstance(idle, bool) or not isinstance(idle, int) or idle < 1:
            raise ValueError(f"keep_alive={keep_alive!r}: expected an int number of seconds >= 1")
        self._listen_port = port
        self._keep_alive = keep_alive
        given = _token_tuple(tokens)
        self._tokens = given if given is not None else tuple(split_words(text))
        self._default = default if default is not None else Fault.ok()
        self._check_faults([self._default])
        self._lock = threading.Lock()
        self._script = self._check_faults(script)
        self._position = 0
        self._model_scripts = {
            model: self._check_faults(faults) for model, faults in (model_scripts or {}).items()
        }
        self._model_positions: dict[str, int] = {}
        self._model_defaults: dict[str, Fault] = {}
        self._requests: list[RecordedRequest] = []
        self._models_seen: dict[str, None] = {}
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._done: concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: _Uvicorn | None = None
        self._crash: BaseException | None = None
        self._stop_requested = False
        # Touched only on the server's own loop.
        self._live: set[_Exchange] = set()
        self._peak = 0
        self._stopping = False

    @staticmethod
    def _check_faults(faults: Sequence[Fault]) -> tuple[Fault, ...]:
        result = tuple(faults)
        for fault in result:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {fault!r}")
        return result

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not running"
        return f"<ChaosServer {where} requests={len(self._requests)}>"

    @property
    def port(self) -> int:
        """The bound TCP port; raises ``RuntimeError`` when the server is not running."""
        if self._port is None:
            raise RuntimeError("the chaos server is not running; use `async with` or start()")
        return self._port

    @property
    def url(self) -> str:
        """Root URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` an OpenAI client takes."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Chat completions requests received so far, oldest first (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def in_flight(self) -> int:
        """Responses still being written, including stalled ones."""
        return len(self._live)

    @property
    def peak_in_flight(self) -> int:
        """Most responses written at the same time since the start (or ``reset()``)."""
        return self._peak

    def _ended(self, record: RecordedRequest, *, gone: bool) -> None:
        with self._lock:
            index = record.index
            if index < len(self._requests) and self._requests[index] is record:
                self._requests[index] = dataclasses.replace(
                    record, ended=time.monotonic(), disconnected=gone
                )

    def set_script(self, script: Sequence[Fault], *, model: str | None = None) -> None:
        """Replace a script and restart it from its first fault.

        Recorded requests are kept; use :meth:`reset` to clear them.

        Args:
            script: The new faults.
            model: Replace that model's script (adding one if needed) instead of the shared.
        """
        faults = self._check_faults(script)
        with self._lock:
            if model is None:
                self._script, self._position = faults, 0
            else:
                self._model_scripts[model] = faults
                self._model_positions[model] = 0

    def reset(self) -> None:
        """Forget recorded requests and seen models, and rewind every script."""
        with self._lock:
            self._requests.clear()
            self._peak = 0
            self._models_seen.clear()
            self._position = 0
            self._model_positions.clear()

    def set_default(self, fault: Fault | None, *, model: str) -> None:
        """Answer every request for ``model`` with ``fault`` once its script is used up.

        ``set_default(Fault.status(503), model="m")`` turns a model dead (its scripted faults,
        if any, still come first); ``set_default(None, model="m")`` brings it back to the
        server's default.

        Args:
            fault: The fault, or ``None`` to forget the model's own default.
            model: The model name.
        """
        if fault is not None:
            self._check_faults([fault])
        with self._lock:
            if fault is None:
                self._model_defaults.pop(model, None)
            else:
                self._model_defaults[model] = fault

    def _next_fault(self, model: str) -> Fault:
        default = self._model_defaults.get(model, self._default)
        if model in self._model_scripts:
            script = self._model_scripts[model]
            position = self._model_positions.get(model, 0)
            self._model_positions[model] = position + 1
            return script[position] if position < len(script) else default
        if model in self._model_defaults:
            return default
        script, position = self._script, self._position
        self._position += 1
        return script[position] if position < len(script) else self._default

    def _tokens_for(self, fault: Fault) -> tuple[str, ...]:
        if fault.tokens is not None:
            return fault.tokens
        if fault.text is not None:
            return tuple(split_words(fault.text))
        return self._tokens

    # Request handlers; these run on the server thread.

    async def _chat(self, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        messages = body.get("messages")
        with self._lock:
            fault = self._next_fault(model)
            record = RecordedRequest(
                index=len(self._requests),
                model=model,
                messages=list(messages) if isinstance(messages, list) else [],
                stream=body.get("stream") is True,
                body=body,
                headers=dict(request.headers),
                time=time.monotonic(),
                fault=fault,
            )
            self._requests.append(record)
            if model:
                self._models_seen[model] = None
        return _Exchange(self, _plan(fault, self._tokens_for(fault), record), record)

    async def _responses(self, request: Request) -> Response:
        """``POST /v1/responses``: the same fault script, as Responses API events."""
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        fault, record = self._take(request, body, input_messages(body), "/v1/responses")
        if fault.kind == "status":
            return _Exchange(self, _plan(fault, (), record), record)
        plan = responses_plan(fault, self._tokens_for(fault), record, [])
        return _Exchange(self, plan, record)

    async def _embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``: deterministic vectors; a ``status`` fault answers as such."""
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        fault, record = self._take(request, body, [], "/v1/embeddings")
        if fault.kind == "status":
            return _Exchange(self, _plan(fault, (), record), record)
        answer = JSONResponse(embeddings_body(body, record.model))
        self._ended(record, gone=False)
        return answer

    def _take(
        self, request: Request, body: dict[str, Any], messages: list[Any], path: str
    ) -> tuple[Fault, RecordedRequest]:
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        with self._lock:
            fault = self._next_fault(model)
            record = RecordedRequest(
                index=len(self._requests),
                model=model,
                messages=messages,
                stream=body.get("stream") is True,
                body=body,
                headers=dict(request.headers),
                time=time.monotonic(),
                fault=fault,
                path=path,
            )
            self._requests.append(record)
            if model:
                self._models_seen[model] = None
        return fault, record

    async def _models(self, request: Request) -> Response:
        with self._lock:
            names = dict.fromkeys([*self._model_scripts, *self._models_seen])
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "l0-testing"}
            for name in names
        ]
        return JSONResponse({"object": "list", "data": data})

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            ]
        )

    # Lifecycle.

    def _launch(self) -> concurrent.futures.Future[int]:
        if self._thread is not None:
            raise RuntimeError("the chaos server is already running")
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._done = concurrent.futures.Future()
        self._stop_requested = False
        self._stopping = False
        self._crash = None
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(started, self._done),
            name="l0-chaos-server",
            daemon=True,
        )
        self._thread.start()
        return started

    def _thread_main(
        self, started: concurrent.futures.Future[int], done: concurrent.futures.Future[None]
    ) -> None:
        try:
            asyncio.run(self._serve(started))
        # uvicorn reports a failed bind with sys.exit(), hence BaseException.
        except BaseException as exc:
            if not _settle(started, error=RuntimeError(f"chaos server failed to start: {exc!r}")):
                self._crash = exc
        finally:
            _settle(started, error=RuntimeError("chaos server exited before it started"))
            self._loop = None
            _settle(done, result=None)

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        _install_drop_filter()
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self._listen_port,
            interface="asgi3",
            http="h11",
            ws="none",
            lifespan="off",
            # None keeps uvicorn from reconfiguring the test process's logging.
            log_config=None,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
            timeout_keep_alive=self._keep_alive,
        )
        self._uvicorn = _Uvicorn(config, self, started)
        try:
            await self._uvicorn.serve()
        finally:
            self._uvicorn = None

    def _begin_shutdown(self) -> None:
        # Runs on the server loop: wake every paused response so none holds shutdown up.
        self._stopping = True
        for exchange in list(self._live):
            exchange.interrupt(stopping=True)
        if self._uvicorn is not None:
            self._uvicorn.request_exit()

    def _request_stop(self) -> concurrent.futures.Future[None] | None:
        if self._thread is None:
            return None
        self._stop_requested = True
        loop = self._loop
        if loop is not None:
            # A closed loop means the thread is already on its way out.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._begin_shutdown)
        return self._done

    def _finish_stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=_STARTUP_TIMEOUT)
        self._port = None
        crash, self._crash = self._crash, None
        if crash is not None:
            raise RuntimeError(f"the chaos server crashed: {crash!r}") from crash

    async def start(self) -> None:
        """Start serving; returns once the port is bound.

        Raises:
            RuntimeError: The server is already running or could not start.
        """
        started = self._launch()
        try:
            self._port = await asyncio.wrap_future(started)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving, dropping streams still in flight; a no-op when not running.

        Stalled and slow responses are cut at once, so this returns within a few tenths of a
        second.
        """
        done = self._request_stop()
        if done is None:
            return
        await asyncio.wrap_future(done)
        self._finish_stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        started = self._launch()
        try:
            self._port = started.result(timeout=_STARTUP_TIMEOUT)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        done = self._request_stop()
        if done is not None:
            done.result(timeout=_STARTUP_TIMEOUT)
            self._finish_stop()
