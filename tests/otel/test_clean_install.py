"""``pip install l0 l0-openai l0-otel`` in a fresh venv, the SDK configured only by environment.

The script below has no OpenTelemetry or L0-exporter code at all; ``opentelemetry-instrument``
configures the SDK from ``OTEL_*`` variables, and the session's spans must appear on stdout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio

import openai

import l0
from l0.testing import ChaosServer


async def main():
    async with ChaosServer(text="Hello there, clean install.") as server:
        client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"))
        result = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        print("TEXT:", await result.read(), flush=True)
        await client.close()


asyncio.run(main())
"""


def _install(venv: Path, packages: list[str], env: dict[str, str]) -> None:
    python = venv / "bin" / "python"
    uv = shutil.which("uv")
    if uv is not None:
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env
        )
        command = [uv, "pip", "install", "-q", "--python", str(python), *packages]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
        command = [str(python), "-m", "pip", "install", "-q", *packages]
    subprocess.run(command, check=True, env=env, timeout=240)


def test_spans_appear_with_no_l0_specific_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L0_", "OTEL_", "VIRTUAL_ENV"))}
    env.pop("PYTHONPATH", None)
    venv = tmp_path / "venv"
    _install(
        venv,
        [
            f"{ROOT}[testing]",  # the chaos server the script talks to
            str(ROOT / "l0-openai"),
            str(ROOT / "l0-otel"),
            "opentelemetry-sdk",
            "opentelemetry-distro",
        ],
        env,
    )
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    run_env = {
        **env,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "clean-install",
    }
    done = subprocess.run(
        [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"), str(script)],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "TEXT: Hello there, clean install." in done.stdout
    # The console exporter prints one JSON object per span.
    decoder = json.JSONDecoder()
    spans = []
    text = done.stdout[done.stdout.index("TEXT:") :].split("\n", 1)[1]
    position = 0
    while (start := text.find("{", position)) != -1:
        span, position = decoder.raw_decode(text, start)
        spans.append(span)
    names = sorted(span["name"] for span in spans)
    assert names == ["chat gpt-4o", "l0.attempt"]
    session = next(s for s in spans if s["name"] == "chat gpt-4o")
    assert session["kind"] == "SpanKind.CLIENT"
    assert session["attributes"]["gen_ai.provider.name"] == "openai"
    assert session["attributes"]["l0.outcome"] == "success"
    assert session["resource"]["attributes"]["service.name"] == "clean-install"
    # Only the three L0 distributions were installed from this repository.
    listed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; "
            "print(sorted(d.metadata['Name'] for d in m.distributions() "
            "if d.metadata['Name'].startswith('l0')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert listed.stdout.strip() == "['l0', 'l0-openai', 'l0-otel']"
