"""``l0.wrap(litellm, **options)``: ``acompletion(..., stream=True)`` returns an ``l0.Result``.

The wrapper re-issues the same ``litellm.acompletion`` request for every retry and fallback,
and continues a kept answer with the strategies of :mod:`l0.continuation_strategies`, chosen
per provider. Every other attribute (``completion``, ``aembedding``, ``model_cost`` …) is
LiteLLM's own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from types import ModuleType
from typing import Any, Final, Literal, overload

import l0
from l0.adapters import check_client_options
from l0.continuation_strategies import (
    CONTINUATION_STRATEGIES,
    check_strategies,
    continuation_request,
    resolve_strategies,
    send_continuation,
    with_user_turn,
)
from l0.events import REQUEST_META_KEY, wants_content
from l0.health import provider_key
from l0.types import AttemptContext

__all__ = ["USER_TURN_FIRST", "L0LiteLLM", "default_strategies", "wrap_litellm"]

_L0_KEYS = frozenset({"fallback_models", "continuation_strategies"})

USER_TURN_FIRST: Final = frozenset({"openai", "azure", "gemini", "vertex_ai", "vertex_ai_beta"})
"""LiteLLM providers whose models answer a final assistant message anew (or may not accept
it) rather than extending it: their continuations start with the user turn."""


def _check_options(options: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    checked = check_client_options(options, where, _L0_KEYS)
    if "continuation_strategies" in checked:
        check_strategies(checked["continuation_strategies"], where)
    return checked


def default_strategies(provider: str, api_base: str | None = None) -> tuple[str, ...]:
    """The strategies tried, in order, for a LiteLLM provider when none are configured.

    ``prefill, user, restart`` for providers that extend a final assistant message
    (Anthropic, DeepSeek, Mistral, vLLM and other OpenAI-compatible servers …); a 400
    rejecting the prefill moves to the user turn, remembered per provider and model.
    ``user, restart`` for the providers in :data:`USER_TURN_FIRST` (OpenAI's own API, Azure
    OpenAI, Gemini and Vertex AI); ``openai`` with an ``api_base`` other than
    ``api.openai.com`` is an OpenAI-compatible server and starts with the prefill.

    Args:
        provider: LiteLLM's provider name (``"anthropic"``, ``"openai"`` …).
        api_base: The request's ``api_base``, if any.
    """
    if provider == "openai" and api_base and "api.openai.com" not in api_base:
        return CONTINUATION_STRATEGIES
    if provider in USER_TURN_FIRST:
        return ("user", "restart")
    return CONTINUATION_STRATEGIES


_routes: dict[tuple[str, object, object], tuple[str, str, str | None]] = {}
"""``_provider_of`` answers by (model, custom_llm_provider, api_base): LiteLLM's routing costs
~15 µs a call, and a process asks about the same few models again and again."""


def _provider_of(module: ModuleType, request: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """``(provider, model, api_base)`` of a request, as LiteLLM routes it."""
    model = str(request.get("model", ""))
    api_base = request.get("api_base") or request.get("base_url")
    custom = request.get("custom_llm_provider")
    key = (model, custom, api_base)
    try:
        return _routes[key]
    except (KeyError, TypeError):  # TypeError: an unhashable value, routed every time
        pass
    try:
        found = module.get_llm_provider(model=model, custom_llm_provider=custom, api_base=api_base)
        name, provider = str(found[0]), str(found[1])
    except Exception:
        # An unknown model: LiteLLM itself raises on the request, with its own message.
        provider, _, name = model.rpartition("/")
    route = (provider, name, str(api_base) if api_base else None)
    try:
        if len(_routes) >= 256:
            _routes.clear()
        _routes[key] = route
    except TypeError:
        pass
    return route


def _health_key(provider: str, model: str, api_base: str | None) -> str:
    """The provider-health key of a stream: the server's URL when given, else the provider.

    With an ``api_base`` the key is the one an OpenAI-wrapped client of the same server uses,
    so both wrappers share one circuit and one ``Retry-After`` per server and model.
    """
    return provider_key(api_base or provider, model)


class L0LiteLLM:
    """The ``litellm`` module with ``acompletion(..., stream=True)`` running through L0.

    Args:
        module: The ``litellm`` module.
        options: Keyword arguments of ``l0.run`` applied to every streaming call, plus
            ``fallback_models`` (model names tried in order with the same request) and
            ``continuation_strategies`` (how a continuation attempt asks the model to go
            on; default: :func:`default_strategies` of each request's provider).

    LiteLLM's own retries are turned off for these requests (``num_retries=0``,
    ``max_retries=0`` unless given), so L0's ``Retry`` policy is the only one.

    Raises:
        TypeError: An option is unknown, or ``continuation_strategies`` is not a list.
        ValueError: ``continuation_strategies`` is empty or names an unknown strategy.
    """

    def __init__(self, module: ModuleType, options: Mapping[str, Any] | None = None) -> None:
        self._l0_module = module
        self._l0_options = _check_options(options, "l0.wrap options")

    @property
    def l0_options(self) -> dict[str, Any]:
        """A copy of the ``l0.run`` options applied to every streaming call."""
        return dict(self._l0_options)

    @property
    def l0_module(self) -> ModuleType:
        """The wrapped ``litellm`` module."""
        return self._l0_module

    @overload
    def acompletion(
        self, *, stream: Literal[True], l0_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> l0.Result: ...

    @overload
    def acompletion(
        self, *, stream: Literal[False] | None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]: ...

    def acompletion(self, **kwargs: Any) -> Any:
        """Like ``litellm.acompletion``; with ``stream=True`` it returns an :class:`l0.Result`.

        Raises:
            TypeError: ``l0_options`` on a non-streaming call, or an unknown option.
        """
        per_call = kwargs.pop("l0_options", None)
        acompletion = self._l0_module.acompletion
        if kwargs.get("stream") is not True:
            if per_call is not None:
                raise TypeError("l0_options applies to streaming calls (stream=True) only")
            return acompletion(**kwargs)
        options = {**self._l0_options, **_check_options(per_call, "l0_options")}
        models = list(options.pop("fallback_models", None) or ())
        fallbacks = list(options.pop("fallbacks", None) or ())
        explicit = options.pop("continuation_strategies", None)
        params = {"num_retries": 0, "max_retries": 0, **kwargs}
        module = self._l0_module

        routes: list[tuple[str, str]] = []  # (provider, model) of each stream, for exporters

        def factory_for(request: dict[str, Any]) -> Callable[[AttemptContext], Any]:
            provider, model, api_base = _provider_of(module, request)
            routes.append((provider, model))
            strategies = resolve_strategies(explicit, default_strategies(provider, api_base))
            # Remembered per provider and server: two OpenAI-compatible servers behind the
            # same provider name may accept different things.
            where = (provider, api_base or "")

            def factory(ctx: AttemptContext) -> Any:
                if ctx.continuation_prompt:
                    return acompletion(**with_user_turn(request, ctx.continuation_prompt))
                if ctx.checkpoint:
                    kept = ctx.checkpoint
                    return send_continuation(
                        lambda strategy: acompletion(
                            **continuation_request(request, strategy, kept)
                        ),
                        ctx,
                        where,
                        model,
                        strategies,
                    )
                return acompletion(**request)

            factory.l0_provider = _health_key(provider, model, api_base)  # type: ignore[attr-defined]
            return factory

        primary = factory_for(params)
        model_fallbacks = [factory_for({**params, "model": model}) for model in models]
        # Exporters name spans and label metrics with the model of each stream, and record
        # the input messages when one captures content (#9).
        described: dict[str, Any] = {
            "provider": routes[0][0],
            "operation": "chat",
            "models": [model for _, model in routes],
        }
        if wants_content(options.get("plugins")) and "messages" in kwargs:
            described["messages"] = kwargs["messages"]
        options["meta"] = {**(options.get("meta") or {}), REQUEST_META_KEY: described}
        return l0.run(primary, fallbacks=[*model_fallbacks, *fallbacks], **options)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_l0"):
            raise AttributeError(name)
        return getattr(self._l0_module, name)

    def __repr__(self) -> str:
        return f"<L0LiteLLM wrapping {self._l0_module!r}>"


def wrap_litellm(target: Any, options: Mapping[str, Any]) -> L0LiteLLM | None:
    """Wrap the ``litellm`` module (or re-wrap an :class:`L0LiteLLM`); ``None`` otherwise."""
    if isinstance(target, L0LiteLLM):
        return L0LiteLLM(target.l0_module, {**target.l0_options, **options})
    if isinstance(target, ModuleType) and target.__name__ == "litellm":
        return L0LiteLLM(target, options)
    return None
