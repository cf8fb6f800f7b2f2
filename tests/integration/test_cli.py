"""The ``l0`` command: help, exit codes, --json, bad input, and each command's real work."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest

import l0
from l0.cli import CliError, main
from l0.testing import ChaosServer, Fault

COMMANDS = [
    [],
    ["demo"],
    ["run"],
    ["replay"],
    ["plugins"],
    ["chaos"],
    ["chaos", "serve"],
    ["config"],
    ["config", "check"],
]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "l0")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, *command, "--help")
    assert status == 0
    assert "Usage: l0" in out
    assert "--help" in out


def test_chaos_serve_help_documents_the_faults(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "chaos", "serve", "--help")
    for fault in ("status:CODE", "drop:N", "stall:N:SECONDS", "slow-first", "zero", "malformed"):
        assert fault in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "--version") == (0, f"l0 {l0.__version__}\n", "")


@pytest.mark.parametrize(
    "args",
    [["demo", "--bogus"], ["no-such-command"], ["replay"], ["run", "--model", "m"]],
    ids=["bad flag", "bad command", "missing file argument", "missing --prompt"],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(capsys, *args)
    assert status == 2
    assert "Error" in err
    assert "Traceback" not in out + err


def one_line_error(status: int, out: str, err: str) -> str:
    assert status == 1
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def test_unknown_scene(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run_cli(capsys, "demo", "--scene", "nope"))
    assert "'nope': no such scene" in err
    assert "fallback" in err  # lists the scenes


def test_demo_lists_scenes_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, "demo", "--list", "--json")
    assert status == 0
    names = [s["scene"] for s in json.loads(out)]
    assert names == [
        "rate-limit",
        "continue",
        "guardrail",
        "drift",
        "fallback",
        "structured",
        "race",
    ]


def test_run_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    err = one_line_error(*run_cli(capsys, "run", "--model", "m", "--prompt", "hi"))
    assert "no API key" in err
    assert "OPENAI_API_KEY" in err


def test_run_streams_through_retries(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The configured policy decides the retries; keep its backoff short.
    monkeypatch.setenv("L0_RETRY_BASE_DELAY", "0.01")
    with ChaosServer(script=[Fault.status(503), Fault.drop_after(2)], text="one two three") as srv:
        status, out, err = run_cli(
            capsys, "run", "--model", "m", "--prompt", "hi", "--base-url", srv.base_url,
            "--api-key", "test", "--json",
        )  # fmt: skip
        assert len(srv.requests) == 3
    assert status == 0, err
    data = json.loads(out)
    assert data["text"] == "one two three"
    assert data["retries"] == 2
    assert len(data["errors"]) == 2


def test_plugins_lists_the_openai_adapter_and_guardrail_rules(
    isolated_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_cli(capsys, "plugins", "--json")
    assert status == 0
    data = json.loads(out)
    openai_plugin = next(p for p in data["plugins"] if p["name"] == "openai")
    assert openai_plugin["distribution"] == "l0-openai"
    assert openai_plugin["version"] == "0.1.0"
    assert "l0_detect_adapter" in openai_plugin["hooks"]
    assert "openai" in [a["name"] for a in data["adapters"]]
    rules = {r["name"]: r["plugin"] for r in data["guardrail_rules"]}
    assert rules["json"] == "guardrails"
    assert "pattern" in rules
    assert "recommended" in [p["name"] for p in data["guardrail_presets"]]
    assert "repetition" in [d["name"] for d in data["drift_detectors"]]
    assert "exponential" in [p["name"] for p in data["retry_policies"]]
    builtins = {p["name"] for p in data["plugins"] if p["builtin"]}
    assert {"retry", "backoff", "iter_adapter"} <= builtins
    # A third-party plugin shows with its own distribution and version.
    sample = next(p for p in data["plugins"] if p["name"] == "sample")
    assert (sample["distribution"], sample["version"], sample["builtin"]) == (
        "l0-sample-plugin",
        "0.3.1",
        False,
    )
    config = {c["key"]: c for c in data["config"]}
    assert config["retry.attempts"] == {
        "key": "retry.attempts",
        "value": 3,
        "source": "default",
        "location": "retry policy 'fixed-jitter'",
    }

    # The table shows the same data.
    status, table, _ = run_cli(capsys, "plugins")
    assert status == 0
    assert "l0-openai" in table
    assert "recommended" in table
    assert "retry policy 'fixed-jitter'" in table


def test_config_sources(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("l0.toml").write_text('[retry]\npolicy = "exponential"\nattempts = 5\n')
    monkeypatch.setenv("L0_TIMEOUT_INTER_TOKEN", "7")
    status, out, _ = run_cli(capsys, "config", "check", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["ok"] is True
    assert data["problems"] == []
    config = {c["key"]: (c["value"], c["source"], c["location"]) for c in data["config"]}
    assert config["retry.attempts"] == (5, "l0.toml", str(Path("l0.toml").resolve()))
    assert config["retry.policy"][:2] == ("exponential", "l0.toml")
    assert config["timeout.inter_token"] == (7.0, "environment", "$L0_TIMEOUT_INTER_TOKEN")
    assert config["retry.max_retries"] == (6, "default", "retry policy 'exponential'")
    assert config["plugins.disable"][:2] == ([], "default")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[retry]\npolicy = "expo"\n', "retry.policy = 'expo': no such policy; choose one of"),
        ("[retry]\nattempts = -1\n", "retry.attempts = -1 is invalid"),
        ("[retri]\n", "unknown key 'retri'"),
        ('[guardrails]\npreset = "nope"\n', "nope"),
        ("[retry\n", "not valid TOML"),
    ],
)
def test_config_check_reports_errors_in_one_line(
    toml: str, expected: str, isolated_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("l0.toml").write_text(toml)
    err = one_line_error(*run_cli(capsys, "config", "check"))
    assert err.startswith("l0 config check: error: ")
    assert expected in err


def test_config_check_lists_every_problem(
    isolated_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("l0.toml").write_text("[retry]\nattempts = -1\nmax_retries = -2\n")
    status, out, _ = run_cli(capsys, "config", "check", "--json")
    assert status == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert [p["key"] for p in data["problems"]] == ["retry.attempts", "retry.max_retries"]
    assert "config" not in data


def test_plugins_with_bad_config_fails_cleanly(
    isolated_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("l0.toml").write_text('[plugins]\ndisable = ["retry"]\n')
    err = one_line_error(*run_cli(capsys, "plugins"))
    assert "essential" in err


def test_debug_shows_the_real_exception(
    isolated_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("l0.toml").write_text("[retri]\n")
    with pytest.raises(CliError, match="unknown key"):
        main(["--debug", "plugins"])


async def _record(path: Path) -> str:
    async with ChaosServer(script=[Fault.drop_after(3)], text="replayed words come back") as srv:
        sdk = openai.AsyncOpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        client = l0.wrap(sdk, retry=l0.Retry(base_delay=0.01), record=path)
        result = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in result:
            pass
        await result.wait_callbacks()
        await sdk.close()
        content: str = result.state.content
        return content


def test_replay_reproduces_the_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "session.jsonl"
    text = asyncio.run(_record(path))
    assert text == "replayed words come back"

    status, out, _ = run_cli(capsys, "replay", str(path), "--speed", "0", "--json")
    assert status == 0
    assert json.loads(out)["text"] == text

    # The plain rendering shows the failed attempt's tokens withdrawn, then the answer.
    status, out, _ = run_cli(capsys, "replay", str(path), "--speed", "50")
    assert status == 0
    assert out == (
        "replayed words come\n"
        "  ! APIConnectionError: Connection error. -> retrying\n"
        " [withdrawn 19 chars: 'replayed words come']\n"
        "replayed words come back\n"
    )
    assert out.rstrip().endswith(text)


def test_replay_keeps_the_recorded_pace(tmp_path: Path) -> None:
    path = tmp_path / "slow.jsonl"

    async def slow() -> object:
        for word in ["a", "b", "c"]:
            await asyncio.sleep(0.2)
            yield word

    async def record() -> None:
        result = l0.run(slow, record=path)
        await result.read()
        await result.wait_callbacks()

    asyncio.run(record())

    async def pace(speed: float) -> list[float]:
        return [at async for at, event in l0.replay(path).timed(speed=speed) if event.is_token]

    offsets = asyncio.run(pace(0))
    # Recorded times grow with the source's pauses (generous bounds: a loaded machine).
    assert offsets == sorted(offsets)
    assert offsets[-1] - offsets[0] >= 0.3
    with pytest.raises(ValueError, match="speed=-1"):
        asyncio.run(pace(-1))


def test_replay_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run_cli(capsys, "replay", str(tmp_path / "missing.jsonl")))
    assert "no such file" in err
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text('{"kind": "header", "format": "l0-record", "version": 1}\n{oops\n')
    err = one_line_error(*run_cli(capsys, "replay", str(corrupt)))
    assert "corrupt.jsonl:2" in err
    status, _, _ = run_cli(capsys, "replay", str(corrupt), "--speed", "-1")
    assert status == 2


def test_chaos_serve_bad_script(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run_cli(capsys, "chaos", "serve", "--script", "status:503,bogus"))
    assert "unknown fault 'bogus'" in err
    err = one_line_error(*run_cli(capsys, "chaos", "serve", "--script", "status:200"))
    assert "400-599" in err
    err = one_line_error(*run_cli(capsys, "chaos", "serve", "--script", "drop"))
    assert "takes 1 value" in err


def test_chaos_serve_answers_the_openai_sdk(tmp_path: Path) -> None:
    """The console script starts the server; the real SDK sees its scripted faults."""
    l0_command = Path(sys.executable).parent / "l0"
    process = subprocess.Popen(
        [str(l0_command), "chaos", "serve", "--port", "0", "--script", "status:503,ok"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("chaos server on http://127.0.0.1:"), first
        base_url = first.split()[3]

        async def ask() -> tuple[str, int]:
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
            client = l0.wrap(sdk, retry=l0.Retry(base_delay=0.01))
            result = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text: str = await result.read()
            await sdk.close()
            return text, result.state.network_retry_count

        text, retries = asyncio.run(ask())
        assert text
        assert retries == 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "l0.cli", "demo", "--scene", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("l0 demo: --scene 'nope': no such scene")
