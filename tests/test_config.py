"""l0.config: discovery, every section, env form, precedence, policies by name, errors."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import l0
from l0.config import load_config, reset_config_cache, resolve_retry, resolve_timeout
from l0.errors import ConfigError
from l0.plugins import BUILTINS, L0PluginManager, default_plugin_manager
from l0.timeout import DEFAULT_INITIAL_TOKEN, DEFAULT_INTER_TOKEN
from tests.runtime_helpers import TEXT, Fault, Script

pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def retry_in_force(pm: L0PluginManager, argument: l0.Retry | None = None) -> l0.Retry:
    reset_config_cache()
    return resolve_retry(argument, load_config(), pm)


# --- discovery ---------------------------------------------------------------------------------


def test_no_file_no_env_gives_defaults(tmp_path: Path, pm: L0PluginManager) -> None:
    settings = load_config()
    assert settings.file is None
    assert dict(settings.values) == {}
    assert retry_in_force(pm) == l0.Retry()
    assert resolve_timeout(None, settings) == l0.Timeout(DEFAULT_INITIAL_TOKEN, DEFAULT_INTER_TOKEN)


def test_pyproject_tool_l0(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\n[tool.l0]\nretry.attempts = 5\n')
    settings = load_config()
    assert settings.file == tmp_path / "pyproject.toml"
    assert settings.get("retry", "attempts") == 5
    assert settings.sources["retry.attempts"] == f"{tmp_path / 'pyproject.toml'} [tool.l0]"


def test_l0_toml_beats_pyproject_in_the_same_directory(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.l0.retry]\nattempts = 5\n")
    write(tmp_path / "l0.toml", "[retry]\nattempts = 1\n")
    settings = load_config()
    assert settings.file == tmp_path / "l0.toml"
    assert settings.get("retry", "attempts") == 1


def test_search_goes_upward_to_the_nearest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "l0.toml", "[retry]\nmax_retries = 2\n")
    # A nearer pyproject without [tool.l0] does not stop the search ...
    write(tmp_path / "a" / "pyproject.toml", '[project]\nname = "x"\n')
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert load_config().get("retry", "max_retries") == 2
    assert load_config().file == tmp_path / "l0.toml"
    # ... but a nearer one with [tool.l0] does.
    write(tmp_path / "a" / "b" / "pyproject.toml", "[tool.l0]\nretry.max_retries = 4\n")
    reset_config_cache()
    assert load_config().get("retry", "max_retries") == 4
    # An explicit directory can be given too.
    assert load_config(tmp_path).get("retry", "max_retries") == 2


def test_config_is_cached_and_invalidated_by_edits_env_and_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "l0.toml", "[retry]\nattempts = 1\n")
    first = load_config()
    assert first.get("retry", "attempts") == 1
    assert load_config() is first  # resolved once, then cached
    # An edit is seen without reload(): the size changes here ...
    write(config, "[retry]\nattempts = 12\n")
    assert load_config().get("retry", "attempts") == 12
    # ... and a same-size edit is seen through the modification time.
    os.utime(config, ns=(1_000_000_000, 1_000_000_000))
    write(config, "[retry]\nattempts = 13\n")
    assert load_config().get("retry", "attempts") == 13
    cached = load_config()
    # A changed L0_* environment is seen too.
    monkeypatch.setenv("L0_RETRY_ATTEMPTS", "4")
    assert load_config().get("retry", "attempts") == 4
    monkeypatch.delenv("L0_RETRY_ATTEMPTS")
    assert load_config().get("retry", "attempts") == 13
    # A nearer file created later is seen as well.
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert load_config().file == config
    write(tmp_path / "sub" / "l0.toml", "[retry]\nattempts = 7\n")
    assert load_config().file == tmp_path / "sub" / "l0.toml"
    # reload() drops the cache outright.
    before = load_config()
    assert l0.config.reload() is not before
    assert load_config() is not cached


# --- every section ---------------------------------------------------------------------------

FULL = """
[retry]
policy = "linear"
attempts = 2
max_retries = 5
base_delay = 0.5
max_delay = 4
max_retry_after = 12.5
seed = 9
strategy = "exponential"

[timeout]
initial_token = 0
inter_token = 2.5

[plugins]
disable = ["openai"]
load = ["litellm", "sample"]
trace = true

[guardrails]
preset = "strict"
rules = ["json", "markdown"]
severity = { json = "error", pii = "fatal", repetition = "warning" }

[drift]
enabled = true
detectors = ["repetition"]
window = 200
threshold = 0.75
"""


def test_every_key_of_every_section(tmp_path: Path, pm: L0PluginManager) -> None:
    write(tmp_path / "l0.toml", FULL)
    settings = load_config()
    assert dict(settings.values["retry"]) == {
        "policy": "linear",
        "attempts": 2,
        "max_retries": 5,
        "base_delay": 0.5,
        "max_delay": 4.0,
        "max_retry_after": 12.5,
        "seed": 9,
        "strategy": "exponential",
    }
    assert dict(settings.values["timeout"]) == {"initial_token": None, "inter_token": 2.5}
    assert settings.plugins_disable == ["openai"]
    assert settings.plugins_load == ["litellm", "sample"]
    assert settings.get("plugins", "trace") is True
    assert dict(settings.values["guardrails"]) == {
        "preset": "strict",
        "rules": ["json", "markdown"],
        "severity": {"json": "error", "pii": "fatal", "repetition": "warning"},
    }
    assert dict(settings.values["drift"]) == {
        "enabled": True,
        "detectors": ["repetition"],
        "window": 200,
        "threshold": 0.75,
    }
    # The configured numbers (and strategy) go into the selected policy.
    policy = resolve_retry(None, settings, pm)
    assert policy == l0.Retry(
        attempts=2,
        max_retries=5,
        base_delay=0.5,
        max_delay=4.0,
        max_retry_after=12.5,
        seed=9,
        strategy=l0.BackoffStrategy.EXPONENTIAL,
    )
    assert resolve_timeout(None, settings) == l0.Timeout(initial_token=None, inter_token=2.5)


def test_every_key_has_an_env_form(monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager) -> None:
    env = {
        "L0_RETRY_POLICY": "fixed",
        "L0_RETRY_ATTEMPTS": "4",
        "L0_RETRY_MAX_RETRIES": "7",
        "L0_RETRY_BASE_DELAY": "0.25",
        "L0_RETRY_MAX_DELAY": "3",
        "L0_RETRY_MAX_RETRY_AFTER": "8",
        "L0_RETRY_SEED": "-3",
        "L0_RETRY_STRATEGY": "linear",
        "L0_TIMEOUT_INITIAL_TOKEN": "1.5",
        "L0_TIMEOUT_INTER_TOKEN": "0",
        "L0_DISABLE_PLUGINS": "openai, litellm",
        "L0_LOAD_PLUGINS": "",
        "L0_TRACE_PLUGINS": "0",
        "L0_GUARDRAILS_PRESET": "recommended",
        "L0_GUARDRAILS_RULES": "json,markdown",
        "L0_GUARDRAILS_SEVERITY": "rule=warning,json=error",
        "L0_DRIFT_ENABLED": "yes",
        "L0_DRIFT_DETECTORS": "tone",
        "L0_DRIFT_WINDOW": "50",
        "L0_DRIFT_THRESHOLD": "0.5",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_config()
    assert settings.get("retry", "seed") == -3
    assert settings.plugins_disable == ["openai", "litellm"]
    assert settings.plugins_load == []  # set but empty: builtins only
    assert settings.get("plugins", "trace") is False
    assert settings.get("guardrails", "severity") == {"rule": "warning", "json": "error"}
    assert settings.get("guardrails", "rules") == ["json", "markdown"]
    assert settings.get("drift", "enabled") is True
    assert settings.get("drift", "window") == 50
    assert settings.get("drift", "threshold") == 0.5
    assert settings.sources["drift.window"] == "$L0_DRIFT_WINDOW"
    assert resolve_retry(None, settings, pm) == l0.Retry(
        attempts=4,
        max_retries=7,
        base_delay=0.25,
        max_delay=3.0,
        max_retry_after=8.0,
        seed=-3,
        strategy=l0.BackoffStrategy.LINEAR,
    )
    assert resolve_timeout(None, settings) == l0.Timeout(initial_token=1.5, inter_token=None)


# --- precedence: argument > env > file > plugin default ----------------------------------------


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager) -> None:
    # The builtin policy "none" defaults to attempts=0, max_retries=0.
    assert retry_in_force(pm).max_retries == 6
    write(tmp_path / "l0.toml", '[retry]\npolicy = "none"\n')
    assert (retry_in_force(pm).attempts, retry_in_force(pm).max_retries) == (0, 0)
    write(tmp_path / "l0.toml", '[retry]\npolicy = "none"\nmax_retries = 2\nattempts = 1\n')
    assert (retry_in_force(pm).attempts, retry_in_force(pm).max_retries) == (1, 2)
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "3")
    assert (retry_in_force(pm).attempts, retry_in_force(pm).max_retries) == (1, 3)
    argument = l0.Retry(max_retries=4)
    assert retry_in_force(pm, argument) is argument


def test_env_policy_beats_file_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    write(tmp_path / "l0.toml", '[retry]\npolicy = "linear"\n[timeout]\ninter_token = 9\n')
    monkeypatch.setenv("L0_RETRY_POLICY", "fixed")
    monkeypatch.setenv("L0_TIMEOUT_INTER_TOKEN", "4")
    settings = load_config()
    assert resolve_retry(None, settings, pm).strategy is l0.BackoffStrategy.FIXED
    assert settings.sources["retry.policy"] == "$L0_RETRY_POLICY"
    assert resolve_timeout(None, settings).inter_token == 4.0
    assert resolve_timeout(l0.Timeout(inter_token=1), settings).inter_token == 1


async def tokens(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_precedence_in_a_real_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    write(tmp_path / "l0.toml", "[retry]\nmax_retries = 1\nbase_delay = 0\n")

    async def calls_made(retry: l0.Retry | None = None) -> int:
        reset_config_cache()
        script = Script([Fault("raise", 1, ConnectionResetError("x"))] * 10)
        with pytest.raises(l0.RetryExhaustedError):
            await l0.run(script.factory, plugins=pm, retry=retry).read()
        return script.calls

    assert await calls_made() == 2  # file
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "2")
    assert await calls_made() == 3  # env beats file
    assert await calls_made(l0.Retry(max_retries=3, base_delay=0)) == 4  # argument beats env


# --- policies by name, including a plugin's ----------------------------------------------------


class PolicyPlugin:
    @l0.hookimpl
    def l0_register_retry_policies(self) -> Iterator[l0.RetryPolicySpec]:
        def budget(settings: Mapping[str, Any]) -> l0.Retry:
            return l0.Retry(**{"attempts": 0, "max_retries": 1, "base_delay": 0, **settings})

        yield l0.RetryPolicySpec("budget", budget, "one free retry")


async def test_policy_from_an_in_process_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    pm.register(PolicyPlugin(), name="budget-plugin")
    write(tmp_path / "pyproject.toml", '[tool.l0]\nretry.policy = "budget"\n')
    assert retry_in_force(pm) == l0.Retry(attempts=0, max_retries=1, base_delay=0)
    script = Script([Fault("raise", 1, ConnectionResetError("x"))] * 10)
    with pytest.raises(l0.RetryExhaustedError):
        await l0.run(script.factory, plugins=pm).read()
    assert script.calls == 2
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "2")
    reset_config_cache()
    assert await l0.run(Script([Fault("zero")] * 2).factory, plugins=pm).read() == TEXT


def test_unknown_policy_says_choose_one_of(tmp_path: Path, pm: L0PluginManager) -> None:
    pm.register(PolicyPlugin(), name="budget-plugin")
    write(tmp_path / "l0.toml", '[retry]\npolicy = "expo"\n')
    with pytest.raises(ConfigError) as info:
        retry_in_force(pm)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'l0.toml'}: retry.policy = 'expo': no such policy")
    assert "choose one of: budget (in-process), exponential (builtin)" in message
    assert "fixed-jitter (builtin)" in message
    assert info.value.details["key"] == "retry.policy"
    assert info.value.details["value"] == "expo"


def test_a_policy_that_returns_garbage_is_named(tmp_path: Path, pm: L0PluginManager) -> None:
    class Broken:
        @l0.hookimpl
        def l0_register_retry_policies(self) -> Iterator[l0.RetryPolicySpec]:
            yield l0.RetryPolicySpec("broken", lambda settings: {"attempts": 1})

    pm.register(Broken(), name="broken-plugin")
    write(tmp_path / "l0.toml", '[retry]\npolicy = "broken"\n')
    with pytest.raises(ConfigError, match=r"'broken' \(from plugin 'broken-plugin'\).*dict"):
        retry_in_force(pm)


def test_policy_rejecting_configured_values(tmp_path: Path, pm: L0PluginManager) -> None:
    write(tmp_path / "l0.toml", '[retry]\npolicy = "fixed"\nstrategy = "linear"\n')
    # The builtin policies accept the strategy override; a strict plugin may not.

    class Strict:
        @l0.hookimpl
        def l0_register_retry_policies(self) -> Iterator[l0.RetryPolicySpec]:
            def strict(settings: Mapping[str, Any]) -> l0.Retry:
                if settings:
                    raise ValueError(f"takes no settings, got {sorted(settings)}")
                return l0.Retry()

            yield l0.RetryPolicySpec("strict", strict)

    pm.register(Strict(), name="strict-plugin")
    assert retry_in_force(pm).strategy is l0.BackoffStrategy.LINEAR
    write(tmp_path / "l0.toml", '[retry]\npolicy = "strict"\nattempts = 1\n')
    with pytest.raises(ConfigError, match=r"retry policy 'strict' rejected.*attempts"):
        retry_in_force(pm)


# --- plugins.disable / load from config --------------------------------------------------------


def test_plugins_disable_from_config(tmp_path: Path) -> None:
    write(tmp_path / "l0.toml", '[plugins]\ndisable = ["openai"]\n')
    names = {p.name for p in default_plugin_manager().list_plugins()}
    assert "openai" not in names
    assert set(BUILTINS) <= names


def test_plugins_load_allowlist_from_config(tmp_path: Path) -> None:
    write(tmp_path / "l0.toml", "[plugins]\nload = []\n")
    assert {p.name for p in default_plugin_manager().list_plugins()} == set(BUILTINS)


def test_disabling_a_builtin_from_config_fails(tmp_path: Path) -> None:
    write(tmp_path / "l0.toml", '[plugins]\ndisable = ["retry"]\n')
    with pytest.raises(ConfigError, match=r"'retry'.*builtin.*essential"):
        default_plugin_manager()


# --- bad keys and values name the source, key, value and what is allowed ------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[retri]\nattempts = 1\n", r"l0\.toml: unknown key 'retri'; allowed keys: retry\.policy"),
        (
            "[retry]\nmax_retry = 1\n",
            r"l0\.toml: unknown key 'retry\.max_retry'; allowed keys in \[retry\]: retry\.policy,",
        ),
        ("retry = 3\n", r"l0\.toml: retry = 3 must be a table of keys \(retry\.policy"),
        (
            "[retry]\nattempts = -1\n",
            r"l0\.toml: retry\.attempts = -1 is invalid; expected an integer >= 0",
        ),
        (
            '[retry]\nattempts = "3"\n',
            None,  # a numeric string is accepted (it is what the env form gives)
        ),
        (
            "[retry]\nattempts = 1.5\n",
            r"retry\.attempts = 1\.5 is invalid; expected an integer >= 0",
        ),
        ("[retry]\nattempts = true\n", r"retry\.attempts = True is invalid"),
        (
            "[retry]\nbase_delay = -0.1\n",
            r"retry\.base_delay = -0\.1 is invalid; expected a number of seconds >= 0",
        ),
        ('[retry]\npolicy = ""\n', r"retry\.policy = '' is invalid; expected a non-empty name"),
        ("[retry]\nseed = 1.5\n", r"retry\.seed = 1\.5 is invalid; expected an integer"),
        (
            '[timeout]\ninter_token = "soon"\n',
            r"timeout\.inter_token = 'soon' is invalid; expected a number of seconds >= 0",
        ),
        (
            "[plugins]\ndisable = [1, 2]\n",
            r"plugins\.disable = \[1, 2\] is invalid; expected a list of names",
        ),
        ('[plugins]\ntrace = "maybe"\n', r"plugins\.trace = 'maybe' is invalid; expected true or"),
        (
            '[guardrails.severity]\njson = "loud"\n',
            r"guardrails\.severity = \{'json': 'loud'\} is invalid; expected a table of rule "
            r"name -> \"warning\" \| \"error\" \| \"fatal\"; 'json' = 'loud' is not one of those",
        ),
        (
            "[drift]\nwindow = 0\n",
            r"drift\.window = 0 is invalid; expected an integer >= 16",
        ),
        (
            "[drift]\nthreshold = 1.5\n",
            r"drift\.threshold = 1\.5 is invalid; expected a number between 0 and 1",
        ),
        ('[drift]\nenabled = "perhaps"\n', r"drift\.enabled = 'perhaps' is invalid"),
    ],
)
def test_bad_file_values(tmp_path: Path, text: str, message: str | None) -> None:
    write(tmp_path / "l0.toml", text)
    if message is None:
        load_config()
        return
    with pytest.raises(ConfigError, match=message) as info:
        load_config()
    assert str(info.value).startswith(str(tmp_path / "l0.toml"))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "L0_RETRY_ATTEMPTS",
            "many",
            r"^\$L0_RETRY_ATTEMPTS: retry\.attempts = 'many' is invalid; expected an integer >= 0$",
        ),
        ("L0_RETRY_MAX_DELAY", "-2", r"\$L0_RETRY_MAX_DELAY: retry\.max_delay = '-2' is invalid"),
        ("L0_TIMEOUT_INITIAL_TOKEN", "nan", r"timeout\.initial_token = 'nan' is invalid"),
        ("L0_TRACE_PLUGINS", "loud", r"\$L0_TRACE_PLUGINS: plugins\.trace = 'loud' is invalid"),
        (
            "L0_GUARDRAILS_SEVERITY",
            "json",
            r"guardrails\.severity = 'json' is invalid;.*env form: \"rule=severity,…\"",
        ),
        (
            "L0_GUARDRAILS_SEVERITY",
            "json=loud",
            r"guardrails\.severity = 'json=loud' is invalid;.*'json' = 'loud' is not one of",
        ),
        ("L0_DRIFT_WINDOW", "ten", r"\$L0_DRIFT_WINDOW: drift\.window = 'ten' is invalid"),
        ("L0_DRIFT_THRESHOLD", "2", r"drift\.threshold = '2' is invalid; expected a number"),
    ],
)
def test_bad_env_values(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_unknown_env_warns_once_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    # Issue 8: a stray variable must not take a service down; it is ignored, loudly, once.
    monkeypatch.setenv("L0_RETRY_ATTEMPT", "3")
    monkeypatch.setenv("L0_SOMETHING", "1")
    with pytest.warns(l0.errors.ConfigWarning) as caught:
        settings = load_config()
    messages = sorted(str(w.message) for w in caught if w.category is l0.errors.ConfigWarning)
    assert messages[0] == (
        "$L0_RETRY_ATTEMPT: unknown L0 environment variable, ignored; "
        "did you mean $L0_RETRY_ATTEMPTS?"
    )
    assert messages[1].startswith("$L0_SOMETHING: unknown L0 environment variable, ignored; known:")
    assert "L0_RETRY_MAX_RETRIES" in messages[1]
    assert settings.get("retry", "attempts") is None
    # Once per variable: later reads (a new session each) stay quiet.
    import warnings

    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        load_config()
        l0.run(Script([Fault()]).factory, plugins=pm)
    assert not [w for w in again if w.category is l0.errors.ConfigWarning]
    assert [p.severity for p in l0.config.check(plugins=pm)] == ["warning", "warning"]


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "l0.toml", "[retry\nattempts = \n")
    with pytest.raises(ConfigError, match=r"l0\.toml: not valid TOML"):
        load_config()
    write(tmp_path / "l0.toml", "")
    write(tmp_path / "pyproject.toml", "[tool.l0\n")
    reset_config_cache()
    assert load_config().file == tmp_path / "l0.toml"  # l0.toml wins, even empty


def test_invalid_pyproject_and_tool_l0_not_a_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool\n")
    with pytest.raises(ConfigError, match=r"pyproject\.toml: not valid TOML"):
        load_config()
    write(tmp_path / "pyproject.toml", "[tool]\nl0 = 3\n")
    reset_config_cache()
    with pytest.raises(ConfigError, match=r"pyproject\.toml: \[tool\.l0\] must be a table"):
        load_config()


def test_bad_config_fails_fast_in_run(tmp_path: Path, pm: L0PluginManager) -> None:
    write(tmp_path / "l0.toml", "[retry]\nattempts = -2\n")
    with pytest.raises(ConfigError, match=r"retry\.attempts = -2"):
        l0.run(lambda: tokens(["x"]), plugins=pm)


def test_exporter_tables_are_kept_for_their_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.l0.otel]\nenabled = false\nanything = 'kept as written'\n"
    )
    monkeypatch.setenv("L0_SENTRY_CAPTURE_ERRORS", "off")
    settings = load_config(tmp_path)
    assert settings.get("otel", "enabled") is False
    assert settings.get("otel", "anything") == "kept as written"  # the plugin checks it
    assert settings.get("sentry", "capture_errors") == "off"
    assert settings.sources["sentry.capture_errors"] == "$L0_SENTRY_CAPTURE_ERRORS"


def test_an_exporter_setting_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.l0]\notel = 3\n")
    with pytest.raises(ConfigError, match=r"otel = 3 must be a table"):
        load_config(tmp_path)


def test_file_is_rechecked_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(l0.config, "RECHECK_SECONDS", 3600.0)
    config = write(tmp_path / "l0.toml", "[retry]\nattempts = 1\n")
    first = load_config()
    write(config, "[retry]\nattempts = 12\n")
    # Within the interval the file system is not looked at: the edit is not seen yet ...
    assert load_config() is first
    # ... but the environment is, on every read.
    monkeypatch.setenv("L0_RETRY_ATTEMPTS", "4")
    assert load_config().get("retry", "attempts") == 4
    monkeypatch.delenv("L0_RETRY_ATTEMPTS")
    # A different working directory is a different configuration, at once.
    other = tmp_path / "other"
    write(other / "l0.toml", "[retry]\nattempts = 7\n")
    monkeypatch.chdir(other)
    assert load_config().get("retry", "attempts") == 7
    monkeypatch.chdir(tmp_path)
    assert load_config().file == config
    # An unknown L0_* variable warns once, also on the fast path of a cached read.
    monkeypatch.setenv("L0_RETRY_ATTEMPS", "2")
    with pytest.warns(l0.errors.ConfigWarning, match="L0_RETRY_ATTEMPS"):
        load_config()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config()
    monkeypatch.delenv("L0_RETRY_ATTEMPS")
    # reload() forces a fresh read of the edited file.
    assert l0.config.reload().get("retry", "attempts") == 12
    # Once the interval has passed, the next read stats the file and sees an edit.
    write(config, "[retry]\nattempts = 123\n")
    monkeypatch.setattr(l0.config, "RECHECK_SECONDS", 0.0)
    assert load_config().get("retry", "attempts") == 123
