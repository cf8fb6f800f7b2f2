"""Checks for ``nox -s dist``: built metadata, then a smoke run of the installed distributions.

``python tests/dist_check.py metadata DIST_DIR PROJECT...`` checks that every project built a
wheel and an sdist, that versions move in lockstep, and that every distribution other than
``l0`` declares a compatible ``l0`` range (``>=X.Y,<X.Y+1``).

``python tests/dist_check.py smoke NAME...`` runs in a fresh virtual environment where the
distributions were installed by name: it checks they come from that environment, that the
``l0`` command lists the plugins, and that the OpenAI adapter recovers from faults served by
the chaos server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path


def _fail(message: str) -> None:
    print(f"dist check failed: {message}", file=sys.stderr)
    raise SystemExit(1)


def check_versions(projects: list[str]) -> dict[str, str]:
    """Lockstep versions, and every distribution but ``l0`` declares a compatible ``l0`` range.

    Returns:
        Each distribution's name and version.
    """
    # Imported here: the smoke half runs in a fresh venv that need not have packaging.
    from packaging.requirements import Requirement
    from packaging.version import Version

    data = {p: tomllib.loads((Path(p) / "pyproject.toml").read_text())["project"] for p in projects}
    versions = {d["name"]: d["version"] for d in data.values()}
    if len(set(versions.values())) != 1:
        _fail(f"versions are not in lockstep: {versions}")
    kernel = Version(versions["l0"])
    upper = Version(f"{kernel.major}.{kernel.minor + 1}")
    for project in data.values():
        if project["name"] == "l0":
            continue
        ranges = [Requirement(r) for r in project.get("dependencies", [])]
        ranges = [r for r in ranges if r.name == "l0"]
        if not ranges:
            _fail(f"{project['name']}: does not depend on l0")
        spec = ranges[0].specifier
        if kernel not in spec or upper in spec:
            name = project["name"]
            _fail(f"{name}: l0 range {spec!s} must admit {kernel} and stop below {upper}")
    return versions


def check_metadata(out: Path, projects: list[str]) -> None:
    """A wheel and an sdist per project, lockstep versions and the declared ``l0`` range."""
    versions = check_versions(projects)
    for name, version in versions.items():
        stem = name.replace("-", "_")
        for pattern in (f"{stem}-{version}-*.whl", f"{stem}-{version}.tar.gz"):
            if not list(out.glob(pattern)):
                _fail(f"{name}: no {pattern} in {out}")
    print(f"metadata ok: {', '.join(f'{n} {v}' for n, v in sorted(versions.items()))}")


async def _openai_smoke() -> str:
    import openai

    import l0
    from l0.testing import ChaosServer, Fault

    async with ChaosServer(script=[Fault.status(503), Fault.drop_after(3)]) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="not-needed")
        client = l0.wrap(sdk, retry=l0.Retry(base_delay=0.01), fallback_models=["small"])
        result = client.chat.completions.create(
            model="large", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text: str = await result.read()
        await sdk.close()
        if len(server.requests) != 3 or result.state.network_retry_count != 2:
            _fail(f"expected 3 requests and 2 retries, got {len(server.requests)} requests")
        return text


def smoke(names: list[str]) -> None:
    """The installed distributions work together outside the work tree."""
    import l0

    here = Path(sys.prefix).resolve()
    for name in names:
        dist = metadata.distribution(name)
        if not Path(str(dist.locate_file(""))).resolve().is_relative_to(here):
            _fail(f"{name} is not installed in {here}")
    if not Path(l0.__file__).resolve().is_relative_to(here):
        _fail(f"l0 was imported from {l0.__file__}, not from {here}")
    text = asyncio.run(_openai_smoke())
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "l0"), "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    plugins = {p["distribution"] for p in json.loads(listed.stdout)["plugins"]}
    missing = sorted({n for n in names if n != "l0"} - plugins)
    if missing:
        _fail(f"`l0 plugins` does not list {missing}; it lists {sorted(plugins)}")
    print(f"smoke ok: {', '.join(names)}; the OpenAI SDK through L0 answered {text[:40]!r}...")


def main(argv: list[str]) -> None:
    """Dispatch ``metadata`` or ``smoke``."""
    if argv[:1] == ["metadata"]:
        check_metadata(Path(argv[1]), argv[2:])
    elif argv[:1] == ["smoke"]:
        smoke(argv[1:])
    else:
        _fail("usage: dist_check.py metadata DIST_DIR PROJECT... | smoke NAME...")


if __name__ == "__main__":
    main(sys.argv[1:])
