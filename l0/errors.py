"""L0's error types and error categorisation.

Every L0 error has a stable ``code``, an :class:`~l0.types.ErrorCategory` and a recovery
``hint``. Errors raised by providers are never wrapped when they end a session as fatal: the
original exception is re-raised with an ``l0`` attribute (an :class:`ErrorContext`) and a note,
so ``except openai.AuthenticationError`` keeps working.

The exception classes live in :mod:`l0._error_types`; this module re-exports them and holds
the rules that inspect and categorise errors. Import from here.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from l0._error_types import (
    AbortedError,
    AdapterNotFoundError,
    AttemptError,
    CircuitOpenError,
    ConfigError,
    ConfigWarning,
    DeadlineExceededError,
    DriftError,
    ErrorContext,
    GuardrailCheckError,
    GuardrailError,
    IncompleteStreamError,
    InitialTokenTimeoutError,
    InterTokenTimeoutError,
    InvalidStreamError,
    L0Error,
    L0PluginError,
    MalformedChunkError,
    ProviderUnavailableError,
    RefusalError,
    RetryAfterWindowError,
    RetryBudgetExhaustedError,
    RetryExhaustedError,
    StreamTimeoutError,
    StructuredOutputError,
    ToolCallError,
    TruncatedError,
    UnsupportedClientError,
    ZeroOutputError,
    context_of,
)
from l0._error_types import (
    attach_context as attach_context,  # noqa: PLC0414 - private, l0._decisions imports it here
)
from l0.types import ErrorCategory

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager

__all__ = [
    "AbortedError",
    "AdapterNotFoundError",
    "AttemptError",
    "CircuitOpenError",
    "ConfigError",
    "ConfigWarning",
    "DeadlineExceededError",
    "DriftError",
    "ErrorContext",
    "GuardrailCheckError",
    "GuardrailError",
    "IncompleteStreamError",
    "InitialTokenTimeoutError",
    "InterTokenTimeoutError",
    "InvalidStreamError",
    "L0Error",
    "L0PluginError",
    "MalformedChunkError",
    "ProviderUnavailableError",
    "RefusalError",
    "RetryAfterWindowError",
    "RetryBudgetExhaustedError",
    "RetryExhaustedError",
    "StreamTimeoutError",
    "StructuredOutputError",
    "ToolCallError",
    "TruncatedError",
    "UnsupportedClientError",
    "ZeroOutputError",
    "categorize_error",
    "context_of",
    "get_retry_after",
    "get_status_code",
    "parse_retry_after",
]

log = logging.getLogger("l0")


# --- inspecting provider exceptions without trusting them ----------------------------------------


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def get_status_code(error: BaseException) -> int | None:
    """Return the HTTP status an exception carries, or ``None``.

    Looks at ``status_code``, ``status``, ``http_status`` and ``response.status_code``; a
    ``code`` attribute counts only when it is an HTTP-range integer (providers put strings
    like ``"rate_limit_exceeded"`` there). Never raises.
    """
    try:
        for attr in ("status_code", "status", "http_status"):
            status = _as_int(getattr(error, attr, None))
            if status is not None and 100 <= status <= 599:
                return status
        response = getattr(error, "response", None)
        if response is not None:
            status = _as_int(getattr(response, "status_code", None))
            if status is not None and 100 <= status <= 599:
                return status
        status = _as_int(getattr(error, "code", None))
        if status is not None and 400 <= status <= 599:
            return status
    except Exception:  # a provider's property may raise anything
        return None
    return None


def _header(headers: object, name: str) -> str | None:
    if headers is None:
        return None
    try:
        getter = getattr(headers, "get", None)
        if callable(getter):
            value = getter(name)
            if value is None:
                value = getter(name.title())
            return None if value is None else str(value)
        if isinstance(headers, Sequence):
            for item in headers:
                if isinstance(item, Sequence) and len(item) == 2:
                    key, value = item
                    if str(key).lower() == name:
                        return str(value)
    except Exception:
        return None
    return None


def parse_retry_after(value: object, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` value (delta seconds or an HTTP date) into seconds to wait.

    Args:
        value: The header value (``"3"``, ``"1.5"``, ``"Wed, 21 Oct 2026 07:28:00 GMT"``) or a
            number.
        now: Current wall-clock time in seconds since the epoch, for dates (tests pass it).

    Returns:
        Seconds (``0.0`` for a date in the past), or ``None`` when ``value`` is absent or
        unparseable.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if math.isnan(value) else max(0.0, float(value))
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    # Retry-After dates are wall-clock by definition; monotonic time cannot express them.
    current = now if now is not None else time.time()  # noqa: TID251
    return max(0.0, when.timestamp() - current)


def get_retry_after(error: BaseException) -> float | None:
    """Return the ``Retry-After`` an exception carries (attribute or response header), in seconds.

    Never raises.
    """
    try:
        direct = getattr(error, "retry_after", None)
        if direct is not None:
            parsed = parse_retry_after(direct)
            if parsed is not None:
                return parsed
        for source in (getattr(error, "response", None), error):
            headers = getattr(source, "headers", None)
            for name in ("retry-after-ms", "retry-after"):
                raw = _header(headers, name)
                if raw is None:
                    continue
                parsed = parse_retry_after(raw)
                if parsed is not None:
                    return parsed / 1000.0 if name == "retry-after-ms" else parsed
    except Exception:
        return None
    return None


# The spec's twelve network message patterns, made whole-phrase: each word must stand alone,
# so "disconnection" or "runtime output" do not count as network trouble.
_NETWORK_PATTERNS: tuple[str, ...] = (
    r"\bconnection\b.*\breset\b",
    r"\bconnection\b.*\brefused\b",
    r"\bconnection\b.*\btime[d]?\s*out\b",
    r"\btimed?\s*out\b",
    r"\bdns\b.*\bfailed\b",
    r"\bname\b.*\bresolution\b",
    r"\bsocket\b.*\berror\b",
    r"\bssl\b.*\berror\b",
    r"\beof\b.*\boccurred\b",
    r"\bbroken\b.*\bpipe\b",
    r"\bnetwork\b.*\bunreachable\b",
    r"\bhost\b.*\bunreachable\b",
)
_NETWORK_RE = re.compile("|".join(f"(?:{p})" for p in _NETWORK_PATTERNS), re.IGNORECASE)

# Exception class names that mean "the transport failed", matched by name so that httpx, aiohttp
# and SDKs built on them are recognised without importing them.
_NETWORK_TYPE_NAMES = frozenset(
    {
        "TransportError",
        "NetworkError",
        "ConnectError",
        "ReadError",
        "WriteError",
        "CloseError",
        "RemoteProtocolError",
        "LocalProtocolError",
        "ProtocolError",
        "ProxyError",
        "TimeoutException",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "IncompleteRead",
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "APIConnectionError",
        "APITimeoutError",
    }
)

_INTERNAL_TYPES: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    NameError,
    AssertionError,
    NotImplementedError,
    RecursionError,
)


def _builtin_category(error: BaseException) -> ErrorCategory:
    """Categorise by L0 type, then HTTP status, then exception type, then message."""
    if isinstance(error, L0Error):
        return error.category
    status = get_status_code(error)
    if status is not None:
        if status in (401, 403):
            return ErrorCategory.FATAL
        if status in (408, 409, 429) or status >= 500:
            return ErrorCategory.TRANSIENT
        if status >= 400:
            return ErrorCategory.FATAL
        return ErrorCategory.PROVIDER
    if isinstance(error, asyncio.TimeoutError | TimeoutError | ssl.SSLError | ConnectionError):
        return ErrorCategory.NETWORK
    for cls in type(error).__mro__:
        if cls.__name__ in _NETWORK_TYPE_NAMES:
            return ErrorCategory.NETWORK
    if isinstance(error, OSError):
        return ErrorCategory.NETWORK
    if isinstance(error, _INTERNAL_TYPES):
        return ErrorCategory.INTERNAL
    try:
        message = str(error)
    except Exception:
        message = ""
    if message and _NETWORK_RE.search(message):
        return ErrorCategory.NETWORK
    return ErrorCategory.MODEL


_default_manager: Callable[[], L0PluginManager] | None = None


def _set_default_manager(provider: Callable[[], L0PluginManager]) -> None:
    """Called by :mod:`l0.plugins` on import, so this module never imports it (no cycle)."""
    global _default_manager  # noqa: PLW0603 - set once, by the module above this one
    _default_manager = provider


def categorize_error(
    error: BaseException, *, plugins: L0PluginManager | None = None
) -> ErrorCategory:
    """Return the :class:`~l0.types.ErrorCategory` of ``error``.

    Plugins answer first (``l0_categorize_error``); the builtin rules then decide by HTTP status
    (401/403 and other 4xx fatal; 408/409/429/5xx transient), by exception type (timeouts,
    ``OSError``, ``ssl``/``httpx``-style transport errors are network; ``TypeError``,
    ``ValueError`` and other programming errors are internal), and last by whole-phrase network
    message patterns. Anything else is a model error. This function never raises.

    Args:
        error: The exception to classify.
        plugins: The plugin manager to ask; the default manager when omitted.
    """
    try:
        if plugins is None:
            if _default_manager is None:  # pragma: no cover - l0/__init__ imports l0.plugins
                raise RuntimeError("l0.plugins is not imported")
            plugins = _default_manager()
        answer = plugins.hooks.categorize_error(error)
        if isinstance(answer, ErrorCategory):
            return answer
    except Exception:
        log.exception("l0: categorising %r failed; using the builtin rules", type(error))
    try:
        return _builtin_category(error)
    except Exception:  # pragma: no cover - _builtin_category is written not to raise
        return ErrorCategory.MODEL
