"""Sentry for L0: breadcrumbs for every recovery, one event when a session gives up.

Install ``l0-sentry`` and call ``sentry_sdk.init`` as usual. See ``docs/sentry.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from l0_sentry.settings import SentrySettings

if TYPE_CHECKING:
    from l0_sentry.exporter import SentryExporter

__all__ = ["SentryExporter", "SentrySettings", "__version__"]


def __getattr__(name: str) -> Any:
    # The exporter imports sentry_sdk (about 0.3 s): loaded on first use, not with the plugin.
    if name == "SentryExporter":
        from l0_sentry.exporter import SentryExporter

        return SentryExporter
    raise AttributeError(f"module 'l0_sentry' has no attribute {name!r}")
