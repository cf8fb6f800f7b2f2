"""Builtin error categorisation: HTTP status, then exception type, then message patterns."""

from __future__ import annotations

from l0.errors import _builtin_category
from l0.plugins import hookimpl
from l0.types import ErrorCategory


@hookimpl(trylast=True)
def l0_categorize_error(error: BaseException) -> ErrorCategory | None:
    """Always answers; plugins registered later are asked first."""
    return _builtin_category(error)
