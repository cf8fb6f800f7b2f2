"""Per-``l0.run`` configuration cost: resolved once and cached, against re-resolving it.

Contenders, interleaved run after run in one process, in a directory holding an ``l0.toml``
with a ``[retry]`` and a ``[timeout]`` table and two ``L0_*`` variables set:

* ``cached`` — what ``l0.run`` does per call now: ``load_config()`` (one environment scan and
  a few ``stat`` calls to see that nothing changed), then the cached ``Retry`` and ``Timeout``;
* ``before`` — the same with the configuration module of ``main`` at the first commit of this
  change (``git show <rev>:l0/config.py``): cached settings, but the policy's ``Retry`` built
  again on every call and the strategy never checked;
* ``uncached`` — the cache dropped before every call: search, read, parse, validate, resolve;
* ``l0_run`` — a whole ``l0.run(factory)`` call (session set-up, no streaming), for scale.

Usage: ``python benchmarks/bench_config.py [--calls 2000] [--runs 7] [--before-rev REV]``.
Without git (or the revision), the ``before`` contender is left out and said so.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import l0
from l0 import config

ROOT = Path(__file__).resolve().parent.parent


def load_before(rev: str) -> ModuleType | None:
    try:
        text = subprocess.run(
            ["git", "show", f"{rev}:l0/config.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "config_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("config_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["config_before"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def tokens() -> AsyncIterator[str]:
    yield "x"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before-rev", default="01ab2d7")
    args, _ = parser.parse_known_args()  # nox -s bench passes the other scripts' options
    workdir = Path(tempfile.mkdtemp())
    (workdir / "l0.toml").write_text(
        '[retry]\npolicy = "exponential"\nmax_retries = 4\n[timeout]\ninter_token = 20\n'
    )
    os.chdir(workdir)
    os.environ["L0_RETRY_ATTEMPTS"] = "2"
    os.environ["L0_DRIFT_ENABLED"] = "0"
    pm = l0.default_plugin_manager()
    before = load_before(args.before_rev)

    def cached() -> None:
        settings = config.load_config()
        config.resolve_retry(None, settings, pm)
        config.resolve_timeout(None, settings)

    def uncached() -> None:
        config.reset_config_cache()
        cached()

    def l0_run() -> None:
        l0.run(tokens)

    contenders: dict[str, Callable[[], None]] = {"cached": cached, "uncached": uncached}
    if before is not None:

        def before_call() -> None:
            settings = before.load_config()
            before.resolve_retry(None, settings, pm)
            before.resolve_timeout(None, settings)

        contenders["before"] = before_call
    else:
        print(f"(no 'before' contender: git show {args.before_rev}:l0/config.py failed)")
    contenders["l0_run"] = l0_run
    for fn in contenders.values():
        fn()  # warm-up, and a check that each works here
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.runs):
        for name, fn in contenders.items():
            gc.collect()
            start = time.perf_counter()
            for _ in range(args.calls):
                fn()
            samples[name].append((time.perf_counter() - start) / args.calls * 1e6)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    version = sys.version.split()[0]
    print(f"per-call cost, median of {args.runs} runs of {args.calls} calls (Python {version})")
    for name, median in medians.items():
        print(f"  {name:>9}: {median:8.2f} us  (best {min(samples[name]):8.2f} us)")
    if "before" in medians:
        print(f"  before / cached = {medians['before'] / medians['cached']:.2f}x")
    print(f"  uncached / cached = {medians['uncached'] / medians['cached']:.2f}x")


if __name__ == "__main__":
    main()
