"""The soak's session scripts, built from a seed: the same on the client and in the server process.

The server process (:mod:`tests.integration.soak_server`) scripts every session's model with
these faults; the client (:mod:`tests.integration.soak`) builds the same plans from the same
seed, so it knows each session's answer and scripted faults without asking the server.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from l0.testing import Fault, split_words

MAX_RETRIES = 3
"""Retries each session's policy allows (so ``MAX_RETRIES + 1`` attempts)."""


@dataclass(frozen=True, slots=True)
class Timing:
    """The client's timeouts and how long the server's slow faults hold a response.

    A stall or slow first token lasts ``hold`` times the timeout it must trip, so the fault is
    real (only the timeout ends it; the server stops as soon as the client hangs up), while
    the timeouts stay short enough for three rounds to fit the soak's budget.
    """

    initial_token: float = 10.0
    inter_token: float = 5.0
    hold: float = 3.0
    # A slow start that stays well within initial_token: no fault, the answer must arrive.
    slow_ok: float = 0.2


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One session: its model name (its own script on the server), answer and script."""

    model: str
    text: str
    faults: tuple[Fault, ...]
    scripted: int
    """How many of ``faults`` come before the first good answer."""
    slow: int
    """How many of those are meant to trip a timeout (0 or 1)."""

    @property
    def must_exhaust(self) -> bool:
        """Whether the scripted faults outnumber the retries, so the session must give up."""
        return self.scripted > MAX_RETRIES


def _faults(rng: random.Random, text: str, timing: Timing) -> tuple[list[Fault], Fault, int]:
    """Random faults for one session (at most one that waits for a timeout), and its answer."""
    count = rng.choices([0, 1, 2, 3, 4], weights=[30, 30, 20, 12, 8])[0]
    words = len(split_words(text))
    quick = [
        lambda: Fault.drop_after(rng.randrange(words), text=text),
        lambda: Fault.status(429, headers={"retry-after-ms": "20"}),
        lambda: Fault.status(503, headers={"Retry-After": "0"}),
        lambda: Fault.zero_output(),  # noqa: PLW0108 (a list of zero-argument lambdas)
        lambda: Fault.malformed_sse(rng.randrange(words), text=text),
        lambda: Fault.stream_error(rng.randrange(words), text=text),
    ]
    stall = timing.inter_token * timing.hold
    slow = [
        lambda: Fault.stall_after(rng.randrange(1, words), seconds=stall, text=text),
        lambda: Fault.slow_first_token(timing.initial_token * timing.hold, text=text),
    ]
    faults = [rng.choice(quick)() for _ in range(count)]
    slowed = bool(faults) and rng.random() < 0.15
    if slowed:
        faults[rng.randrange(len(faults))] = rng.choice(slow)()
    slow_start = rng.random() < 0.1
    answer = Fault.slow_first_token(timing.slow_ok, text=text) if slow_start else Fault.ok(text)
    return faults, answer, int(slowed)


def plans(seed: int, sessions: int, rounds: int, timing: Timing) -> Iterator[list[SessionPlan]]:
    """Yield each round's session plans, the same for the same arguments.

    Args:
        seed: Seeds the one random generator all rounds draw from, in order.
        sessions: Sessions per round.
        rounds: Number of rounds.
        timing: Timeouts the faults are built against.
    """
    rng = random.Random(seed)
    for number in range(rounds):
        batch = []
        for i in range(sessions):
            text = f"Session {number}-{i} says: the quick brown fox jumps {i % 97} times."
            faults, answer, slowed = _faults(rng, text, timing)
            # The answer again for every retry left: a timeout on a busy machine may cost the
            # session a good answer, and the retry must get this session's text, not the
            # server's default.
            script = (*faults, answer, *[Fault.ok(text)] * MAX_RETRIES)
            batch.append(SessionPlan(f"soak-{number}-{i}", text, script, len(faults), slowed))
        yield batch
