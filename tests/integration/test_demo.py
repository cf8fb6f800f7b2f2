"""`l0 demo`, the README's first command: every scene recovers, and the output shows how."""

from __future__ import annotations

import json

import pytest

from l0.cli import main


def test_demo_json_reports_every_scene_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    scenes = {s["scene"]: s for s in data["scenes"]}
    assert list(scenes) == [
        "rate-limit",
        "continue",
        "guardrail",
        "drift",
        "fallback",
        "structured",
        "race",
    ]
    assert all(s["ok"] for s in scenes.values())
    assert scenes["rate-limit"]["errors"] == ["RateLimitError", "APIConnectionError"]
    assert scenes["rate-limit"]["network_retries"] == 2
    assert scenes["continue"]["note"] == "continued after 88 chars; nothing shown twice"
    assert "models ramble. L0 retries what" in scenes["continue"]["text"]
    assert scenes["guardrail"]["errors"] == ["GuardrailError"]
    assert scenes["guardrail"]["model_retries"] == 1
    assert scenes["drift"]["errors"] == ["DriftError"]
    # Retries are counted over the whole session, the primary's and the fallback's together:
    # a stall and a 503 on the primary (then a second 503 ends its budget).
    fallback = scenes["fallback"]
    assert fallback["fallback"] == 1
    assert fallback["errors"][0] == "InterTokenTimeoutError"
    assert fallback["network_retries"] == 2
    assert fallback["retries"] == 2
    assert fallback["requests"] == 4
    structured = scenes["structured"]
    assert "Release(name='L0'" in structured["note"]
    assert "closed" in structured["note"]
    # The race: the fast model leads, stalls twice (one retry of its own) and fails for good;
    # the steady model's answer wins. Its first request was cancelled when the fast one led.
    race = scenes["race"]
    assert race["note"] == "demo-fast failed, demo-steady won"
    assert race["errors"] == ["InterTokenTimeoutError", "InterTokenTimeoutError"]
    assert race["retries"] == 1
    assert race["text"].startswith("Streams fail in production")


def test_plain_output_shows_recoveries_as_they_happen(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scene", "rate-limit", "--scene", "fallback"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # not a terminal: no escape codes
    assert "== rate-limit:" in out
    assert "! RateLimitError" in out
    assert "-> retrying" in out
    assert "-> falling back" in out
    assert "[withdrawn 15 chars: 'Streams fail in']" in out
    assert "giving up" not in out
    assert "ok: 29 tokens, 2 retries (2 network + 0 model), fallback 1, 4 requests" in out
    # The summary table holds the same rows as --json.
    assert "rate-limit" in out.split("summary")[-1]
    assert "2 (2 network + 0 model)" in out.split("summary")[-1]
