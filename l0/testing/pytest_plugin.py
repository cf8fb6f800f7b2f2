"""pytest plugin of L0: the ``chaos_server`` fixture.

Registered through the ``pytest11`` entry point, so it is active wherever L0 is installed.
Importing it is cheap and needs neither starlette nor uvicorn; the fixture imports the server
when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from l0.testing.server import ChaosServer

__all__ = ["chaos_server"]


@pytest.fixture
def chaos_server() -> Iterator[ChaosServer]:
    """A running :class:`~l0.testing.ChaosServer` with an empty script, stopped after the test.

    Script it with ``chaos_server.set_script([...])``. Until then every request gets
    ``Fault.ok()``.

    The fixture is synchronous on purpose: the server runs its own event loop on its own
    thread, so it serves sync tests, pytest-asyncio tests (whatever their loop scope) and
    anyio tests alike, and pytest-asyncio is not required.

    Yields:
        The running server.
    """
    try:
        from l0.testing.server import ChaosServer
    except ImportError as exc:
        pytest.skip(f"chaos_server needs the l0[testing] extra: {exc}")
    with ChaosServer() as server:
        yield server
