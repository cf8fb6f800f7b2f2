"""l0.errors: categorisation, status and Retry-After inspection, the error types."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import l0
from l0.errors import (
    AbortedError,
    AdapterNotFoundError,
    AttemptError,
    ConfigError,
    DriftError,
    ErrorContext,
    GuardrailError,
    InitialTokenTimeoutError,
    InterTokenTimeoutError,
    InvalidStreamError,
    L0Error,
    L0PluginError,
    RetryExhaustedError,
    StreamTimeoutError,
    ToolCallError,
    TruncatedError,
    ZeroOutputError,
    attach_context,
    categorize_error,
    get_retry_after,
    get_status_code,
)
from l0.plugins import L0PluginManager
from l0.types import ErrorCategory
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script, StatusError

NETWORK = ErrorCategory.NETWORK
TRANSIENT = ErrorCategory.TRANSIENT
FATAL = ErrorCategory.FATAL
INTERNAL = ErrorCategory.INTERNAL
MODEL = ErrorCategory.MODEL


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


def cat(error: BaseException, pm: L0PluginManager) -> ErrorCategory:
    return categorize_error(error, plugins=pm)


async def tokens(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


# --- every category ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (ConnectionResetError("reset"), NETWORK),
        (StatusError(503), TRANSIENT),
        (RuntimeError("the model refused"), MODEL),
        (GuardrailError("bad output"), ErrorCategory.CONTENT),
        (DriftError("drifting"), ErrorCategory.CONTENT),
        (StatusError(302), ErrorCategory.PROVIDER),
        (StatusError(401), FATAL),
        (TypeError("bug"), INTERNAL),
    ],
    ids=lambda v: v.value if isinstance(v, ErrorCategory) else type(v).__name__,
)
def test_every_category(error: BaseException, category: ErrorCategory, pm: L0PluginManager) -> None:
    assert cat(error, pm) is category


def test_every_category_is_reachable() -> None:
    assert {c.value for c in ErrorCategory} == {
        "network",
        "transient",
        "model",
        "content",
        "provider",
        "fatal",
        "internal",
    }


def test_default_plugin_manager_is_used_when_none_is_given() -> None:
    assert categorize_error(StatusError(429)) is TRANSIENT
    assert categorize_error(ValueError("bad")) is INTERNAL


# --- the twelve network message patterns, as whole phrases ------------------------------------

PHRASES = [
    "Connection reset by peer",
    "connection refused",
    "connection timeout while reading",
    "request timed out",
    "DNS lookup failed",
    "temporary failure in name resolution",
    "socket error 104",
    "SSL error: decryption failed",
    "EOF occurred in violation of protocol",
    "write failed: broken pipe",
    "network is unreachable",
    "no route: host unreachable",
]


@pytest.mark.parametrize("message", PHRASES)
def test_network_message_patterns(message: str, pm: L0PluginManager) -> None:
    assert cat(RuntimeError(message), pm) is NETWORK
    assert cat(RuntimeError(message.upper()), pm) is NETWORK


@pytest.mark.parametrize(
    "message",
    [
        "disconnection of the reset button",  # 'connection' inside a word
        "the runtime output was empty",  # 'time out' across words
        "timeouts were configured",  # plural is not the phrase
        "sockets errored",
        "unbroken pipeline",
        "hostname unreachable",  # 'host' inside a word
        "the sslerror class",  # no word boundary between ssl and error
        "networking unreachableness",
    ],
)
def test_stray_substrings_are_not_network(message: str, pm: L0PluginManager) -> None:
    assert cat(RuntimeError(message), pm) is MODEL


# --- by type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        asyncio.TimeoutError(),  # noqa: UP041 - the spec names the asyncio alias
        TimeoutError("slow"),
        OSError("something odd"),
        ConnectionResetError(),
        ConnectionRefusedError(),
        BrokenPipeError(),
        socket.gaierror(-2, "Name or service not known"),
        ssl.SSLError("bad record mac"),
        ssl.SSLEOFError(),
        httpx.ConnectError("connect failed"),
        httpx.ReadTimeout("read"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadError(""),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_by_type(error: BaseException, pm: L0PluginManager) -> None:
    assert cat(error, pm) is NETWORK


def test_transport_errors_matched_by_class_name(pm: L0PluginManager) -> None:
    # A library we have never heard of, with the usual transport class names: no import needed.
    class ConnectError(Exception):
        pass

    class TimeoutException(Exception):
        pass

    class MyClientTimeout(TimeoutException):
        pass

    assert cat(ConnectError("boom"), pm) is NETWORK
    assert cat(MyClientTimeout("x"), pm) is NETWORK


def test_httpx_is_not_imported_by_categorisation() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["httpx"] = None  # importing httpx now fails
        import l0
        from l0.errors import categorize_error
        from l0.types import ErrorCategory

        class ReadTimeout(Exception):
            pass

        ReadTimeout.__module__ = "httpx"
        pm = l0.build_plugin_manager(entry_points=False)
        assert categorize_error(ReadTimeout("x"), plugins=pm) is ErrorCategory.NETWORK
        assert sys.modules["httpx"] is None
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_httpx_status_error_uses_the_response(pm: L0PluginManager) -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers={"Retry-After": "2"}, request=request)
    error = httpx.HTTPStatusError("rate limited", request=request, response=response)
    assert get_status_code(error) == 429
    assert cat(error, pm) is TRANSIENT
    assert get_retry_after(error) == 2.0


# --- by HTTP status ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (401, FATAL),
        (403, FATAL),
        (408, TRANSIENT),
        (409, TRANSIENT),
        (429, TRANSIENT),
        (500, TRANSIENT),
        (502, TRANSIENT),
        (503, TRANSIENT),
        (504, TRANSIENT),
        (529, TRANSIENT),
        (400, FATAL),
        (404, FATAL),
        (413, FATAL),
        (422, FATAL),
    ],
)
def test_by_status(status: int, category: ErrorCategory, pm: L0PluginManager) -> None:
    assert cat(StatusError(status), pm) is category


class Carrier(Exception):
    """An exception carrying arbitrary attributes, like assorted SDKs do."""

    def __init__(self, message: str = "provider error", **attrs: Any) -> None:
        super().__init__(message)
        for key, value in attrs.items():
            setattr(self, key, value)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Carrier(status=503), 503),
        (Carrier(http_status=429), 429),
        (Carrier(status_code="502"), 502),
        (Carrier(status_code=" 401 "), 401),
        (Carrier(code=500), 500),
        (Carrier(response=Carrier(status_code=403)), 403),
        (Carrier(code="rate_limit_exceeded"), None),
        (Carrier(code=200), None),  # a code outside 4xx/5xx is not a status
        (Carrier(status_code=None), None),
        (Carrier(status_code=True), None),
        (Carrier(status_code=1234), None),
        (Carrier(status_code="five hundred"), None),
    ],
)
def test_status_is_read_from_many_places(
    error: BaseException, status: int | None, pm: L0PluginManager
) -> None:
    assert get_status_code(error) == status


def test_status_beats_message_and_type(pm: L0PluginManager) -> None:
    assert cat(Carrier("connection reset by peer", status_code=401), pm) is FATAL
    assert cat(Carrier("request timed out", status_code=400), pm) is FATAL

    class AuthTimeout(TimeoutError):
        status_code = 403

    assert cat(AuthTimeout("timed out"), pm) is FATAL


def test_l0_errors_keep_their_own_category(pm: L0PluginManager) -> None:
    assert cat(InterTokenTimeoutError("stall", elapsed=1.0, configured=1.0), pm) is NETWORK
    assert cat(ZeroOutputError("nothing"), pm) is TRANSIENT
    assert cat(ToolCallError("bad args"), pm) is MODEL
    assert cat(TruncatedError("length"), pm) is MODEL
    assert cat(InvalidStreamError("not a stream"), pm) is INTERNAL
    assert cat(ConfigError("bad"), pm) is INTERNAL


# --- programmer errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        TypeError("'NoneType' object is not iterable"),
        ValueError("timed out"),  # the type wins over a network-looking message
        AttributeError("x"),
        KeyError("choices"),
        NotImplementedError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_programmer_errors_are_internal(error: BaseException, pm: L0PluginManager) -> None:
    assert cat(error, pm) is INTERNAL


@pytest.mark.parametrize("error", [TypeError("bug"), ValueError("bug")])
async def test_internal_errors_are_never_retried(error: Exception, pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 2, error)] * 5)
    with pytest.raises(type(error), match="bug") as info:
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert script.calls == 1
    assert info.value.l0.category is INTERNAL  # type: ignore[attr-defined]


async def test_not_a_stream_is_internal_and_not_retried(pm: L0PluginManager) -> None:
    calls = 0

    def factory() -> Any:
        nonlocal calls
        calls += 1
        return object()

    with pytest.raises(AdapterNotFoundError) as info:
        await l0.run(factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert calls == 1
    assert info.value.category is INTERNAL
    assert isinstance(info.value, TypeError)
    assert info.value.hint


# --- robustness: whatever a provider exception carries, classification never raises ----------


class Hostile(Exception):
    """Every attribute L0 might look at raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} for you")

    @property
    def status_code(self) -> int:
        raise RuntimeError("status exploded")

    @property
    def headers(self) -> Any:
        raise RuntimeError("headers exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class ExplodingHeaders:
    def get(self, name: str) -> str:
        raise KeyError(name)


class WeirdHeaders:
    """Neither a mapping nor a list."""

    def __repr__(self) -> str:
        return "WeirdHeaders()"


@pytest.mark.parametrize(
    "error",
    [
        Hostile(),
        Carrier(code="insufficient_quota"),
        Carrier(code=None, status_code=None),
        Carrier(status_code=object()),
        Carrier(headers=ExplodingHeaders(), status_code=429),
        Carrier(headers=WeirdHeaders(), status_code=503),
        Carrier(headers=42, status_code=503),
        Carrier(headers=[("retry-after",)], status_code=503),
        Carrier(headers=[("retry-after", "soon")], status_code=503),
        Carrier(response=Hostile(), status_code=503),
        Carrier(response=Carrier(headers=ExplodingHeaders())),
        Carrier(retry_after=object()),
        Carrier(retry_after=float("nan")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_classification_never_raises(error: BaseException, pm: L0PluginManager) -> None:
    assert isinstance(cat(error, pm), ErrorCategory)
    assert isinstance(categorize_error(error), ErrorCategory)
    retry_after = get_retry_after(error)
    assert retry_after is None or retry_after >= 0
    status = get_status_code(error)
    assert status is None or 100 <= status <= 599


async def test_hostile_provider_error_is_retried_not_an_l0_crash(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 1, Hostile()), Fault("raise", 1, Carrier(headers=42))])
    result = l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0))
    assert await result.read() == TEXT
    assert script.calls == 3
    assert result.state.model_retry_count == 2


async def test_odd_error_reaches_the_caller_unchanged_when_fatal(pm: L0PluginManager) -> None:
    error = Carrier("forbidden", status_code="403", headers=ExplodingHeaders(), code="denied")
    script = Script([Fault("raise", 0, error)])
    with pytest.raises(Carrier) as info:
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert info.value is error


# --- fatal SDK errors keep their own type ----------------------------------------------------


class APIError(Exception):
    """Shaped like an SDK's base error."""


class APIStatusError(APIError):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthenticationError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (AuthenticationError("invalid api key", 401), FATAL),
        (NotFoundError("no such model", 404), FATAL),
    ],
)
async def test_fatal_sdk_error_reaches_caller_as_its_own_type(
    error: APIStatusError, category: ErrorCategory, pm: L0PluginManager
) -> None:
    script = Script([Fault("raise", 2, error)] * 3)
    caught: APIError | None = None
    try:
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    except APIError as exc:  # the caller's own except clause still works
        caught = exc
    assert caught is error
    assert script.calls == 1
    context = caught.l0  # type: ignore[attr-defined]
    assert isinstance(context, ErrorContext)
    assert context.category is category
    assert [a.error for a in context.attempts] == [error]
    assert context.state is not None
    assert context.state.attempt == 1
    assert any(note.startswith("[l0] fatal error") for note in caught.__notes__)


def test_attach_context_survives_unsettable_exceptions() -> None:
    class Frozen(Exception):
        __slots__ = ()

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(name)

    error = Frozen("x")
    attach_context(error, ErrorContext(FATAL))  # neither .l0 nor a note can be set: no raise
    assert not hasattr(error, "l0")


# --- RetryExhaustedError -------------------------------------------------------------------


async def test_retry_exhausted_carries_every_attempt(pm: L0PluginManager) -> None:
    errors: list[BaseException] = [
        ConnectionResetError("reset 1"),
        StatusError(503),
        RuntimeError("model 3"),
    ]
    script = Script([Fault("raise", 1, e) for e in errors])
    with pytest.raises(RetryExhaustedError) as info:
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(max_retries=2, base_delay=0)).read()
    exc = info.value
    assert exc.last_error is errors[-1]
    assert exc.__cause__ is errors[-1]
    assert [a.error for a in exc.errors] == errors
    assert all(isinstance(a, AttemptError) for a in exc.errors)
    assert [a.attempt for a in exc.errors] == [1, 2, 3]
    assert [a.category for a in exc.errors] == [NETWORK, TRANSIENT, MODEL]
    assert {a.fallback_index for a in exc.errors} == {0}
    assert exc.state.attempt == 3
    assert exc.state.content == ""
    assert exc.category is MODEL
    assert exc.code == "retry_exhausted"
    assert "3 attempt(s)" in str(exc)
    assert "RuntimeError: model 3" in str(exc)


async def test_retry_exhausted_across_fallbacks(pm: L0PluginManager) -> None:
    primary = Script([Fault("raise", 0, ConnectionResetError("a"))] * 5)
    backup = Script([Fault("raise", 0, ConnectionResetError("b"))] * 5)
    with pytest.raises(RetryExhaustedError) as info:
        await l0.run(
            primary.factory,
            fallbacks=[backup.factory],
            plugins=pm,
            retry=l0.Retry(max_retries=1, base_delay=0),
        ).read()
    assert [(a.fallback_index, str(a.error)) for a in info.value.errors] == [
        (0, "a"),
        (0, "a"),
        (1, "b"),
        (1, "b"),
    ]
    assert info.value.state.fallback_index == 1


def test_retry_exhausted_without_errors_is_internal() -> None:
    exc = RetryExhaustedError("x", last_error=RuntimeError(), errors=[], state=l0.State())
    assert exc.category is INTERNAL


# --- codes and hints -----------------------------------------------------------------------

ERROR_TYPES: list[type[L0Error]] = [
    L0Error,
    ConfigError,
    L0PluginError,
    InvalidStreamError,
    AdapterNotFoundError,
    StreamTimeoutError,
    InitialTokenTimeoutError,
    InterTokenTimeoutError,
    ZeroOutputError,
    GuardrailError,
    DriftError,
    ToolCallError,
    TruncatedError,
    AbortedError,
    RetryExhaustedError,
]


def test_codes_are_unique_and_hints_present() -> None:
    codes = [t.code for t in ERROR_TYPES]
    assert len(set(codes)) == len(codes)
    for error_type in ERROR_TYPES[1:]:
        assert error_type.hint, error_type
        assert error_type.__doc__, error_type
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in codes)


def test_errors_are_catchable_by_their_builtin_bases() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(InvalidStreamError, TypeError)
    assert issubclass(InitialTokenTimeoutError, TimeoutError)
    timeout = InitialTokenTimeoutError("no first token", elapsed=0.5, configured=0.4)
    assert (timeout.elapsed, timeout.configured, timeout.timeout_type) == (0.5, 0.4, "initial")
    assert InterTokenTimeoutError.timeout_type == "inter"
    assert str(timeout) == "no first token"
    assert timeout.details == {"elapsed": 0.5, "configured": 0.4}


def test_guardrail_error_carries_violations() -> None:
    violation = l0.GuardrailViolation(rule="json", message="broken")
    error = GuardrailError("rejected", [violation], fatal=True)
    assert error.violations == [violation]
    assert error.fatal
    assert error.category is ErrorCategory.CONTENT


async def test_success_path_untouched(pm: L0PluginManager) -> None:
    # Sanity: the helpers used above produce the full text when nothing fails.
    assert await l0.run(lambda: tokens(TOKENS), plugins=pm).read() == TEXT


def test_every_l0_error_type_is_in_the_docs_table() -> None:
    import l0.record

    def subclasses(cls: type[l0.L0Error]) -> list[type[l0.L0Error]]:
        found = []
        for sub in cls.__subclasses__():
            found += [sub, *subclasses(sub)]
        return found

    table = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    # StreamTimeoutError is only the shared base of the two timeout types listed there.
    public = [c for c in subclasses(l0.L0Error) if c.__name__ != "StreamTimeoutError"]
    missing = [c.__name__ for c in public if f"`{c.code}`" not in table]
    assert not missing, f"error types without a row in docs/errors.md: {missing}"
