"""Developer sessions: tests, lint, typecheck, bench, demo.

``nox`` with no arguments runs lint, typecheck and tests. Every session installs what it needs
from the project's own files, so a machine with only Python and pip can run them.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
ROOT = Path(__file__).parent
# Every distribution of the workspace, editable, so tests and mypy see the working tree.
DISTRIBUTIONS = sorted(
    f"./{p.parent.relative_to(ROOT)}"
    for pattern in ("l0-*/pyproject.toml", "plugins/l0-*/pyproject.toml")
    for p in ROOT.glob(pattern)
)
# Tiny third-party plugins the tests install as real distributions (not editable: their entry
# points must come from real installed metadata, as a user's plugin would).
FIXTURE_PLUGINS = sorted(
    f"./{p.parent.relative_to(ROOT)}" for p in ROOT.glob("tests/fixtures/*/pyproject.toml")
)


def _install_workspace(session: nox.Session, *extra: str) -> None:
    editable = [arg for dist in DISTRIBUTIONS for arg in ("-e", dist)]
    session.install("-e", ".[testing,structured]", *editable, *extra)
    if FIXTURE_PLUGINS:
        session.install("--no-deps", *FIXTURE_PLUGINS)


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite: kernel, plugins, real SDKs against the local chaos server."""
    _install_workspace(session, *_group("test"))
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
    _install_workspace(session, *_group("typecheck"))
    session.run("mypy", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Per-token overhead against raw iteration; writes bench-results/*.json."""
    _install_workspace(session, "opentelemetry-sdk")  # bench_otel uses the real SDK
    for script in sorted(ROOT.glob("benchmarks/bench_*.py")):
        session.run("python", str(script.relative_to(ROOT)), *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: the real OpenAI SDK against the local chaos server, no API key needed."""
    _install_workspace(session)
    session.run("python", "examples/demo.py")
