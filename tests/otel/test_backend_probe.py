"""The per-session "is OpenTelemetry set up" probe answers as the API's own getters (issue 11).

It reads the API's globals and the raw environment instead of calling the getters (about 5 µs
per session less); in every state a process can be in, its answer must be the getters'. The
global providers cannot be unset, so each state runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry import metrics, trace
    from l0_otel.exporter import _backend_set_up, _public_probe

    def both():
        fast = _backend_set_up()
        return fast, _public_probe(), _backend_set_up()

    print(*both())
    step = sys.argv[1]
    if step == "tracer":
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
    elif step == "meter":
        from opentelemetry.sdk.metrics import MeterProvider
        metrics.set_meter_provider(MeterProvider())
    elif step == "placeholder":
        trace.set_tracer_provider(trace.NoOpTracerProvider())
    print(*both())
    """
)


@pytest.mark.parametrize(
    ("step", "env", "expected"),
    [
        ("none", {}, ["False False False", "False False False"]),
        ("tracer", {}, ["False False False", "True True True"]),
        ("meter", {}, ["False False False", "True True True"]),
        ("placeholder", {}, ["False False False", "False False False"]),
        # An SDK named in the environment: the getter loads it when first asked.
        (
            "none",
            {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"},
            ["True True True", "True True True"],
        ),
        (
            "none",
            {"OTEL_PYTHON_METER_PROVIDER": "sdk_meter_provider"},
            ["True True True", "True True True"],
        ),
    ],
)
def test_the_probe_answers_as_the_getters(
    step: str, env: dict[str, str], expected: list[str], tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("L0_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, step],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**clean, **env},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected
