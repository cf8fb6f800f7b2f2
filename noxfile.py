"""Developer sessions: tests, lint, typecheck, bench, demo, docs, dist.

``nox`` with no arguments runs lint, typecheck and tests. Every session installs what it needs
from the project's own files, so a machine with only Python and pip can run them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
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


# Optional extras of workspace distributions that the tests and benchmarks exercise.
WORKSPACE_EXTRAS = {"./plugins/l0-guardrails": "[simdjson]"}


def _install_workspace(session: nox.Session, *extra: str) -> None:
    editable = [
        arg for dist in DISTRIBUTIONS for arg in ("-e", dist + WORKSPACE_EXTRAS.get(dist, ""))
    ]
    session.install("-e", ".[testing,structured,cli]", *editable, *extra)
    if FIXTURE_PLUGINS:
        session.install("--no-deps", *FIXTURE_PLUGINS)


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite: kernel, plugins, real SDKs against the local chaos server."""
    _install_workspace(session, *_group("test"))
    if shutil.which("redis-server") is None:
        session.warn(
            "redis-server is not installed: the l0-redis tests will fail; install it with "
            "`apt-get install -y redis-server` (.ci/run does)"
        )
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
def soak(session: nox.Session) -> None:
    """1,000 concurrent sessions x 3 rounds through the real openai SDK with random faults.

    The chaos server runs in a process of its own; the run stops by itself (``--budget``).
    """
    _install_workspace(session)
    session.run("python", "-m", "tests.integration.soak", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Install the `l0` command and run `l0 demo` (the real OpenAI SDK, the local chaos server).

    Arguments after ``--`` go to ``l0 demo``, e.g. ``nox -s demo -- --scene fallback``.
    """
    # Not _install_workspace: the test fixture plugins would change a user's behaviour, and the
    # demo needs only the OpenAI adapter and the plugins (not LiteLLM's large install).
    needed = ["./l0-openai", *(d for d in DISTRIBUTIONS if d.startswith("./plugins/"))]
    editable = [arg for dist in needed for arg in ("-e", dist)]
    session.install("-e", ".[cli,testing,structured]", *editable)
    session.run("l0", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site with mkdocs --strict (broken links and missing pages fail)."""
    # mkdocstrings reads the sources statically (paths in mkdocs.yml): nothing else to install.
    session.install(*_group("docs"))
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        "site",
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


# The names a user installs; the smoke test installs every one that exists, by name only.
SMOKE_NAMES = ("l0", "l0-openai", "l0-otel", "l0-guardrails", "l0-drift")


@nox.session
def dist(session: nox.Session) -> None:
    """Build every distribution, check its metadata, install by name in a new venv, smoke it."""
    session.install(*_group("dist"))
    out = ROOT / "dist"
    shutil.rmtree(out, ignore_errors=True)
    projects = [".", *DISTRIBUTIONS]
    for project in projects:
        session.run(
            "python", "-m", "build", "--installer", "uv", "--outdir", str(out), project, silent=True
        )
    built = sorted(str(p) for p in out.iterdir())
    session.run("twine", "check", "--strict", *built)
    session.run("python", "tests/dist_check.py", "metadata", str(out), *projects)
    present = {p.name.split("-")[0].replace("_", "-") for p in out.glob("*.whl")}
    names = [name for name in SMOKE_NAMES if name in present]
    with tempfile.TemporaryDirectory(prefix="l0-dist-") as tmp:
        venv = Path(tmp) / "venv"
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        python = str(venv / ("Scripts" if sys.platform == "win32" else "bin") / "python")
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # Our names come from dist/ only; then their third-party dependencies from the index.
        session.run(
            *pip, "--no-index", "--find-links", str(out), "--no-deps", *names, external=True
        )
        session.run(*pip, "--find-links", str(out), "l0[testing,cli]", *names, external=True)
        session.run(python, "-m", "pip", "check", external=True)
        smoke = ROOT / "tests" / "dist_check.py"
        with session.chdir(tmp):  # away from the work tree, so `import l0` finds the install
            session.run(python, str(smoke), "smoke", *names, external=True)
