"""``l0.wrap(AsyncOpenAI(...), **options)``: a client whose streaming calls return ``l0.Result``.

Only two calls change: ``chat.completions.create(..., stream=True)`` and
``responses.create(..., stream=True)`` return an :class:`l0.Result` that re-issues the request
on every retry. Everything else (non-streaming calls, ``embeddings``, ``models``, ``beta`` …) is
the wrapped client's own attribute, unchanged.

The SDK's own streaming helpers — ``chat.completions.stream()``, ``responses.stream()`` and
``with_raw_response.create(stream=True)`` — bypass L0 (no retries, fallbacks, timeouts or
guardrails); using one through a wrapped client gives a :class:`BypassWarning`, once per helper.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import l0
from l0.adapters import check_client_options
from l0.config import CONTINUATION_STRATEGIES as _KNOWN_STRATEGIES
from l0.continuation_strategies import (
    DEFAULT_USER_TURN,
    check_strategies,
    continuation_request,
    resolve_strategies,
    send_continuation,
    with_user_turn,
)
from l0.errors import UnsupportedClientError
from l0.events import REQUEST_META_KEY, wants_content
from l0.health import provider_key
from l0.types import AttemptContext
from l0_openai.transport import check_transport, with_transport

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

__all__ = [
    "CONTINUATION_STRATEGIES",
    "DEFAULT_USER_TURN",
    "BypassWarning",
    "L0AsyncOpenAI",
    "default_strategies",
    "wrap_client",
]

_T = TypeVar("_T")


class BypassWarning(UserWarning):
    """An SDK call through a wrapped client that L0 does not cover (no retries, no timeouts)."""


_warned: set[str] = set()


def _warn_bypass(helper: str, instead: str) -> None:
    if helper in _warned:
        return
    _warned.add(helper)
    warnings.warn(
        f"{helper} is the SDK's own streaming helper and bypasses L0: no retries, fallbacks, "
        f"timeouts or guardrails. Use {instead}, which returns an l0.Result.",
        BypassWarning,
        stacklevel=3,
    )


class _RawResponses:
    """``with_raw_response`` of a wrapped resource: warns when it streams, then passes through."""

    __slots__ = ("_label", "_raw")

    def __init__(self, raw: Any, label: str) -> None:
        self._raw = raw
        self._label = label

    def create(self, **kwargs: Any) -> Any:
        """The SDK's ``with_raw_response.create``; a streaming call warns (once)."""
        if kwargs.get("stream") is True:
            _warn_bypass(
                f"client.{self._label}.with_raw_response.create(stream=True)",
                f"client.{self._label}.create(..., stream=True)",
            )
        return self._raw.create(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


_L0_KEYS = frozenset({"fallback_models", "transport", "continuation_strategies"})
"""Options the wrapper understands besides those of ``l0.run``."""


def _check_options(options: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    checked = check_client_options(options, where, _L0_KEYS)
    if "continuation_strategies" in checked:
        check_strategies(checked["continuation_strategies"], where)
    check_transport(checked.get("transport"), where)
    return checked


# --- continuation strategies ---------------------------------------------------------------------

CONTINUATION_STRATEGIES = _KNOWN_STRATEGIES
"""How a wrapped client asks the next attempt to continue the kept text:

* ``prefill``: the kept text as a final assistant message, which the model extends;
* ``user``: the kept text quoted in a user message asking to continue exactly where it stops;
* ``restart``: the original request; L0 drops the repeated beginning (or withdraws it in-band).

The machinery is the kernel's, :mod:`l0.continuation_strategies`.
"""


def default_strategies(base_url: str) -> tuple[str, ...]:
    """The strategies tried, in order, for a provider when ``continuation_strategies`` is unset.

    OpenAI's own API accepts a final assistant message but answers it anew rather than
    extending it, so it starts with the user turn; other OpenAI-compatible servers (vLLM,
    DeepSeek, Mistral, Anthropic's compatibility layer …) start with the prefill, and a 400
    rejecting it moves to the user turn.
    """
    if "api.openai.com" in base_url:
        return ("user", "restart")
    return CONTINUATION_STRATEGIES


class _StreamingCall(Generic[_T]):
    """One resource's ``create``: streams through ``l0.run``, everything else passes through.

    ``_T`` is what the SDK's non-streaming ``create`` resolves to (``ChatCompletion``,
    ``Response``), for the typed overloads.
    """

    __slots__ = ("_messages_key", "_owner", "_path")

    def __init__(self, owner: L0AsyncOpenAI, path: tuple[str, ...], messages_key: str) -> None:
        self._owner = owner
        self._path = path
        self._messages_key = messages_key

    def _resource(self, client: Any) -> Any:
        for name in self._path:
            client = getattr(client, name)
        return client

    if not TYPE_CHECKING:
        # Hidden from type checkers, so that `completions.creat(...)` fails mypy; the SDK's
        # other methods are declared below.
        def __getattr__(self, name: str) -> Any:
            resource = self._resource(self._owner.l0_client)
            label = ".".join(self._path)
            if name == "stream":
                _warn_bypass(f"client.{label}.stream()", f"client.{label}.create(..., stream=True)")
            elif name == "with_raw_response":
                return _RawResponses(resource.with_raw_response, label)
            elif name == "with_streaming_response":
                _warn_bypass(
                    f"client.{label}.with_streaming_response",
                    f"client.{label}.create(..., stream=True)",
                )
            return getattr(resource, name)

    @overload
    def create(
        self, *, stream: Literal[True], l0_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> l0.Result: ...

    @overload
    def create(
        self, *, stream: Literal[False] | None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, _T]: ...

    @overload
    def create(
        self, *, stream: bool, l0_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> l0.Result | Coroutine[Any, Any, _T]: ...

    def create(self, **kwargs: Any) -> Any:
        """Like the SDK's ``create``; with ``stream=True`` it returns an :class:`l0.Result`.

        ``l0_options={...}`` (streaming calls only) overrides the options given to
        ``l0.wrap`` for this call; ``fallback_models=[...]`` repeats the same request with
        each of those models once the primary model's retries are used up.

        Raises:
            TypeError: ``l0_options`` on a non-streaming call, or an unknown option.
        """
        per_call = kwargs.pop("l0_options", None)
        if kwargs.get("stream") is not True:
            if per_call is not None:
                raise TypeError("l0_options applies to streaming calls (stream=True) only")
            return self._resource(self._owner.l0_client).create(**kwargs)
        options = {**self._owner.l0_options, **_check_options(per_call, "l0_options")}
        models = list(options.pop("fallback_models", None) or ())
        with_transport(options)
        fallbacks = list(options.pop("fallbacks", None) or ())
        # The SDK's own retries are off for these requests (see L0AsyncOpenAI): L0 owns them.
        create = self._resource(self._owner.l0_streaming_client).create
        key = self._messages_key

        base_url = str(self._owner.l0_client.base_url)
        strategies = resolve_strategies(
            options.pop("continuation_strategies", None), default_strategies(base_url)
        )

        def factory_for(params: dict[str, Any]) -> Callable[[AttemptContext], Any]:
            model = str(params.get("model", ""))

            def factory(ctx: AttemptContext) -> Any:
                if ctx.continuation_prompt:
                    return create(**with_user_turn(params, ctx.continuation_prompt, key))
                if ctx.checkpoint:
                    kept = ctx.checkpoint
                    return send_continuation(
                        lambda strategy: create(
                            **continuation_request(params, strategy, kept, key)
                        ),
                        ctx,
                        base_url,
                        model,
                        strategies,
                    )
                return create(**params)

            # Provider health (l0.health) keys this stream by base URL and model.
            factory.l0_provider = provider_key(  # type: ignore[attr-defined]
                str(self._owner.l0_client.base_url), str(params.get("model", ""))
            )
            return factory

        primary = factory_for(dict(kwargs))
        model_fallbacks = [factory_for({**kwargs, "model": model}) for model in models]
        # Exporters name spans and label metrics with the model of each stream (#9).
        request = {
            "provider": "openai",
            "operation": "chat",
            "models": [kwargs.get("model"), *models],
        }
        if wants_content(options.get("plugins")) and key in kwargs:
            request["messages"] = kwargs[key]
        options["meta"] = {**(options.get("meta") or {}), REQUEST_META_KEY: request}
        return l0.run(primary, fallbacks=[*model_fallbacks, *fallbacks], **options)

    if TYPE_CHECKING:
        # The SDK methods reachable through the wrapper, unchanged (typed loosely).
        parse: Any
        retrieve: Any
        update: Any
        delete: Any
        cancel: Any
        messages: Any
        input_items: Any
        input_tokens: Any
        stream: Any
        with_raw_response: Any
        with_streaming_response: Any
        list: Any


class _Namespace:
    """``client.chat``: ``completions`` is wrapped, other attributes pass through."""

    __slots__ = ("_owner", "_path", "completions")

    def __init__(self, owner: L0AsyncOpenAI, path: tuple[str, ...]) -> None:
        self._owner = owner
        self._path = path
        self.completions: _StreamingCall[ChatCompletion] = _StreamingCall(
            owner, (*path, "completions"), "messages"
        )

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            resource = self._owner.l0_client
            for part in self._path:
                resource = getattr(resource, part)
            return getattr(resource, name)

    if TYPE_CHECKING:
        with_raw_response: Any
        with_streaming_response: Any


class L0AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` client whose streaming calls run through L0.

    ``chat.completions.create(..., stream=True)`` and ``responses.create(..., stream=True)``
    return an :class:`l0.Result` built with ``l0.run`` and ``options``; the request is issued
    again for every retry and fallback. Every other attribute is the wrapped client's.

    Retries: these streaming requests are sent through ``client.with_options(max_retries=0)``,
    so L0's ``Retry`` policy is the only one and retries never multiply. Other calls keep the
    client's own ``max_retries``.

    Args:
        client: The ``openai.AsyncOpenAI`` (or ``AsyncAzureOpenAI``) client to wrap.
        options: Keyword arguments of ``l0.run`` applied to every streaming call, plus
            ``fallback_models`` (model names tried in order with the same request).

    Raises:
        TypeError: ``client`` is not an async OpenAI client, or an option is unknown.
    """

    def __init__(self, client: Any, options: Mapping[str, Any] | None = None) -> None:
        import openai

        if not isinstance(client, openai.AsyncOpenAI):
            raise TypeError(
                f"L0AsyncOpenAI({type(client).__qualname__}): expected openai.AsyncOpenAI"
            )
        self._l0_client = client
        self._l0_options = _check_options(options, "l0.wrap options")
        self._l0_streaming = client.with_options(max_retries=0)
        self.chat = _Namespace(self, ("chat",))
        self.responses: _StreamingCall[Response] = _StreamingCall(self, ("responses",), "input")

    @property
    def l0_client(self) -> Any:
        """The wrapped ``openai.AsyncOpenAI`` client."""
        return self._l0_client

    @property
    def l0_streaming_client(self) -> Any:
        """The copy of the client (``max_retries=0``) that streaming calls go through."""
        return self._l0_streaming

    @property
    def l0_options(self) -> dict[str, Any]:
        """A copy of the ``l0.run`` options applied to every streaming call."""
        return dict(self._l0_options)

    def with_options(self, **kwargs: Any) -> L0AsyncOpenAI:
        """The SDK's ``with_options``/``copy``, wrapped again with the same L0 options."""
        return L0AsyncOpenAI(self._l0_client.with_options(**kwargs), self._l0_options)

    copy = with_options

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_l0"):  # not set yet (a failed __init__, copy.copy): no recursion
            raise AttributeError(name)
        return getattr(self._l0_client, name)

    def __repr__(self) -> str:
        return f"<L0AsyncOpenAI wrapping {self._l0_client!r}>"

    async def __aenter__(self) -> L0AsyncOpenAI:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._l0_client.close()


def wrap_client(client: Any, options: Mapping[str, Any]) -> L0AsyncOpenAI | None:
    """Wrap ``client`` if it is an OpenAI client; ``None`` for anything else.

    An :class:`L0AsyncOpenAI` is wrapped again around the same client, with ``options``
    added to its own.

    Raises:
        UnsupportedClientError: ``client`` is the synchronous ``openai.OpenAI`` (a
            ``TypeError``).
    """
    if isinstance(client, L0AsyncOpenAI):
        return L0AsyncOpenAI(client.l0_client, {**client.l0_options, **options})
    openai = sys.modules.get("openai")
    if openai is None:
        return None
    if isinstance(client, openai.AsyncOpenAI):
        return L0AsyncOpenAI(client, options)
    if isinstance(client, openai.OpenAI):
        raise UnsupportedClientError(
            f"l0.wrap({type(client).__module__}.{type(client).__qualname__}): L0 streams are "
            "async; create the client with openai.AsyncOpenAI(...) (same arguments) and wrap "
            "that"
        )
    return None
