"""The ``litellm`` L0 plugin: adapter detection and error categorisation.

No hook imports LiteLLM: its exceptions are looked up in ``sys.modules``, where they are as soon
as LiteLLM raised one.
"""

from __future__ import annotations

import sys
from typing import Any

from l0.errors import categorize_error, get_status_code
from l0.plugins import hookimpl
from l0.types import Adapter, ErrorCategory
from l0_litellm.adapter import LiteLLMAdapter

__all__ = [
    "ADAPTER",
    "categorize_litellm_error",
    "l0_categorize_error",
    "l0_detect_adapter",
    "l0_wrap_client",
]

ADAPTER = LiteLLMAdapter()
"""The adapter instance this plugin hands out."""

_NETWORK = ("Timeout", "APIConnectionError")
_TRANSIENT = (
    "RateLimitError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "InternalServerError",
)
_FATAL = (
    "AuthenticationError",
    "PermissionDeniedError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "BadRequestError",
    "InvalidRequestError",
    "NotFoundError",
    "UnprocessableEntityError",
    "UnsupportedParamsError",
    "BudgetExceededError",
)


def _types(module: Any, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    # getattr: older LiteLLM releases lack some of these (BadGatewayError, MidStream…).
    found = (getattr(module, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


def _status_category(status: int) -> ErrorCategory:
    if status in (408, 409, 429) or status >= 500:
        return ErrorCategory.TRANSIENT
    if status >= 400:
        return ErrorCategory.FATAL
    return ErrorCategory.PROVIDER


def categorize_litellm_error(error: BaseException) -> ErrorCategory | None:
    """The :class:`~l0.types.ErrorCategory` of a LiteLLM exception, ``None`` for others.

    * ``Timeout``, ``APIConnectionError``: ``NETWORK`` (LiteLLM gives its connection error a
      500 status, which would otherwise read as a server error).
    * ``MidStreamFallbackError`` (how LiteLLM reports a stream that failed after it started):
      the category of the exception it wraps, so a connection dropped mid-stream is
      ``NETWORK``; ``TRANSIENT`` when that exception is not a provider error (a chunk that did
      not decode, for instance).
    * ``RateLimitError``, ``ServiceUnavailableError``, ``BadGatewayError``,
      ``InternalServerError``: ``TRANSIENT``.
    * ``AuthenticationError``, ``PermissionDeniedError``, ``BadRequestError`` and its
      ``ContextWindowExceededError``/``ContentPolicyViolationError``/``UnsupportedParamsError``
      kin, ``NotFoundError``, ``UnprocessableEntityError``, ``BudgetExceededError``: ``FATAL``.
    * Any other LiteLLM ``APIError``: by its HTTP status; ``TRANSIENT`` without one.
    """
    module = sys.modules.get("litellm.exceptions")
    if module is None or not type(error).__module__.startswith("litellm"):
        return None
    midstream = getattr(module, "MidStreamFallbackError", None)
    if isinstance(midstream, type) and isinstance(error, midstream):
        original = getattr(error, "original_exception", None)
        if isinstance(original, BaseException) and original is not error:
            inner = categorize_litellm_error(original)
            if inner is None:
                inner = categorize_error(original)
            if inner in (ErrorCategory.NETWORK, ErrorCategory.TRANSIENT, ErrorCategory.FATAL):
                return inner
        return ErrorCategory.TRANSIENT
    if isinstance(error, _types(module, _NETWORK)):
        return ErrorCategory.NETWORK
    if isinstance(error, _types(module, _TRANSIENT)):
        return ErrorCategory.TRANSIENT
    if isinstance(error, _types(module, _FATAL)):
        return ErrorCategory.FATAL
    openai = sys.modules.get("openai")
    if openai is not None and isinstance(error, openai.APIError):
        status = get_status_code(error)
        return ErrorCategory.TRANSIENT if status is None else _status_category(status)
    return None


@hookimpl
def l0_detect_adapter(stream: Any) -> Adapter | None:
    """Claim LiteLLM's ``CustomStreamWrapper`` streams."""
    return ADAPTER if ADAPTER.detect(stream) else None


@hookimpl
def l0_categorize_error(error: BaseException) -> ErrorCategory | None:
    """Categorise LiteLLM's exceptions (see :func:`categorize_litellm_error`)."""
    return categorize_litellm_error(error)


@hookimpl
def l0_wrap_client(client: Any, options: dict[str, Any]) -> Any | None:
    """Wrap the ``litellm`` module: ``l0.wrap(litellm).acompletion(..., stream=True)``."""
    from l0_litellm.client import wrap_litellm

    return wrap_litellm(client, options)
