"""The ``l0`` command (``pip install "l0[cli]"``): demo, run, chaos, replay, plugins, config.

Each command calls a public library function and renders its result; ``--json`` prints the
same data the tables show. Bad input ends with one line on stderr and a non-zero exit; pass
``--debug`` (first, ``l0 --debug COMMAND``) for the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["CliError", "main"]

USAGE_ERROR = 2
FAILURE = 1


class CliError(Exception):
    """A problem with the user's input or environment: printed as one line, exit status 1.

    The message is the whole line, e.g. ``l0 run: no API key; set OPENAI_API_KEY``.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``l0`` command with ``argv`` (``sys.argv[1:]`` by default); returns the status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        import typer
    except ImportError as exc:
        print(
            f'l0: the command needs the cli extra ({exc.name} is missing): pip install "l0[cli]"',
            file=sys.stderr,
        )
        return FAILURE
    from l0.cli._app import app

    command = typer.main.get_command(app)
    try:
        status = command.main(args=args, prog_name="l0", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("l0: interrupted", file=sys.stderr)
        return 130
    except CliError as exc:
        if debug:
            raise
        print(exc, file=sys.stderr)
        return FAILURE
    except Exception as exc:
        # Usage errors: typer may vendor its own click, so match the shape, not the class.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"l0: {type(exc).__name__}: {message} (run `l0 --debug ...` for the traceback)",
            file=sys.stderr,
        )
        return FAILURE
    return status if isinstance(status, int) else 0
