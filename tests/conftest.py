"""Suite-wide setup."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# LiteLLM fetches its model cost map from the internet when imported unless told not to, and
# the l0-litellm plugin may be imported by any test that builds a plugin manager. The tests
# never leave 127.0.0.1.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def _config_checked_on_every_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests edit config files and read them back at once: no recheck interval."""
    import l0.config

    monkeypatch.setattr(l0.config, "RECHECK_SECONDS", 0.0)


@pytest.fixture
def isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run in an empty directory with no L0_* variables and no cached config or manager."""
    import l0
    from l0.config import reset_config_cache

    for name in list(os.environ):
        if name.startswith("L0_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    reset_config_cache()
    l0.reset_default_plugin_manager()
    yield
    reset_config_cache()
    l0.reset_default_plugin_manager()
