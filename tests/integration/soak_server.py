"""The soak's chaos server, in a process of its own.

``python -m tests.integration.soak_server --seed 1 --sessions 1000 --rounds 3`` scripts every
session's model (:func:`tests.integration.soak_plan.plans`, the same plans the client builds),
starts a :class:`l0.testing.ChaosServer` on 127.0.0.1, writes ``READY <port>`` on stdout and
serves until its stdin closes: the client closing the pipe, or the client dying, ends it.

:class:`ServerProcess` is the client's side: it starts that process, waits for the ready line,
and always ends the process (on errors and timeouts too). With the server in its own process,
the soak's client process measures only the client: its CPU time, memory, tasks, descriptors,
sockets and threads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.integration.soak_plan import Timing, plans

ROOT = Path(__file__).resolve().parents[2]
READY = "READY"
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0


def _timing_args(timing: Timing) -> list[str]:
    return [
        f"--initial-token={timing.initial_token!r}",
        f"--inter-token={timing.inter_token!r}",
        f"--hold={timing.hold!r}",
        f"--slow-ok={timing.slow_ok!r}",
    ]


class ServerProcess:
    """Runs the soak's chaos server in a child process; use as a ``with`` block.

    Args:
        seed: Seed of the session plans (the client must use the same).
        sessions: Sessions per round.
        rounds: Rounds.
        timing: Timeouts the plans' faults are built against.

    Raises:
        RuntimeError: On entry, when the server did not report ready within a minute (the
            child is ended before this is raised).
    """

    def __init__(self, seed: int, sessions: int, rounds: int, timing: Timing) -> None:
        self._command = [
            sys.executable,
            "-m",
            "tests.integration.soak_server",
            f"--seed={seed}",
            f"--sessions={sessions}",
            f"--rounds={rounds}",
            *_timing_args(timing),
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._ticks = os.sysconf("SC_CLK_TCK")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` the client takes."""
        if self._port is None:
            raise RuntimeError("the soak server is not running")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is None:
            raise RuntimeError("the soak server is not running")
        return self._process.pid

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the server process has used so far."""
        with open(f"/proc/{self.pid}/stat", "rb") as stat:
            # Fields after the command name, which is in parentheses and may contain spaces.
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks

    def __enter__(self) -> Self:
        process = self._process = subprocess.Popen(
            self._command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            self._port = self._wait_ready(process)
        except BaseException:
            self._end()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end()

    @staticmethod
    def _wait_ready(process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    continue
                line = process.stdout.readline().decode(errors="replace").split()
                if not line:
                    raise RuntimeError(
                        f"the soak server exited before it was ready (code {process.poll()})"
                    )
                if len(line) == 2 and line[0] == READY and line[1].isdigit():
                    return int(line[1])
        raise RuntimeError(f"the soak server was not ready within {_START_TIMEOUT:.0f} s")

    def _end(self) -> None:
        process, self._process, self._port = self._process, None, None
        if process is None:
            return
        # Closing stdin asks the server to stop; a server that does not is ended by force.
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    defaults = Timing()
    parser.add_argument("--initial-token", type=float, default=defaults.initial_token)
    parser.add_argument("--inter-token", type=float, default=defaults.inter_token)
    parser.add_argument("--hold", type=float, default=defaults.hold)
    parser.add_argument("--slow-ok", type=float, default=defaults.slow_ok)
    args = parser.parse_args()
    timing = Timing(args.initial_token, args.inter_token, args.hold, args.slow_ok)
    import logging

    from l0.testing import ChaosServer

    # A client that timed out hangs up while an answer is still being written; asyncio then
    # warns once per write to the closed socket, which is expected here and floods stderr.
    logging.getLogger("asyncio").setLevel(logging.ERROR)

    scripts = {
        plan.model: plan.faults
        for batch in plans(args.seed, args.sessions, args.rounds, timing)
        for plan in batch
    }
    # Idle connections stay open for the whole soak: a client reusing one the server closes
    # at that moment would get a connection error no fault scripted.
    with ChaosServer(model_scripts=scripts, keep_alive=600) as server:
        sys.stdout.write(f"{READY} {server.port}\n")
        sys.stdout.flush()
        # Serve until the client closes the pipe (or dies, which closes it too).
        sys.stdin.buffer.read()


if __name__ == "__main__":
    main()
