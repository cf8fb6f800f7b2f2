"""``l0.wrap(litellm, **options)``: ``acompletion(..., stream=True)`` returns an ``l0.Result``.

The wrapper re-issues the same ``litellm.acompletion`` request for every retry and fallback.
Every other attribute (``completion``, ``aembedding``, ``model_cost`` …) is LiteLLM's own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from types import ModuleType
from typing import Any, Literal, overload

import l0
from l0.adapters import check_client_options
from l0.types import AttemptContext

__all__ = ["L0LiteLLM", "wrap_litellm"]

_L0_KEYS = frozenset({"fallback_models"})


def _check_options(options: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    return check_client_options(options, where, _L0_KEYS)


class L0LiteLLM:
    """The ``litellm`` module with ``acompletion(..., stream=True)`` running through L0.

    Args:
        module: The ``litellm`` module.
        options: Keyword arguments of ``l0.run`` applied to every streaming call, plus
            ``fallback_models`` (model names tried in order with the same request).

    LiteLLM's own retries are turned off for these requests (``num_retries=0``,
    ``max_retries=0`` unless given), so L0's ``Retry`` policy is the only one.
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
        params = {"num_retries": 0, "max_retries": 0, **kwargs}

        def factory_for(request: dict[str, Any]) -> Callable[[AttemptContext], Any]:
            def factory(ctx: AttemptContext) -> Any:
                if ctx.continuation_prompt:
                    messages = [
                        *(request.get("messages") or ()),
                        {"role": "user", "content": ctx.continuation_prompt},
                    ]
                    return acompletion(**{**request, "messages": messages})
                return acompletion(**request)

            return factory

        primary = factory_for(params)
        model_fallbacks = [factory_for({**params, "model": model}) for model in models]
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
