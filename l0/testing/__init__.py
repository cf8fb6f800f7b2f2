"""Test helpers: a fault-injecting, OpenAI-compatible local server.

:class:`ChaosServer` answers chat completions requests on ``127.0.0.1`` with a scripted
sequence of :class:`Fault` s (rate limits, dropped connections, stalls, malformed events, tool
calls, refusals, ...), so retry and timeout behaviour can be tested against the real ``openai``
SDK::

    async with ChaosServer(script=[Fault.status(429), Fault.ok()], text="Hi") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")

The ``chaos_server`` pytest fixture (see :mod:`l0.testing.pytest_plugin`) yields a running
server with an empty script. Needs the ``l0[testing]`` extra (starlette, uvicorn, httpx).

Names are imported on first use: the pytest plugin imports this package in every test run, and
that must stay cheap and work without the extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l0.testing.server import (
        DEFAULT_REFUSAL,
        DEFAULT_TEXT,
        ChaosServer,
        Fault,
        FaultKind,
        RecordedRequest,
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        from l0.testing import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
