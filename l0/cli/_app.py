"""The commands of ``l0``. Imported only by :func:`l0.cli.main`, so typer and rich stay optional."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

import l0
from l0.cli import CliError
from l0.cli._chaos import SCRIPT_HELP, parse_script
from l0.cli._views import (
    SUMMARY_COLUMNS,
    LiveView,
    PlainView,
    StreamText,
    apply_event,
    describe_error,
    summary_rows,
    table,
)

if TYPE_CHECKING:
    from l0.inventory import Inventory

app = typer.Typer(
    name="l0",
    help="L0: reliable LLM token streams. Start with `l0 demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
chaos_app = typer.Typer(help="The local fault-injecting OpenAI-compatible server.")
config_app = typer.Typer(
    help="The configuration in force (pyproject [tool.l0], l0.toml, L0_* variables)."
)
app.add_typer(chaos_app, name="chaos")
app.add_typer(config_app, name="config")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON (the same data as the table).")
]


def _console() -> Console:
    # Pipes and captured output get wide plain text, so tables are not squeezed to 80 columns.
    return Console(width=None if sys.stdout.isatty() else 160)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _needs(module: str, install: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise CliError(f"this command needs {module!r}: {install}") from None


def _version(value: bool) -> None:
    if value:
        print(f"l0 {l0.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print L0's version."),
    ] = False,
) -> None:
    """L0: reliable LLM token streams. Start with `l0 demo`."""
    del debug, version  # --debug is read by l0.cli.main; --version by its callback


# --- demo --------------------------------------------------------------------------------------


@app.command()
def demo(
    scene: Annotated[
        list[str] | None,
        typer.Option("--scene", help="Play only this scene (repeatable); see --list."),
    ] = None,
    list_scenes: Annotated[bool, typer.Option("--list", help="List the scenes and exit.")] = False,
    as_json: JsonOption = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain lines even on a terminal (no live view).")
    ] = False,
) -> None:
    """Watch L0 recover from dropped connections, rate limits, stalls and bad answers.

    Starts a local fault-injecting server and sends each scene's request through the real
    OpenAI SDK, wrapped by L0. No API key, no network beyond 127.0.0.1.
    """
    _needs("openai", "pip install l0-openai")
    _needs("uvicorn", 'pip install "l0[testing]"')
    from l0.cli import demo as scenes

    try:
        chosen = scenes.select_scenes(scene or [])
    except ValueError as exc:
        raise CliError(f"l0 demo: {exc} (see `l0 demo --list`)") from None
    if list_scenes:
        rows = [(s.name, s.title) for s in chosen]
        if as_json:
            _print_json([{"scene": n, "title": t} for n, t in rows])
        else:
            _console().print(table("scenes", ("scene", "what goes wrong"), rows))
        return
    console = _console()
    watcher: scenes.Watcher
    if as_json:
        watcher = _Quiet()
    elif sys.stdout.isatty() and not plain:
        watcher = LiveView(console)
    else:
        watcher = PlainView()
    reports = asyncio.run(scenes.play(chosen, watcher))
    if as_json:
        _print_json({"ok": all(r.ok for r in reports), "scenes": [r.to_dict() for r in reports]})
    else:
        console.print()
        console.print(table("summary", SUMMARY_COLUMNS, summary_rows(reports)))
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


class _Quiet:
    def begin(self, scene: Any) -> None:
        pass

    def event(self, event: l0.Event) -> None:
        pass

    def end(self, report: Any) -> None:
        pass


# --- run ---------------------------------------------------------------------------------------


@app.command()
def run(
    model: Annotated[str, typer.Option("--model", help="Model name, e.g. gpt-4o-mini.")],
    prompt: Annotated[str, typer.Option("--prompt", help="The user message.")],
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="An OpenAI-compatible endpoint (default: OpenAI's)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="OPENAI_API_KEY", show_envvar=True, help="The provider's key."
        ),
    ] = None,
    fallback_model: Annotated[
        list[str] | None,
        typer.Option("--fallback-model", help="Model to fall back to (repeatable, in order)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Stream one answer from an OpenAI-compatible provider through L0.

    Retries, timeouts and guardrails come from the configuration in force (pyproject
    tool.l0 table, l0.toml, L0_* variables); see `l0 config check`.
    """
    if not api_key:
        raise CliError("l0 run: no API key; set OPENAI_API_KEY or pass --api-key KEY")
    if not model.strip():
        raise CliError("l0 run: --model is empty; give a model name, e.g. --model gpt-4o-mini")
    _needs("openai", "pip install l0-openai")
    import openai

    async def stream() -> tuple[l0.State, list[str]]:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url=base_url)
        try:
            client = l0.wrap(sdk, fallback_models=list(fallback_model or []))
            result = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True
            )
            notes: list[str] = []
            async for event in result:
                if event.is_token and not as_json:
                    sys.stdout.write(event.text or "")
                    sys.stdout.flush()
                elif event.is_reset and not as_json:
                    sys.stdout.write(f" [withdrawn {len(event.data['withdrawn'])} chars]\n")
                elif event.is_error:
                    notes.append(describe_error(event))
                    if not as_json:
                        print(f"\n  ! {notes[-1]}", file=sys.stderr)
            return result.state, notes
        finally:
            await sdk.close()

    try:
        state, notes = asyncio.run(stream())
    except l0.RetryExhaustedError as exc:
        raise CliError(f"l0 run: {exc}") from None
    if as_json:
        _print_json(
            {
                "text": state.content,
                "tokens": state.token_count,
                "retries": state.network_retry_count + state.model_retry_count,
                "fallback": state.fallback_index,
                "errors": notes,
            }
        )
    else:
        print()


# --- chaos -------------------------------------------------------------------------------------


@chaos_app.command("serve", help=f"Run the fault-injecting server until Ctrl-C.\n\n{SCRIPT_HELP}")
def chaos_serve(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free).")
    ] = 8765,
    script: Annotated[str, typer.Option("--script", help="Faults in order; see above.")] = "",
    text: Annotated[str | None, typer.Option("--text", help="The answer text.")] = None,
) -> None:
    """Run the fault-injecting server until Ctrl-C."""
    _needs("uvicorn", 'pip install "l0[testing]"')
    from l0.testing import ChaosServer

    try:
        faults = parse_script(script)
    except ValueError as exc:
        raise CliError(f"l0 chaos serve: {exc}") from None
    options: dict[str, Any] = {"script": faults, "port": port}
    if text is not None:
        options["text"] = text

    async def serve() -> None:
        async with ChaosServer(**options) as server:
            print(f"chaos server on {server.base_url} (Ctrl-C to stop)", flush=True)
            print(f"  script: {script or '(none: every request answers normally)'}", flush=True)
            seen = 0
            while True:
                await asyncio.sleep(0.2)
                for request in server.requests[seen:]:
                    print(f"  request {seen + 1}: model={request.model} -> {request.fault.kind}")
                    sys.stdout.flush()
                    seen += 1

    try:
        asyncio.run(serve())
    except (OSError, RuntimeError) as exc:
        raise CliError(
            f"l0 chaos serve: cannot listen on 127.0.0.1:{port} ({exc}); try another --port"
        ) from None
    except KeyboardInterrupt:
        print("stopped")


# --- replay ------------------------------------------------------------------------------------


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A record file (l0.run(..., record=FILE)).")],
    speed: Annotated[
        float, typer.Option("--speed", help="Playback speed; 0 = no waiting.", min=0.0)
    ] = 1.0,
    stream_id: Annotated[
        str | None, typer.Option("--stream-id", help="Which session (default: the last).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-render a recorded session with its original timing."""
    from l0.record import RecordFormatError

    if not file.is_file():
        raise CliError(f"l0 replay: {file}: no such file; give a file written with record=")
    try:
        session = l0.replay(file, stream_id=stream_id)
    except (RecordFormatError, LookupError) as exc:
        raise CliError(f"l0 replay: {exc}") from None

    async def play() -> str:
        text = StreamText()
        plain = PlainView()
        shown = ""
        async for at, event in session.timed(speed=speed):
            del at
            if event.is_token:
                shown += event.text or ""
            elif event.is_reset:
                shown = shown[: len(shown) - len(event.data["withdrawn"])]
            if not as_json:
                plain.event(event)
            apply_event(text, event)
        if not as_json:
            print()
        return shown

    shown = asyncio.run(play())
    if as_json:
        _print_json({"stream_id": session.stream_id, "text": shown})


# --- plugins and config ------------------------------------------------------------------------


def _inventory(command: str) -> Inventory:
    from l0.inventory import inventory

    try:
        return inventory()
    except (l0.ConfigError, l0.errors.L0PluginError) as exc:
        raise CliError(f"{command}: {exc}") from None


@app.command()
def plugins(as_json: JsonOption = False) -> None:
    """List plugins, what they register, and the configuration in force."""
    found = _inventory("l0 plugins")
    if as_json:
        _print_json(found.to_dict())
        return
    data = found.to_dict()
    console = _console()
    console.print(
        table(
            "plugins",
            ("name", "distribution", "version", "hooks"),
            [
                (p["name"], p["distribution"], p["version"] or "", ", ".join(p["hooks"]))
                for p in data["plugins"]
            ],
        )
    )
    for key, title in (
        ("adapters", "adapters"),
        ("guardrail_rules", "guardrail rules"),
        ("guardrail_presets", "guardrail presets"),
        ("drift_detectors", "drift detectors"),
        ("retry_policies", "retry policies"),
    ):
        rows = [(i["name"], i["plugin"], i["description"]) for i in data[key]]
        console.print(table(title, ("name", "plugin", "description"), rows))
    _print_config(console, data)


def _print_config(console: Console, data: dict[str, Any]) -> None:
    rows = [(c["key"], json.dumps(c["value"]), c["source"], c["location"]) for c in data["config"]]
    title = f"configuration (file: {data['config_file'] or 'none'})"
    console.print(table(title, ("key", "value", "source", "where"), rows))


@config_app.command("check")
def config_check(as_json: JsonOption = False) -> None:
    """Validate the configuration and the names it selects; print what is in force.

    Every problem is listed, one line each (errors first); the exit status is 1 if any is an
    error, that is, if `l0.run` would refuse to start.
    """
    from l0.config import check

    problems = check()
    errors = [p for p in problems if p.severity == "error"]
    data: dict[str, Any] = {
        "ok": not errors,
        "problems": [
            {
                "severity": p.severity,
                "key": p.key,
                "value": p.value if p.value is None else str(p.value),
                "location": p.location,
                "message": p.message,
            }
            for p in problems
        ],
    }
    if not errors:
        found = _inventory("l0 config check").to_dict()
        data["config_file"] = found["config_file"]
        data["config"] = found["config"]
    if as_json:
        _print_json(data)
    else:
        for problem in problems:
            print(f"l0 config check: {problem.severity}: {problem.message}", file=sys.stderr)
        if not errors:
            console = _console()
            _print_config(console, data)
            console.print(
                f"config ok ({data['config_file'] or 'no config file; defaults and L0_* only'})"
            )
    if errors:
        raise typer.Exit(1)
