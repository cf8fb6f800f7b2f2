"""The soak's short version: 100 concurrent sessions, two rounds, every fault (see soak.py)."""

from __future__ import annotations

from tests.integration.soak import soak
from tests.integration.soak_plan import Timing, plans

# A hundred sessions start far faster than a thousand, so the timeouts (and with them the
# stalls that must trip them) can be much shorter than the full soak's.
SHORT = Timing(initial_token=2.0, inter_token=1.0)


async def test_short_soak_every_session_ends_as_its_policy_allows() -> None:
    rounds = await soak(sessions=100, rounds=2, seed=7, verbose=False, budget=600, timing=SHORT)
    assert [r.problems for r in rounds] == [[], []]
    for record in rounds:
        assert record.succeeded + record.exhausted == record.sessions
        # Sessions scripted with more faults than retries must give up; the others may only
        # give up if the machine was slow enough for a timeout to hit a good answer too
        # (still a correct ending, so only a wholesale failure is flagged here).
        assert record.exhausted >= record.expected_exhausted
        assert record.succeeded >= (record.sessions - record.expected_exhausted) // 2


async def test_a_round_cut_by_the_budget_leaves_no_task_socket_or_thread_open() -> None:
    # The budget (counted from the start: the server process and the warm-up take a few
    # seconds) runs out in the middle of round 1, with sessions connecting, streaming, stalled
    # or backing off; the cancelled sessions must still close everything they opened.
    # Limits far past the budget: sessions scripted to stall are still waiting at the cut,
    # however fast the machine.
    timing = Timing(initial_token=60.0, inter_token=30.0)
    assert any(plan.slow for plan in next(plans(3, 50, 1, timing)))
    rounds = await soak(sessions=50, rounds=1, seed=3, verbose=False, budget=6.0, timing=timing)
    problems = [problem for record in rounds for problem in record.problems]
    assert "the soak ran out of its 6 s budget" in problems
    assert [p for p in problems if p.startswith("leaks")] == []
    assert set(problems) <= {"the soak ran out of its 6 s budget", "over the time budget"}


def test_the_server_process_answers_and_always_ends() -> None:
    import os

    import httpx
    import pytest

    from tests.integration.soak_server import ServerProcess

    with pytest.raises(KeyError), ServerProcess(1, 2, 1, SHORT) as server:  # noqa: PT012
        pid = server.pid
        models = httpx.get(f"{server.base_url}/models", timeout=30).json()
        # Every session of the plan is scripted in the server process.
        assert {m["id"] for m in models["data"]} == {"soak-0-0", "soak-0-1"}
        raise KeyError("an error in the client")
    # Ended and reaped, not left running or as a zombie.
    assert not os.path.exists(f"/proc/{pid}")
