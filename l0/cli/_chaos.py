"""``l0 chaos serve --script``: faults written as short words, parsed into ``Fault`` objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from l0.testing import Fault

SCRIPT_HELP = """\
Faults, comma-separated, one per request in order; then every request is answered normally.

\b
  ok                 a normal streamed answer
  status:CODE        an HTTP error, e.g. status:503, status:429 (with Retry-After: 1)
  drop:N             drop the connection after N tokens
  stall:N:SECONDS    go silent for SECONDS after N tokens, then finish
  slow-first:SECONDS wait SECONDS before the first token
  slow-headers:SEC   wait SEC before sending the response headers
  zero               an answer with no content
  malformed:N        broken SSE after N tokens
  refusal            a refusal answer

Example: --script status:429,drop:5,ok"""


def _number(word: str, value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{word!r}: {what} must be a number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{word!r}: {what} must be >= 0, got {value!r}")
    return number


def parse_fault(word: str) -> Fault:
    """One fault from its short form (see ``l0 chaos serve --help``).

    Raises:
        ValueError: the word is not a fault; the message lists the forms.
    """
    from l0.testing import Fault

    name, *args = word.strip().split(":")
    makers: dict[str, tuple[int, Callable[..., Fault]]] = {
        "ok": (0, Fault.ok),
        "status": (
            1,
            lambda code: Fault.status(
                int(code), headers={"Retry-After": "1"} if int(code) == 429 else None
            ),
        ),
        "drop": (1, lambda n: Fault.drop_after(int(n))),
        "stall": (2, lambda n, s: Fault.stall_after(int(n), seconds=s)),
        "slow-first": (1, Fault.slow_first_token),
        "slow-headers": (1, Fault.slow_headers),
        "zero": (0, Fault.zero_output),
        "malformed": (1, lambda n: Fault.malformed_sse(after=int(n))),
        "refusal": (0, Fault.refusal),
    }
    if name not in makers:
        raise ValueError(
            f"--script: unknown fault {word!r}; choose from: "
            "ok, status:CODE, drop:N, stall:N:SECONDS, slow-first:SECONDS, "
            "slow-headers:SECONDS, zero, malformed:N, refusal"
        )
    count, make = makers[name]
    if len(args) != count:
        raise ValueError(f"--script: fault {word!r} takes {count} value(s) after {name!r}")
    values: list[float] = [_number(word, a, "each value") for a in args]
    if name in ("status", "drop", "stall", "malformed") and values[0] != int(values[0]):
        raise ValueError(f"--script: {word!r}: the first value must be a whole number")
    if name == "status" and not 400 <= values[0] <= 599:
        raise ValueError(f"--script: {word!r}: the status must be 400-599")
    try:
        return make(*values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--script: {word!r}: {exc}") from None


def parse_script(script: str) -> list[Fault]:
    """Faults from a comma-separated script (empty: none).

    Raises:
        ValueError: a word is not a fault.
    """
    return [parse_fault(word) for word in script.split(",") if word.strip()]
