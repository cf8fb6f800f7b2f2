"""The observability event types the Sentry exporter reads (no Sentry import needed)."""

from __future__ import annotations

from typing import Final

from l0.events import ObservabilityEventType as _T

EVENT_TYPES: Final[frozenset[str]] = frozenset(
    str(t)
    for t in (
        _T.SESSION_START,
        _T.STREAM_INIT,
        _T.FALLBACK_MODEL_SELECTED,
        _T.ADAPTER_DETECTED,
        _T.RETRY_ATTEMPT,
        _T.FALLBACK_START,
        _T.TIMEOUT_TRIGGERED,
        _T.NETWORK_ERROR,
        _T.RETRY_GIVE_UP,
        _T.SESSION_SUMMARY,
        _T.SESSION_END,
        _T.GROUP_START,
        _T.GROUP_END,
    )
)
"""What ``l0_event_types`` declares: sessions build no other event for this exporter."""
