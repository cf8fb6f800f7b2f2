"""Sentry for L0: breadcrumbs for every recovery, one event when a session gives up.

Install ``l0-sentry`` and call ``sentry_sdk.init`` as usual. See ``docs/sentry.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from l0_sentry.exporter import SentryExporter
from l0_sentry.settings import SentrySettings

__all__ = ["SentryExporter", "SentrySettings", "__version__"]
