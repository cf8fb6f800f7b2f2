"""How a wrapped client asks the next attempt to continue the kept text, whatever the provider.

Client wrappers (``l0-openai``, ``l0-litellm``, your own) share this module: the strategy
names, the default user turn, building the continuation request for a chat ``messages`` list,
recognising a 400 that rejects an assistant prefill, and the per-process memory of the
strategy that works for each provider and model. A wrapper's stream factory calls
:func:`send_continuation` when ``ctx.checkpoint`` is set:

```py
def factory(ctx: l0.AttemptContext) -> Any:
    if not ctx.checkpoint:
        return sdk_call(**params)
    return send_continuation(
        lambda strategy: sdk_call(**continuation_request(params, strategy, ctx.checkpoint)),
        ctx,
        provider=base_url,
        model=params["model"],
        strategies=("prefill", "user", "restart"),
    )
```

See docs/continuation.md for the strategies each shipped wrapper tries per provider.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Final, TypeVar

from l0._config_schema import CONTINUATION_STRATEGIES
from l0.errors import get_status_code
from l0.types import AttemptContext

__all__ = [
    "CONTINUATION_STRATEGIES",
    "DEFAULT_USER_TURN",
    "check_strategies",
    "continuation_request",
    "forget_strategies",
    "rejects_prefill",
    "remembered_strategy",
    "resolve_strategies",
    "send_continuation",
    "with_user_turn",
]

_T = TypeVar("_T")

DEFAULT_USER_TURN: Final = (
    "Your previous answer was cut off. Here is what you wrote, between <<< and >>>:\n"
    "<<<\n{kept}\n>>>\n"
    "Continue it exactly where it stops, even in the middle of a word or a JSON value. Do not "
    "repeat any of it and write nothing before the continuation."
)
"""The user turn of the ``user`` strategy; ``{kept}`` is replaced by the kept text."""

_PREFILL_REJECTION = re.compile(r"prefill|assistant|last message|final message|role", re.I)

_working: dict[tuple[Hashable, str], str] = {}
"""Per (provider, model): the strategy that last worked, so later sessions start with it."""


def check_strategies(value: object, where: str) -> tuple[str, ...]:
    """Validate a ``continuation_strategies`` option and return it as a tuple.

    Args:
        value: The option as given: a non-empty list or tuple of strategy names.
        where: What the error message names (``"l0.wrap options"``, ``"l0_options"`` …).

    Raises:
        TypeError: ``value`` is not a list or tuple (a bare string included).
        ValueError: ``value`` is empty or names an unknown strategy.
    """
    allowed = ", ".join(CONTINUATION_STRATEGIES)
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TypeError(
            f"{where}: continuation_strategies={value!r}: expected a list of strategy names "
            f"({allowed})"
        )
    unknown = [v for v in value if v not in CONTINUATION_STRATEGIES]
    if unknown or not value:
        raise ValueError(
            f"{where}: continuation_strategies={list(value)!r}: "
            + (f"unknown strategy {unknown[0]!r}; " if unknown else "empty; ")
            + f"choose from {allowed}"
        )
    return tuple(value)


def resolve_strategies(explicit: Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """The strategies a call tries: ``explicit``, else config, else the wrapper's ``default``.

    The configured value is ``[tool.l0.continuation] strategies`` (env
    ``L0_CONTINUATION_STRATEGIES``), already validated by :func:`l0.config.load_config`.

    Raises:
        TypeError: ``explicit`` is not a list or tuple of names.
        ValueError: ``explicit`` is empty or names an unknown strategy.
    """
    if explicit is not None:
        return check_strategies(explicit, "resolve_strategies")
    from l0.config import load_config

    configured = load_config().get("continuation", "strategies")
    return tuple(configured or default)


def _append(messages: Any, message: dict[str, Any]) -> list[Any]:
    if isinstance(messages, str):  # the Responses API's ``input`` may be a plain string
        return [{"role": "user", "content": messages}, message]
    return [*(messages or ()), message]


def with_user_turn(params: Mapping[str, Any], text: str, key: str = "messages") -> dict[str, Any]:
    """``params`` with ``text`` appended to ``params[key]`` as a user message."""
    return {**params, key: _append(params.get(key), {"role": "user", "content": text})}


def continuation_request(
    params: Mapping[str, Any], strategy: str, kept: str, key: str = "messages"
) -> dict[str, Any]:
    """The request that asks the model to continue ``kept`` with ``strategy``.

    Args:
        params: The original request's keyword arguments.
        strategy: ``"prefill"`` appends ``kept`` as an assistant message; ``"user"`` appends
            :data:`DEFAULT_USER_TURN` quoting it; ``"restart"`` returns the original request.
        kept: The text the answer continues from (``ctx.checkpoint``).
        key: The keyword holding the chat messages (``"input"`` for OpenAI Responses).
    """
    if strategy == "prefill":
        message = {"role": "assistant", "content": kept}
    elif strategy == "user":
        message = {"role": "user", "content": DEFAULT_USER_TURN.replace("{kept}", kept)}
    else:
        return dict(params)
    return {**params, key: _append(params.get(key), message)}


def rejects_prefill(error: BaseException) -> bool:
    """True for an HTTP 400 whose message is about the assistant prefill or the last role.

    Providers word it differently ("does not support assistant message prefill", "the final
    message must be a user message", "roles must alternate" …); every SDK's error carries the
    status as ``status_code`` and the provider's message in ``str(error)``.
    """
    return get_status_code(error) == 400 and bool(_PREFILL_REJECTION.search(str(error)))


def remembered_strategy(provider: Hashable, model: str) -> str | None:
    """The strategy that last worked for ``provider`` and ``model`` in this process, if any."""
    return _working.get((provider, model))


def forget_strategies() -> None:
    """Forget every remembered strategy (tests, or after a provider changed what it accepts)."""
    _working.clear()


async def send_continuation(
    send: Callable[[str], Awaitable[_T]],
    ctx: AttemptContext,
    provider: Hashable,
    model: str,
    strategies: Sequence[str],
    *,
    rejects: Callable[[BaseException], bool] = rejects_prefill,
) -> _T:
    """Send a continuation attempt, moving down ``strategies`` while the provider rejects one.

    The strategy remembered for ``(provider, model)`` is tried first (the ones before it in
    ``strategies`` are skipped); the one that is accepted is remembered and reported through
    ``ctx.report_continuation`` (the ``CONTINUATION_STRATEGY`` event), with those rejected
    before it.

    Args:
        send: Issues the request for one strategy and returns the awaited stream.
        ctx: The attempt's context; ``ctx.checkpoint`` is the kept text.
        provider: What identifies the provider (a base URL, a provider name …).
        model: The model of this request.
        strategies: The strategies to try, in order.
        rejects: Whether an error rejects the strategy (then the next one is tried); the
            last strategy's error is always raised.

    Raises:
        Exception: The error of the last strategy tried, or any error ``rejects`` refuses.
    """
    known = _working.get((provider, model))
    order = tuple(strategies)
    if known in order:
        order = order[order.index(known) :]
    rejected: list[str] = []
    for position, strategy in enumerate(order):
        try:
            stream = await send(strategy)
        except Exception as exc:
            if position + 1 < len(order) and rejects(exc):
                rejected.append(strategy)
                continue
            raise
        _working[(provider, model)] = strategy
        if ctx.report_continuation is not None:
            ctx.report_continuation(strategy, tuple(rejected))
        return stream
    raise ValueError("send_continuation: strategies is empty")
