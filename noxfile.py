"""Developer sessions: tests, lint, typecheck, bench, demo.

``nox`` with no arguments runs lint, typecheck and tests. Every session installs what it needs
from the project's own files, so a machine with only Python and pip can run them.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
SAMPLE_PLUGIN = "./tests/fixtures/l0-sample-plugin"


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (kernel, testing server, sample plugin integration)."""
    session.install("-e", ".[testing]", *_group("test"))
    session.install(SAMPLE_PLUGIN)
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the kernel, tests and examples."""
    session.install("-e", ".[testing]", *_group("typecheck"))
    session.install(SAMPLE_PLUGIN)
    session.run("mypy", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Per-token overhead of l0.run against raw iteration; writes bench-results/core.json."""
    session.install("-e", ".")
    session.run("python", "benchmarks/bench_core.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: a retry and a fallback over a local flaky stream, no API key needed."""
    session.install("-e", ".")
    session.run("python", "examples/demo.py")
