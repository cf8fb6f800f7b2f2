"""The real Sentry SDK with a transport that keeps envelopes in memory (nothing is sent)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport


class CapturingTransport(Transport):
    """Keeps every envelope the SDK would send."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def errors(self) -> list[dict[str, Any]]:
        """Error/message events (not transactions)."""
        return [dict(e) for env in self.envelopes if (e := env.get_event()) is not None]

    def transactions(self) -> list[dict[str, Any]]:
        return [dict(e) for env in self.envelopes if (e := env.get_transaction_event()) is not None]

    def spans(self) -> list[dict[str, Any]]:
        """Child spans of every transaction: ``{name, op, status, data}`` and ids.

        Older SDKs nest them in the transaction event; newer ones send ``span`` items (v2).
        """
        out = [
            {
                "name": s.get("description"),
                "op": s.get("op"),
                "status": s.get("status"),
                "data": s.get("data", {}),
                "span_id": s.get("span_id"),
                "parent_span_id": s.get("parent_span_id"),
            }
            for tx in self.transactions()
            for s in tx.get("spans", [])
        ]
        for env in self.envelopes:
            for item in env.items:
                if item.headers.get("type") != "span" or item.payload.json is None:
                    continue
                for s in item.payload.json.get("items", []):
                    attrs = {k: v.get("value") for k, v in s.get("attributes", {}).items()}
                    out.append(
                        {
                            "name": s.get("name"),
                            "op": attrs.get("sentry.op"),
                            "status": s.get("status"),
                            "data": attrs,
                            "span_id": s.get("span_id"),
                            "parent_span_id": s.get("parent_span_id"),
                        }
                    )
        return out


@pytest.fixture
def sentry(isolated_config: None) -> Iterator[CapturingTransport]:
    from l0_sentry.settings import reset_warnings

    reset_warnings()
    transport = CapturingTransport()
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=transport,
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        with sentry_sdk.isolation_scope():
            yield transport
    finally:
        sentry_sdk.flush()
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # no DSN: the SDK is inactive again for other tests
