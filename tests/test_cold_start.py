"""The first session of a process: installed but unconfigured plugins import nothing heavy.

Loading the plugins' entry points runs on the first ``l0.run``. The Redis health store and the
Sentry exporter are used only when Redis is configured or Sentry initialised; until then their
client libraries (about 0.45 s and 0.3 s to import on these machines) stay unimported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import l0

    async def tokens():
        yield "hello"

    async def main():
        provider = sys.argv[1] if len(sys.argv) > 1 else None
        return await l0.run(tokens, guardrails=[l0.json_rule()], provider=provider).read()

    text = asyncio.run(main())
    names = sorted(l0.plugins.default_plugin_manager().list_name_plugin())
    print(json.dumps({
        "text": text,
        "plugins": [name for name, _ in names],
        "loaded": sorted(m for m in ("redis", "sentry_sdk") if m in sys.modules),
    }))
    """
)


def _fresh(extra_env: dict[str, str] | None = None, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L0_", "SENTRY_"))}
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_unconfigured_redis_and_sentry_plugins_import_nothing_heavy() -> None:
    result = _fresh()
    assert result["text"] == "hello"
    plugins = result["plugins"]
    assert isinstance(plugins, list)
    assert "redis" in plugins  # installed and loaded, only idle
    assert "sentry" in plugins
    assert result["loaded"] == []


def test_a_configured_redis_url_loads_the_store() -> None:
    # A session with a provider key asks for health: the configured store is built (its
    # library imported). Nobody listens at the URL; health then stays in the process and the
    # session still reads its text.
    result = _fresh({"L0_REDIS_URL": "redis://127.0.0.1:1/0"}, "acme|model-a")
    assert result["text"] == "hello"
    assert "redis" in result["loaded"]  # type: ignore[operator]
