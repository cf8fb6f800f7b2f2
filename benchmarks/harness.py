"""Measuring code shared by the ``benchmarks/bench_*.py`` scripts.

Every script compares a few *contenders* — async functions that consume one input (a token
count or a token list) and return the text they assembled — against a contender named
``raw`` that iterates the same tokens without L0. The harness:

* times each contender with :func:`timed_reps` (a full ``gc.collect()`` first), optionally
  calling it several times per timing so that every timing covers about the same number of
  tokens (``tokens_per_timing``): a 20,000-token call then is as long as a 200,000-token one,
  and as exposed to a busy machine;
* reads either the wall clock (``time.perf_counter``) or the process's CPU time
  (``time.process_time``, which a shared machine's other jobs do not add to) (``clock``);
* interleaves everything, round after round (:func:`measure`): each round runs every size and
  every contender once, in an order rotated from round to round, after one untimed warm-up call
  of each, so that noise hits contenders and sizes alike;
* checks that every contender returned exactly the expected text, on every call;
* reports, per size and contender, the median and the fastest timing, tokens per second, the
  overhead per token over ``raw``, and the ratio to ``raw`` as the median over rounds of the
  ratio within a round (:class:`Cell`), plus how time grows between the two largest sizes
  (:attr:`Series.growth`, the median over rounds of the ratio within a round; about 10 for
  10x the tokens when the cost is linear);
* prints a table (:func:`print_table`) and writes ``bench-results/*.json`` with the Python
  version and platform (:func:`write_results`).

Scripts import it as a sibling module (``import harness``): running ``python
benchmarks/bench_x.py`` puts ``benchmarks/`` first on ``sys.path``. The file name does not
match ``bench_*.py``, so ``nox -s bench`` does not run it.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Name of the baseline contender every overhead is measured against.
RAW = "raw"


@dataclass(frozen=True)
class Cell:
    """One contender at one size.

    Attributes:
        median_s: Median time of one call over the runs, in seconds, by the measuring clock
            (wall or CPU time, see :func:`measure`).
        best_s: Fastest run, in seconds (the least disturbed by other processes).
        tokens_per_s: Tokens divided by ``median_s``.
        overhead_us_per_token: ``(median_s - raw median_s) / tokens``, in microseconds: what
            the contender costs per token on top of raw iteration (0 for ``raw`` itself).
        overhead_us_per_token_best: The same from the fastest runs,
            ``(best_s - raw best_s) / tokens``.
        ratio_to_raw: Median over rounds of this contender's time divided by ``raw``'s time in
            the same round (each round runs both under the same machine load).
        wall_median_s: Median wall time of one call (equal to ``median_s`` on the wall clock).
    """

    median_s: float
    best_s: float
    tokens_per_s: float
    overhead_us_per_token: float
    overhead_us_per_token_best: float
    ratio_to_raw: float = 1.0
    wall_median_s: float = 0.0


@dataclass
class Row:
    """Every contender at one size.

    Attributes:
        tokens: Number of tokens the size asked for (the per-token figures divide by this).
        chars: Length of the expected text.
        cells: Contender name to its figures, in the contenders' order.
        samples: Contender name to every run's seconds, in run order.
        derived: Script-specific figures computed from the cells (for example the drift
            script's ``drift_only_us_per_token``); written and printed with the row.
    """

    tokens: int
    chars: int
    cells: dict[str, Cell]
    samples: dict[str, list[float]]
    derived: dict[str, float] = field(default_factory=dict)

    def us_per_token_between(self, slower: str, faster: str, *, best: bool = False) -> float:
        """Per-token difference between two contenders, in microseconds.

        Args:
            slower: Contender whose time is the minuend.
            faster: Contender whose time is subtracted.
            best: Use the fastest runs instead of the medians.
        """
        a, b = self.cells[slower], self.cells[faster]
        seconds = a.best_s - b.best_s if best else a.median_s - b.median_s
        return seconds / self.tokens * 1e6

    def to_json(self) -> dict[str, object]:
        """``{"tokens", "chars", <contender>: {...}, <derived>: value}``."""
        out: dict[str, object] = {"tokens": self.tokens, "chars": self.chars}
        for name, cell in self.cells.items():
            out[name] = {**asdict(cell), "runs_s": self.samples[name]}
        out.update(self.derived)
        return out


@dataclass
class Series:
    """Every contender over every size, for one kind of content.

    Attributes:
        label: The kind of content (``"text"``, ``"json"``, ...).
        rows: One row per size, smallest first.
        growth: Contender name to its time at the largest size divided by its time at the
            second largest, the median over rounds of that ratio within a round; empty with
            fewer than two sizes.
        growth_sizes: ``(largest, second largest)``, or ``None`` with fewer than two sizes.
        growth_best: The same ratio from each contender's fastest timing at each size. Noise
            only adds time, so this one moves less on a busy machine (the bare loop, linear by
            construction, shows how far the median one strays).
    """

    label: str
    rows: list[Row]
    growth: dict[str, float]
    growth_sizes: tuple[int, int] | None
    growth_best: dict[str, float] = field(default_factory=dict)

    @property
    def contenders(self) -> list[str]:
        """Contender names in measuring order."""
        return list(self.rows[0].cells) if self.rows else []


@dataclass(frozen=True)
class Options:
    """Command-line options every script takes."""

    sizes: list[int]
    runs: int
    out: Path
    clock: str = "wall"
    tokens_per_timing: int = 0


async def source(tokens: Sequence[str]) -> AsyncIterator[str]:
    """The provider stand-in every contender consumes: the tokens, one by one."""
    for token in tokens:
        yield token


async def raw(tokens: Sequence[str]) -> str:
    """The baseline: a plain ``async for`` that appends each token and joins at the end."""
    parts: list[str] = []
    async for token in source(tokens):
        parts.append(token)
    return "".join(parts)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""The clocks a benchmark can read: wall time, or the CPU time of this process."""


async def timed(fn: Callable[[T], Awaitable[str]], arg: T) -> tuple[float, str]:
    """Time one call of ``fn(arg)`` after a full garbage collection.

    Returns:
        Seconds elapsed (``time.perf_counter``) and the text ``fn`` returned.
    """
    gc.collect()
    start = time.perf_counter()
    text = await fn(arg)
    return time.perf_counter() - start, text


async def timed_reps(
    fn: Callable[[T], Awaitable[str]], arg: T, reps: int, clock: str = "wall"
) -> tuple[float, float, list[str]]:
    """Time ``reps`` calls of ``fn(arg)`` in a row, after a full garbage collection.

    Returns:
        Seconds per call by ``clock``, wall seconds per call, and the text of every call.
    """
    read = CLOCKS[clock]
    texts: list[str] = []
    gc.collect()
    wall = time.perf_counter()
    start = read()
    for _ in range(reps):
        texts.append(await fn(arg))
    elapsed = read() - start
    wall = time.perf_counter() - wall
    return elapsed / reps, wall / reps, texts


async def measure(
    contenders: Mapping[str, Callable[[T], Awaitable[str]]],
    sizes: Sequence[int],
    runs: int,
    make_input: Callable[[int], T],
    make_expected: Callable[[T], str],
    *,
    label: str = "",
    clock: str = "wall",
    tokens_per_timing: int = 0,
) -> Series:
    """Measure every contender at every size.

    Each input is built once (outside the timings); every contender must return
    ``make_expected(input)`` on every call, else the benchmark stops. Each contender runs once
    untimed on the smallest input first (building plugin managers, caches and detectors), then
    ``runs`` rounds each time every contender at every size once, in an order rotated from
    round to round.

    Args:
        contenders: Name to async function; must include ``"raw"``, the baseline.
        sizes: Token counts.
        runs: Timed runs (rounds) per contender and size.
        make_input: Builds the input for a token count.
        make_expected: The text every contender must return for an input.
        label: Kind of content, carried into the result.
        clock: ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (``time.process_time``).
        tokens_per_timing: Call a contender ``ceil(tokens_per_timing / size)`` times per
            timing (at least once), so short sizes are timed over as many tokens as long ones;
            0 times one call.

    Returns:
        The rows, smallest size first, and the growth between the two largest sizes.

    Raises:
        ValueError: No ``raw`` contender, no sizes, fewer than one run, or an unknown clock.
        SystemExit: A contender returned different text.
    """
    if RAW not in contenders:
        raise ValueError(f"contenders must include {RAW!r}")
    if not sizes or runs < 1:
        raise ValueError("need at least one size and one run")
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r}: choose one of {', '.join(CLOCKS)}")
    ordered = sorted(set(sizes))
    names = list(contenders)
    where = f"{label} " if label else ""
    inputs = {n: make_input(n) for n in ordered}
    expected = {n: make_expected(inputs[n]) for n in ordered}
    reps = {n: max(1, -(-tokens_per_timing // n)) for n in ordered}

    async def checked(name: str, n: int, times: int) -> tuple[float, float]:
        seconds, wall, texts = await timed_reps(contenders[name], inputs[n], times, clock)
        if any(text != expected[n] for text in texts):
            raise SystemExit(f"{name} produced different text ({where}n={n})")
        return seconds, wall

    for name in names:
        await checked(name, ordered[0], 1)

    samples: dict[int, dict[str, list[float]]] = {n: {name: [] for name in names} for n in ordered}
    walls: dict[int, dict[str, list[float]]] = {n: {name: [] for name in names} for n in ordered}
    for round_no in range(runs):
        shift = round_no % len(names)
        order = names[shift:] + names[:shift]  # no contender always runs first or last
        for n in ordered:
            for name in order:
                seconds, wall = await checked(name, n, reps[n])
                samples[n][name].append(seconds)
                walls[n][name].append(wall)

    rows: list[Row] = []
    for n in ordered:
        times = samples[n]
        medians = {name: statistics.median(values) for name, values in times.items()}
        bests = {name: min(values) for name, values in times.items()}
        cells = {
            name: Cell(
                median_s=medians[name],
                best_s=bests[name],
                tokens_per_s=n / medians[name],
                overhead_us_per_token=(medians[name] - medians[RAW]) / n * 1e6,
                overhead_us_per_token_best=(bests[name] - bests[RAW]) / n * 1e6,
                ratio_to_raw=statistics.median(
                    a / b for a, b in zip(times[name], times[RAW], strict=True)
                ),
                wall_median_s=statistics.median(walls[n][name]),
            )
            for name in names
        }
        rows.append(Row(tokens=n, chars=len(expected[n]), cells=cells, samples=times))

    growth: dict[str, float] = {}
    growth_best: dict[str, float] = {}
    growth_sizes: tuple[int, int] | None = None
    if len(rows) >= 2:
        small, big = rows[-2], rows[-1]
        growth_sizes = (big.tokens, small.tokens)
        growth = {
            name: statistics.median(
                a / b for a, b in zip(big.samples[name], small.samples[name], strict=True)
            )
            for name in names
        }
        growth_best = {name: min(big.samples[name]) / min(small.samples[name]) for name in names}
    return Series(
        label=label, rows=rows, growth=growth, growth_sizes=growth_sizes, growth_best=growth_best
    )


def environment() -> dict[str, object]:
    """Python version, implementation and platform the numbers were measured on."""
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def write_results(path: Path, results: Sequence[Series], meta: Mapping[str, object]) -> None:
    """Write the series as JSON, creating the directory if needed.

    The document is ``{"meta": {...}, "results": {label: {"<tokens>": row}}, "growth": {label:
    {"sizes": [largest, second], contender: ratio}}, "growth_best": {label: {...}}}``; ``meta``
    holds :func:`environment` plus what the caller passes (runs, sizes, options).
    """
    document = {
        "meta": {**environment(), **meta},
        "results": {s.label: {str(row.tokens): row.to_json() for row in s.rows} for s in results},
        "growth": {
            s.label: {"sizes": list(s.growth_sizes), **s.growth}
            for s in results
            if s.growth_sizes is not None
        },
        "growth_best": {
            s.label: {"sizes": list(s.growth_sizes), **s.growth_best}
            for s in results
            if s.growth_sizes is not None
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")


def print_table(results: Sequence[Series]) -> None:
    """Print every row's figures, then growth, then any script-specific derived figures."""
    width = max([len(name) for s in results for name in s.contenders] + [9])
    kind = max([len(s.label) for s in results] + [7])
    print(
        f"{'content':>{kind}} {'tokens':>8} {'contender':>{width}} {'median ms':>10} "
        f"{'best ms':>9} {'tok/s':>12} {'µs/token over raw':>18} {'(best)':>8} {'x raw':>7}"
    )
    for series in results:
        for row in series.rows:
            for name, cell in row.cells.items():
                print(
                    f"{series.label:>{kind}} {row.tokens:>8} {name:>{width}} "
                    f"{cell.median_s * 1e3:>10.2f} {cell.best_s * 1e3:>9.2f} "
                    f"{cell.tokens_per_s:>12,.0f} {cell.overhead_us_per_token:>18.3f} "
                    f"{cell.overhead_us_per_token_best:>8.3f} {cell.ratio_to_raw:>7.2f}"
                )
    for series in results:
        if series.growth_sizes is None:
            continue
        big, small = series.growth_sizes
        for name, ratio in series.growth.items():
            best = series.growth_best.get(name)
            fastest = f" (fastest timings: {best:.2f}x)" if best is not None else ""
            print(
                f"growth {series.label:>{kind}} {name:>{width}} {big}/{small}: {ratio:.2f}x"
                + fastest
            )
    for series in results:
        for row in series.rows:
            for key, value in row.derived.items():
                print(f"{series.label:>{kind}} {row.tokens:>8} {key}: {value:.3f}")


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not comma-separated integers: {value}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sorted(set(sizes))


def _runs(value: str) -> int:
    runs = int(value)
    if runs < 1:
        raise argparse.ArgumentTypeError("runs must be at least 1")
    return runs


def cli(
    description: str | None,
    default_out: str,
    *,
    default_runs: int = 5,
    default_sizes: str = "2000,20000,200000",
    default_clock: str = "wall",
    default_tokens_per_timing: int = 0,
) -> Options:
    """Parse ``--sizes``, ``--runs``, ``--out``, ``--clock`` and ``--tokens-per-timing``.

    Args:
        description: Help text, usually the script's ``__doc__``.
        default_out: Where the JSON goes without ``--out``.
        default_runs: Timed runs per contender and size without ``--runs``.
        default_sizes: Comma-separated token counts without ``--sizes``.
        default_clock: ``wall`` or ``cpu`` without ``--clock``.
        default_tokens_per_timing: Tokens each timing covers at least (calls repeated) without
            ``--tokens-per-timing``; 0 times single calls.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=_sizes(default_sizes),
        help=f"comma-separated token counts (default {default_sizes})",
    )
    parser.add_argument(
        "--runs",
        type=_runs,
        default=default_runs,
        help=f"timed runs per contender and size (default {default_runs})",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(default_out), help=f"JSON file (default {default_out})"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default=default_clock,
        help=f"wall time or this process's CPU time (default {default_clock})",
    )
    parser.add_argument(
        "--tokens-per-timing",
        type=int,
        default=default_tokens_per_timing,
        help="repeat calls so each timing covers at least this many tokens "
        f"(default {default_tokens_per_timing}; 0: one call per timing)",
    )
    args = parser.parse_args()
    return Options(
        sizes=args.sizes,
        runs=args.runs,
        out=args.out,
        clock=args.clock,
        tokens_per_timing=max(0, args.tokens_per_timing),
    )
