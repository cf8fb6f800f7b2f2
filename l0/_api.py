"""``l0.run``, ``l0.wrap`` and the :class:`Result` they return."""

from __future__ import annotations

import asyncio
import copy
import math
import os
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

from typing_extensions import Unpack

from l0._dispatch import hook_table
from l0._result import Result
from l0._runtime import CALLBACK_NAMES, DEFAULT_INTERVALS, DEFAULT_MAX_OVERLAP, Session, _Options
from l0.config import Settings, load_config, resolve_retry, resolve_timeout
from l0.health import Health, health_service
from l0.plugins import L0PluginManager, default_plugin_manager, default_plugin_manager_for
from l0.retry import Retry
from l0.timeout import Timeout
from l0.types import Adapter

if TYPE_CHECKING:
    # Types only: the kernel never imports an adapter distribution at run time. Without them
    # installed, mypy reads these names as Any and the client overload returns Any.
    from l0_openai.client import L0AsyncOpenAI
    from openai import AsyncOpenAI

__all__ = ["ClientOptions", "Result", "RunOptions", "run", "wrap"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: expected True or False")


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name}={value!r}: expected a callable or None")


_NOTHING: Mapping[str, Any] = MappingProxyType({})
_NO_FALLBACKS: Sequence[Callable[..., Any]] = ()


def _frozen_copy(name: str, value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return _NOTHING
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}={value!r}: expected a mapping (dict) or None")
    return MappingProxyType(copy.deepcopy(dict(value)))


def _validate_factory(name: str, value: object) -> Callable[..., Any]:
    if callable(value):
        return value
    if hasattr(type(value), "__aiter__") or hasattr(value, "__await__"):
        raise TypeError(
            f"{name}={type(value).__name__} object: expected a factory (a callable that returns "
            "a new stream each time, e.g. `lambda: client.chat.completions.create(...)`), so "
            "L0 can retry. For a single stream without retries use l0.wrap(stream)."
        )
    raise TypeError(
        f"{name}={value!r}: expected a callable returning an async iterator (or an awaitable "
        "of one)"
    )


def _check_recovery(
    continue_on_length: object, hedge_after: object, timeout: Timeout | None
) -> None:
    if not _is_int(continue_on_length):
        raise TypeError(
            f"continue_on_length={continue_on_length!r}: expected an int >= 0 (0 turns it off)"
        )
    if continue_on_length < 0:  # type: ignore[operator]
        raise ValueError(
            f"continue_on_length={continue_on_length!r}: expected an int >= 0 (0 turns it off)"
        )
    if hedge_after is None:
        return
    if isinstance(hedge_after, bool) or not isinstance(hedge_after, int | float):
        raise TypeError(f"hedge_after={hedge_after!r}: expected seconds (a number > 0) or None")
    if math.isnan(hedge_after) or hedge_after <= 0:
        raise ValueError(f"hedge_after={hedge_after!r}: expected seconds (a number > 0) or None")
    total = timeout.total if timeout is not None else None
    if total is not None and hedge_after >= total:
        raise ValueError(
            f"hedge_after={hedge_after!r}: expected less than Timeout.total={total!r}, or the "
            "hedge could never start"
        )


def run(
    stream: Callable[..., Any],
    *,
    fallbacks: Sequence[Callable[..., Any]] = _NO_FALLBACKS,
    retry: Retry | None = None,
    timeout: Timeout | None = None,
    adapter: Adapter | None = None,
    plugins: L0PluginManager | None = None,
    context: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    seed: int | None = None,
    retry_on_length: bool = False,
    continue_on_length: int = 0,
    hedge_after: float | None = None,
    guardrails: Any = None,
    drift: Any = None,
    check_intervals: Mapping[str, int] | None = None,
    continue_from_last_good_token: bool = False,
    build_continuation_prompt: Callable[[str], str] | None = None,
    remove_overlap: bool = True,
    max_overlap: int = DEFAULT_MAX_OVERLAP,
    record: str | os.PathLike[str] | None = None,
    provider: str | Sequence[str | None] | None = None,
    health: Health | bool | None = None,
    on_start: Callable[..., Any] | None = None,
    on_complete: Callable[..., Any] | None = None,
    on_error: Callable[..., Any] | None = None,
    on_event: Callable[..., Any] | None = None,
    on_violation: Callable[..., Any] | None = None,
    on_retry: Callable[..., Any] | None = None,
    on_fallback: Callable[..., Any] | None = None,
    on_resume: Callable[..., Any] | None = None,
    on_checkpoint: Callable[..., Any] | None = None,
    on_timeout: Callable[..., Any] | None = None,
    on_abort: Callable[..., Any] | None = None,
    on_drift: Callable[..., Any] | None = None,
    on_tool_call: Callable[..., Any] | None = None,
) -> Result:
    """Run a stream with retries, fallbacks, timeouts and zero-output detection.

    Args:
        stream: Factory for the primary stream: a callable taking no argument or one
            :class:`~l0.types.AttemptContext`, returning an async iterator (of ``str``,
            :class:`~l0.types.Event`, or SDK chunks an adapter knows) or an awaitable of one.
            It is called again for every retry.
        fallbacks: Factories tried in order once the primary's retries are used up; each gets
            a fresh retry budget.
        retry: Retry policy; default from config (``[tool.l0] retry.*``, ``L0_RETRY_*``) or
            ``l0.Retry()``.
        timeout: Time limits; default from config or ``l0.Timeout()`` (60 s to the first
            token, 30 s between tokens).
        adapter: Force an adapter instead of auto-detection.
        plugins: Plugin manager to use instead of the default one.
        context: Caller data copied into every observability event (request ids …).
        meta: More caller data for events (user ids, feature flags …).
        session_id: Groups observability events of related streams; the stream id otherwise.
        seed: Seed for backoff jitter (overrides ``Retry.seed``).
        retry_on_length: Treat an answer cut at the token limit (``finish_reason="length"``)
            as a model error and retry it; by default it is accepted and visible in
            ``state.finish_reason`` and in the ``COMPLETE`` event's data.
        continue_on_length: Up to this many times, an answer cut at the token limit
            (``finish_reason="length"``) is continued by a new request that carries the text so
            far (``ctx.checkpoint``; a wrapped client needs no code), stitched with the same
            overlap removal as continuation, and JSON so that it still parses.
            ``state.length_continuations`` counts them. 0 (the default): off.
        hedge_after: Seconds; when an attempt has no first token after this long, the next
            fallback (or the same stream when there is none) starts in parallel and the first
            to deliver a token wins; the other is closed at once. ``None`` (default): off.
        guardrails: Rules checked while streaming and at the end: a list of
            ``l0.GuardrailRule``, or a preset such as ``l0.Guardrails.recommended()``
            (needs ``l0-guardrails``); default from config, else none.
        drift: ``True``, or an ``l0.drift.DriftConfig``, to detect degrading output (needs
            ``l0-drift``); default from config, else off.
        check_intervals: Tokens between checks: ``{"guardrails": 10, "drift": 10,
            "checkpoint": 10}`` are the defaults (one check serves all three).
        continue_from_last_good_token: On a retry or fallback, keep the text received so far
            (validated by guardrails and drift first) and let the next attempt continue it,
            instead of starting over; nothing already delivered is withdrawn.
        build_continuation_prompt: ``(checkpoint) -> str``; its result reaches a one-argument
            factory as ``ctx.continuation_prompt``.
        remove_overlap: Cut the words a continuation repeats from the end of the checkpoint.
        max_overlap: Most characters held back at the seam to decide the overlap.
        record: Append this session (consumer events and observability events) to a JSON
            lines file, for ``l0.replay(path)``; written by a background thread.
        provider: The provider health key of ``stream`` (a str), or one key (or ``None``)
            per stream: ``[stream, *fallbacks]``. Streams without a key (and whose factory
            has no ``l0_provider`` attribute, as SDK wraps set) skip provider health.
        health: ``l0.Health(...)`` thresholds for this run, ``False`` to skip provider
            health; default from ``[tool.l0.health]``.
        on_start: ``(attempt, is_retry, is_fallback)`` — an attempt begins.
        on_complete: ``(state)`` — the session succeeded.
        on_error: ``(error, will_retry, will_fallback)`` — an attempt failed.
        on_event: ``(ObservabilityEvent)`` — every observability event.
        on_violation: ``(violation)`` — a guardrail violation.
        on_retry: ``(attempt, reason)`` — the same stream runs again as attempt ``attempt``.
        on_fallback: ``(index, reason)`` — moving to ``fallbacks[index - 1]``.
        on_resume: ``(checkpoint, token_count)`` — continuing from a checkpoint.
        on_checkpoint: ``(checkpoint, token_count)`` — a checkpoint was saved.
        on_timeout: ``(timeout_type, elapsed_ms)`` — ``"initial"``, ``"inter"`` or
            ``"total"`` fired.
        on_abort: ``(token_count, content_length)`` — the session was aborted or cancelled.
        on_drift: ``(types, confidence)`` — drift was detected.
        on_tool_call: ``(tool_name, tool_call_id, args)`` — a complete tool call.

    Callbacks are fire-and-forget: they run in order, off the stream's path (``async def`` on
    the loop, plain functions in a worker thread), receive copies, and an exception in one is
    logged without affecting the stream.

    Returns:
        A :class:`Result`; the stream starts when it is iterated or read.

    Raises:
        TypeError: an argument has the wrong type (the message names it).
        ValueError: an argument is out of range.
        ConfigError: the configuration file or environment is invalid.
    """
    factories: tuple[Callable[..., Any], ...] = (_validate_factory("stream", stream),)
    # Each check below costs one comparison when its argument has its default: l0.run is on
    # the path of every request (issue 11, "Session set-up").
    if fallbacks is not _NO_FALLBACKS:
        candidates: object = fallbacks
        if isinstance(candidates, str | bytes) or not isinstance(candidates, Sequence):
            raise TypeError(f"fallbacks={fallbacks!r}: expected a list of stream factories")
        factories += tuple(
            _validate_factory(f"fallbacks[{i}]", fallback) for i, fallback in enumerate(fallbacks)
        )
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry={retry!r}: expected l0.Retry(...) or None")
    if timeout is not None and not isinstance(timeout, Timeout):
        raise TypeError(f"timeout={timeout!r}: expected l0.Timeout(...) or None")
    if adapter is not None and not (
        hasattr(adapter, "name") and callable(getattr(adapter, "wrap", None))
    ):
        raise TypeError(f"adapter={adapter!r}: expected an object with name and wrap(stream)")
    if plugins is not None and not isinstance(plugins, L0PluginManager):
        raise TypeError(f"plugins={plugins!r}: expected an l0 plugin manager")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed={seed!r}: expected an int or None")
    intervals = None if check_intervals is None else _check_intervals(check_intervals)
    if continue_from_last_good_token is not False:
        _check_flag("continue_from_last_good_token", continue_from_last_good_token)
    if remove_overlap is not True:
        _check_flag("remove_overlap", remove_overlap)
    _check_callable("build_continuation_prompt", build_continuation_prompt)
    if max_overlap is not DEFAULT_MAX_OVERLAP and (not _is_int(max_overlap) or max_overlap < 2):
        raise ValueError(f"max_overlap={max_overlap!r}: expected an int >= 2")
    if record is not None and not isinstance(record, str | os.PathLike):
        raise TypeError(f"record={record!r}: expected a file path or None")
    if retry_on_length is not False:
        _check_flag("retry_on_length", retry_on_length)
    if session_id is not None and not isinstance(session_id, str):
        raise TypeError(f"session_id={session_id!r}: expected a str or None")
    if continue_on_length != 0 or type(continue_on_length) is not int or hedge_after is not None:
        _check_recovery(continue_on_length, hedge_after, timeout)
    callbacks: Mapping[str, Callable[..., Any]] = _NOTHING  # read only: shared when empty
    if not (
        on_start is None
        and on_complete is None
        and on_error is None
        and on_event is None
        and on_violation is None
        and on_retry is None
        and on_fallback is None
        and on_resume is None
        and on_checkpoint is None
        and on_timeout is None
        and on_abort is None
        and on_drift is None
        and on_tool_call is None
    ):
        given = {
            "on_start": on_start,
            "on_complete": on_complete,
            "on_error": on_error,
            "on_event": on_event,
            "on_violation": on_violation,
            "on_retry": on_retry,
            "on_fallback": on_fallback,
            "on_resume": on_resume,
            "on_checkpoint": on_checkpoint,
            "on_timeout": on_timeout,
            "on_abort": on_abort,
            "on_drift": on_drift,
            "on_tool_call": on_tool_call,
        }
        for name in CALLBACK_NAMES:
            _check_callable(name, given[name])
        callbacks = {name: value for name, value in given.items() if value is not None}
    settings = load_config()
    pm = plugins if plugins is not None else default_plugin_manager_for(settings)
    opts = _Options(
        factories,
        resolve_retry(retry, settings, pm),
        resolve_timeout(timeout, settings),
        adapter,
        pm,
        callbacks,
        _frozen_copy("context", context),
        _frozen_copy("meta", meta),
        session_id,
        seed,
        retry_on_length,
        continue_on_length,
        hedge_after,
        _resolve_guardrails(guardrails, pm, settings),
        _resolve_drift(drift, pm, settings),
        intervals,
        continue_from_last_good_token,
        build_continuation_prompt,
        remove_overlap,
        max_overlap,
        None if record is None else os.fspath(record),
        _resolve_health(health, provider, factories, pm, settings),
    )
    return Result(Session(opts))


def _check_intervals(value: Mapping[str, int] | None) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"check_intervals={value!r}: expected a dict like {{'guardrails': 10}}")
    out = {}
    for key, interval in value.items():
        if key not in DEFAULT_INTERVALS:
            raise ValueError(
                f"check_intervals[{key!r}]: unknown key; choose from "
                + ", ".join(repr(k) for k in DEFAULT_INTERVALS)
            )
        if not _is_int(interval) or interval < 1:
            raise ValueError(f"check_intervals[{key!r}]={interval!r}: expected an int >= 1")
        out[key] = interval
    return out


def _resolve_guardrails(value: Any, pm: L0PluginManager, settings: Settings) -> Any:
    # Plugins implementing l0_guardrail_check run even without configured rules.
    if value is None and "guardrails" not in settings.values and not hook_table(pm).guardrail_check:
        return None
    from l0.guardrails import resolve_guardrails

    return resolve_guardrails(value, pm, settings)


def _resolve_drift(value: Any, pm: L0PluginManager, settings: Settings) -> Any:
    if (value is None and "drift" not in settings.values) or value is False:
        return None
    from l0.drift import resolve_drift

    return resolve_drift(value, pm, settings)


_configured_health: tuple[Settings | None, Health] = (None, Health())


def _provider_keys(
    provider: str | Sequence[str | None] | None, factories: Sequence[Callable[..., Any]]
) -> tuple[str | None, ...]:
    given: list[object]
    candidate: object = provider
    if candidate is None or isinstance(candidate, str):
        given = [candidate]
    elif isinstance(candidate, Sequence) and len(candidate) == len(factories):
        given = list(candidate)
    else:
        raise TypeError(
            f"provider={provider!r}: expected a str (the key of `stream`), None, or a list of "
            f"{len(factories)} keys or None, one per stream (stream, *fallbacks)"
        )
    keys: list[str | None] = []
    for i, factory in enumerate(factories):
        key = given[i] if i < len(given) else None
        if key is None:
            key = getattr(factory, "l0_provider", None)
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise TypeError(f"provider[{i}]={key!r}: expected a non-empty str or None")
        keys.append(key if isinstance(key, str) else None)
    return tuple(keys)


def _resolve_health(
    health: Health | bool | None,
    provider: str | Sequence[str | None] | None,
    factories: Sequence[Callable[..., Any]],
    pm: L0PluginManager,
    settings: Settings,
) -> tuple[Any, Health, tuple[str | None, ...]] | None:
    if health is not None and not isinstance(health, Health | bool):
        raise TypeError(f"health={health!r}: expected l0.Health(...), True, False or None")
    if (
        health is None
        and provider is None
        and len(factories) == 1
        and getattr(factories[0], "l0_provider", None) is None
    ):
        return None  # the common call: one stream and no key, so no provider health
    keys = _provider_keys(provider, factories)
    if health is False or all(key is None for key in keys):
        return None
    if isinstance(health, Health):
        config = health
    else:
        global _configured_health  # noqa: PLW0603 - settings objects are cached; so is this
        cached_for, config = _configured_health
        if cached_for is not settings:
            config = Health.from_settings(settings)
            _configured_health = (settings, config)
    if not config.enabled:
        return None
    return health_service(pm, settings), config, keys


_NO_RETRY = Retry(attempts=0, max_retries=0)


class RunOptions(TypedDict, total=False):
    """The keyword arguments of :func:`run` besides ``stream``, for ``l0.wrap(target, **...)``.

    Typed so that a misspelt option (``retyr=``) fails type checking as well as at run time.
    """

    fallbacks: Sequence[Callable[..., Any]]
    retry: Retry | None
    timeout: Timeout | None
    adapter: Adapter | None
    plugins: L0PluginManager | None
    context: Mapping[str, Any] | None
    meta: Mapping[str, Any] | None
    session_id: str | None
    seed: int | None
    retry_on_length: bool
    continue_on_length: int
    hedge_after: float | None
    guardrails: Any
    drift: Any
    check_intervals: Mapping[str, int] | None
    continue_from_last_good_token: bool
    build_continuation_prompt: Callable[[str], str] | None
    remove_overlap: bool
    max_overlap: int
    record: str | os.PathLike[str] | None
    provider: str | Sequence[str | None] | None
    health: Health | bool | None
    on_start: Callable[..., Any] | None
    on_complete: Callable[..., Any] | None
    on_error: Callable[..., Any] | None
    on_event: Callable[..., Any] | None
    on_violation: Callable[..., Any] | None
    on_retry: Callable[..., Any] | None
    on_fallback: Callable[..., Any] | None
    on_resume: Callable[..., Any] | None
    on_checkpoint: Callable[..., Any] | None
    on_timeout: Callable[..., Any] | None
    on_abort: Callable[..., Any] | None
    on_drift: Callable[..., Any] | None
    on_tool_call: Callable[..., Any] | None


class ClientOptions(RunOptions, total=False):
    """Options of ``l0.wrap(client, ...)``: :func:`run`'s, fallback models, continuation.

    ``transport`` (``"native"`` or ``"sdk"``) chooses how ``l0-openai`` reads the streams.
    """

    fallback_models: Sequence[str]
    transport: Literal["native", "sdk"]
    continuation_strategies: Sequence[str]


@overload
def wrap(target: AsyncIterable[Any], **options: Unpack[RunOptions]) -> Result: ...


@overload
def wrap(target: AsyncOpenAI, **options: Unpack[ClientOptions]) -> L0AsyncOpenAI: ...


@overload
def wrap(target: object, **options: Unpack[ClientOptions]) -> Any: ...


def wrap(target: Any, **options: Any) -> Any:
    """Wrap a single stream, or an SDK client, with L0.

    * An async iterator (a stream already created): returns a :class:`Result` with timeouts
      and zero-output detection but no retries — a consumed stream cannot be replayed.
      ``options`` are those of :func:`run` (``fallbacks`` are still allowed).
    * An SDK client (e.g. ``openai.AsyncOpenAI()``): returns a wrapped client whose streaming
      calls return :class:`Result` objects with full retry support; this needs the adapter
      distribution for that SDK (``pip install l0-openai``).

    Raises:
        TypeError: ``target`` is neither a stream nor a client any installed plugin can wrap.
    """
    if hasattr(type(target), "__aiter__"):
        consumed = False

        def once() -> Any:
            nonlocal consumed
            if consumed:
                raise RuntimeError("l0.wrap(stream) cannot retry a stream that was consumed")
            consumed = True
            return target

        options.setdefault("retry", _NO_RETRY)
        return run(once, **options)
    plugins = options.get("plugins")
    pm = plugins if isinstance(plugins, L0PluginManager) else default_plugin_manager()
    # A plugin that refuses a client on purpose (the sync openai.OpenAI) raises an L0Error,
    # which the hook facade passes through as is.
    wrapped = pm.hooks.wrap_client(target, dict(options))
    if wrapped is not None:
        return wrapped
    if asyncio.iscoroutine(target):
        target.close()
        raise TypeError(
            "l0.wrap(coroutine): await the call first (l0.wrap(await client.create(...))), or "
            "use l0.run(stream=lambda: client.create(...)) to get retries"
        )
    from l0.adapters import ADAPTER_DISTRIBUTIONS, install_hint

    if type(target).__module__.partition(".")[0] in ADAPTER_DISTRIBUTIONS:
        advice = install_hint(target, pm)
    else:
        advice = "for any stream factory use l0.run(stream=...)"
    raise TypeError(
        f"l0.wrap({type(target).__module__}.{type(target).__qualname__}): not an async stream, "
        f"and no installed plugin wraps this client; {advice}."
    )
