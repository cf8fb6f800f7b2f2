"""The ``openai`` L0 plugin: adapter detection, client wrapping, error categorisation.

Every hook first checks ``sys.modules`` for ``openai``: an object can only come from the SDK
if it is already imported, so loading this plugin never imports it.
"""

from __future__ import annotations

import sys
from typing import Any

from l0.errors import get_status_code
from l0.plugins import detects_by_type, hookimpl
from l0.types import Adapter, ErrorCategory
from l0_openai.adapter import OpenAIAdapter

__all__ = [
    "ADAPTER",
    "categorize_openai_error",
    "l0_categorize_error",
    "l0_detect_adapter",
    "l0_wrap_client",
]

# Error codes of a failed response (``response.failed`` / ``error`` events, mid-stream errors)
# that a retry cannot fix: the request or its content is the problem.
_FATAL_CODES = frozenset(
    {
        "invalid_prompt",
        "invalid_request_error",
        "invalid_api_key",
        "context_length_exceeded",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "content_policy_violation",
        "content_filter",
        "insufficient_quota",
        "model_not_found",
        "unsupported_model",
    }
)
_FATAL_PREFIXES = ("image_", "invalid_image", "invalid_base64", "unsupported_image", "empty_image")


def _status_category(status: int) -> ErrorCategory:
    if status in (408, 409, 429) or status >= 500:
        return ErrorCategory.TRANSIENT
    if status >= 400:
        return ErrorCategory.FATAL
    return ErrorCategory.PROVIDER


def categorize_openai_error(error: BaseException) -> ErrorCategory | None:
    """The :class:`~l0.types.ErrorCategory` of an OpenAI SDK exception, ``None`` for others.

    * ``APIConnectionError`` and ``APITimeoutError`` (the SDK's wrapping of every transport
      failure, including a connection dropped mid-stream): ``NETWORK``.
    * ``RateLimitError``, ``InternalServerError`` and any other 408/409/429/5xx status:
      ``TRANSIENT`` (a ``Retry-After`` header is honoured by L0).
    * ``AuthenticationError``, ``PermissionDeniedError``, ``BadRequestError``,
      ``NotFoundError``, ``UnprocessableEntityError`` and any other 4xx: ``FATAL`` (never
      retried; the original exception is raised).
    * ``APIError`` without a status, which the SDK raises for an ``error`` sent inside a
      stream that had started fine (and this adapter for ``response.failed``): ``FATAL`` when
      its ``code`` says the request itself is wrong (``invalid_prompt``, policy codes …),
      ``TRANSIENT`` otherwise. The request was accepted with 200, so the failure happened
      while the server generated: ``server_error``, ``rate_limit_exceeded``, overload.
    * ``LengthFinishReasonError`` / ``ContentFilterFinishReasonError`` (structured-output
      helpers): ``MODEL``.

    LiteLLM's exceptions subclass the SDK's; they are left to ``l0-litellm`` (``None``).
    """
    openai = sys.modules.get("openai")
    if openai is None or not isinstance(error, openai.OpenAIError):
        return None
    if type(error).__module__.startswith("litellm"):
        return None
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return ErrorCategory.NETWORK
    if isinstance(error, openai.APIStatusError):
        return _status_category(error.status_code)
    if isinstance(error, openai.APIError):
        status = get_status_code(error)
        if status is not None:
            return _status_category(status)
        code = getattr(error, "code", None)
        if isinstance(code, str) and (code in _FATAL_CODES or code.startswith(_FATAL_PREFIXES)):
            return ErrorCategory.FATAL
        return ErrorCategory.TRANSIENT
    finish_errors = tuple(
        cls
        for cls in (
            getattr(openai, "LengthFinishReasonError", None),
            getattr(openai, "ContentFilterFinishReasonError", None),
        )
        if isinstance(cls, type)
    )
    if finish_errors and isinstance(error, finish_errors):
        return ErrorCategory.MODEL
    return None


ADAPTER = OpenAIAdapter()
"""The adapter instance this plugin hands out."""


@hookimpl
@detects_by_type
def l0_detect_adapter(stream: Any) -> Adapter | None:
    """Claim ``openai.AsyncStream`` objects (chat completions and Responses)."""
    return ADAPTER if ADAPTER.detect(stream) else None


@hookimpl
def l0_categorize_error(error: BaseException) -> ErrorCategory | None:
    """Categorise the OpenAI SDK's exceptions (see :func:`categorize_openai_error`)."""
    return categorize_openai_error(error)


@hookimpl
def l0_wrap_client(client: Any, options: dict[str, Any]) -> Any | None:
    """Wrap ``openai.AsyncOpenAI`` clients; refuse the synchronous ``openai.OpenAI``."""
    from l0_openai.client import wrap_client

    return wrap_client(client, options)
