"""Structured output: an answer parsed as JSON and validated against a pydantic schema.

``await l0.structured(Model, stream=factory)`` runs the stream through :func:`l0.run` with one
extra final-only guardrail rule. The rule finds the JSON value in the answer (inside a markdown
fence, or between prose), auto-corrects the common defects of model output, and validates it.
An answer that still fails is a *content* violation, so the session retries it within
``Retry.attempts`` like any other guardrail ``error``; when no attempt is left,
:class:`~l0.errors.StructuredOutputError` says why the last answer was rejected.

Auto-correction is done by well-kept parsers rather than ad hoc rewriting:

* a truncated answer (unclosed brackets, a value cut in the middle) is completed by
  pydantic_core's partial JSON parser, which keeps every complete item and drops the cut one;
* trailing commas are removed (a structural scan that respects strings);
* anything else, e.g. single-quoted or unquoted keys, is left to ``json-repair`` when it is
  installed (``pip install 'l0[structured]'``); without it such answers are rejected.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar, get_origin, overload

import pydantic
import pydantic_core

from l0._api import Result, run
from l0._structured_json import JSONParseError, ParsedJSON, _plural, extract_json, parse_json
from l0.errors import GuardrailError, RetryExhaustedError, StructuredOutputError
from l0.guardrails import GuardrailContext, GuardrailEngine, GuardrailRule, resolve_guardrails
from l0.plugins import L0PluginManager, default_plugin_manager
from l0.types import Event, GuardrailViolation, State

__all__ = [
    "RULE_NAME",
    "JSONParseError",
    "ParsedJSON",
    "StructuredResult",
    "StructuredStream",
    "extract_json",
    "parse_json",
    "structured",
    "structured_stream",
]

T = TypeVar("T")

RULE_NAME: Final = "structured_output"
"""Name of the guardrail rule that validates structured answers (in violations and events)."""

_ERRORS_IN_MESSAGE: Final = 3


# --- schemas ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _cached_adapter(schema: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(schema)


def _adapter(schema: Any) -> pydantic.TypeAdapter[Any]:
    """A TypeAdapter for ``schema``, or a ``TypeError`` naming it."""
    if not (isinstance(schema, type) or get_origin(schema) is not None):
        what = (
            f"an instance of {type(schema).__name__}"
            if isinstance(schema, pydantic.BaseModel)
            else repr(schema)
        )
        raise TypeError(
            f"schema={what}: expected a type to validate against, such as a pydantic "
            "BaseModel subclass, a dataclass, a TypedDict or list[Model]"
        )
    try:
        try:
            return _cached_adapter(schema)
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            return pydantic.TypeAdapter(schema)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise TypeError(f"schema={schema!r}: pydantic cannot validate this type: {exc}") from exc


def _schema_name(schema: object) -> str:
    return getattr(schema, "__name__", None) or repr(schema)


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StructuredResult(Generic[T]):
    """A validated structured answer.

    Attributes:
        data: The validated value (an instance of the schema).
        raw: The text the model sent, as received.
        corrections: What auto-correction changed before validation (empty if nothing).
        state: The session state (attempts, retries, violations, token counts, ...).
        result: The underlying :class:`l0.Result`, for its errors, events and raw chunks.
    """

    data: T
    raw: str
    corrections: list[str]
    state: State
    result: Result

    @property
    def corrected(self) -> bool:
        """True when auto-correction changed the JSON before it validated."""
        return bool(self.corrections)


@dataclass(slots=True)
class _Outcome:
    """What the rule found in the latest answer (per ``structured`` call)."""

    text: str | None = None
    ok: bool = False
    data: Any = None
    corrections: tuple[str, ...] = ()
    errors: list[Any] = field(default_factory=list)
    message: str = ""


class _Validator:
    """Parses and validates an answer, remembering the outcome of the latest one."""

    __slots__ = ("accept_truncated", "adapter", "auto_correct", "last", "schema_name")

    def __init__(
        self,
        adapter: pydantic.TypeAdapter[Any],
        schema_name: str,
        auto_correct: bool,
        accept_truncated: bool = False,
    ):
        self.adapter = adapter
        self.schema_name = schema_name
        self.auto_correct = auto_correct
        self.accept_truncated = accept_truncated
        self.last = _Outcome()

    def validate(self, text: str) -> _Outcome:
        if self.last.text == text:
            return self.last
        outcome = _Outcome(text=text)
        try:
            parsed = parse_json(text, auto_correct=self.auto_correct)
        except JSONParseError as exc:
            outcome.message = str(exc)
            outcome.errors = [
                {"type": "json_invalid", "loc": (), "msg": str(exc), "input": text[:200]}
            ]
        else:
            outcome.corrections = parsed.corrections
            try:
                outcome.data = self.adapter.validate_json(parsed.json)
                outcome.ok = True
            except pydantic.ValidationError as exc:
                errors = exc.errors(include_url=False)
                outcome.errors = list(errors)
                shown = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                    for e in errors[:_ERRORS_IN_MESSAGE]
                )
                more = len(errors) - _ERRORS_IN_MESSAGE
                outcome.message = (
                    f"{_plural(len(errors), 'validation error')} for {self.schema_name}: "
                    f"{shown}{f'; and {more} more' if more > 0 else ''}"
                )
        self.last = outcome
        return outcome

    def rule(self) -> GuardrailRule:
        def check(context: GuardrailContext) -> list[GuardrailViolation]:
            if not context.completed:
                return []
            state = context.state
            if not self.accept_truncated and state is not None and state.finish_reason == "length":
                # A cut answer may validate (a number cut short, an optional field missing)
                # and still be wrong: a content failure, retried (issue 8 item 3).
                return [
                    rule.violation(
                        "the answer was cut at the token limit (finish_reason='length'); "
                        "pass accept_truncated=True to accept what arrived"
                    )
                ]
            outcome = self.validate(context.content)
            if outcome.ok:
                return []
            return [rule.violation(outcome.message)]

        rule = GuardrailRule(
            RULE_NAME,
            check=check,
            streaming=False,
            severity="error",
            description=f"the answer is JSON valid against {self.schema_name}",
        )
        return rule


def _with_rule(options: dict[str, Any], rule: GuardrailRule) -> GuardrailEngine:
    """The session's guardrails (argument or config) plus ``rule``."""
    plugins = options.get("plugins")
    if plugins is not None and not isinstance(plugins, L0PluginManager):
        raise TypeError(f"plugins={plugins!r}: expected an l0 plugin manager")
    pm = plugins if plugins is not None else default_plugin_manager()
    from l0.config import load_config

    given = options.get("guardrails")
    engine = resolve_guardrails(given, pm, load_config())
    if engine is None:
        return GuardrailEngine([rule])
    return engine.with_rules(rule)


def _prepare(
    schema: object,
    stream: Callable[..., Any],
    auto_correct: object,
    options: dict[str, Any],
    accept_truncated: object = False,
) -> tuple[Result, _Validator]:
    adapter = _adapter(schema)
    if not isinstance(auto_correct, bool):
        raise TypeError(f"auto_correct={auto_correct!r}: expected True or False")
    if not isinstance(accept_truncated, bool):
        raise TypeError(f"accept_truncated={accept_truncated!r}: expected True or False")
    if options.get("continue_from_last_good_token") is True:
        raise ValueError(
            "continue_from_last_good_token=True cannot be used with structured output: a "
            "continuation glues the next answer onto a cut JSON prefix, and the model rarely "
            "resumes the syntax exactly; structured output retries from scratch instead"
        )
    validator = _Validator(adapter, _schema_name(schema), auto_correct, accept_truncated)
    options["guardrails"] = _with_rule(options, validator.rule())
    return run(stream, **options), validator


def _finish(result: Result, validator: _Validator, text: str) -> StructuredResult[Any]:
    outcome = validator.validate(text)
    if not outcome.ok:
        # Only when the rule's violation was downgraded (config severity "warning"): the
        # session accepted an answer that structured output cannot.
        raise _error(outcome, attempts=result.state.attempt)
    return StructuredResult(
        data=outcome.data,
        raw=text,
        corrections=list(outcome.corrections),
        state=result.state,
        result=result,
    )


def _error(outcome: _Outcome, *, attempts: int) -> StructuredOutputError:
    return StructuredOutputError(
        f"no valid structured output after {_plural(attempts, 'attempt')}: {outcome.message}",
        raw=outcome.text or "",
        validation_errors=outcome.errors,
        corrections=outcome.corrections,
        attempts=attempts,
    )


def _translate(exc: RetryExhaustedError, validator: _Validator) -> StructuredOutputError | None:
    """A StructuredOutputError when the last attempt failed our rule, else ``None``."""
    last = exc.last_error
    if not isinstance(last, GuardrailError):
        return None
    if not any(getattr(v, "rule", None) == RULE_NAME for v in last.violations):
        return None
    return _error(validator.last, attempts=len(exc.errors))


@overload
async def structured(
    schema: type[T],
    stream: Callable[..., Any],
    *,
    auto_correct: bool = True,
    accept_truncated: bool = False,
    **run_options: Any,
) -> StructuredResult[T]: ...


@overload
async def structured(
    schema: Any,
    stream: Callable[..., Any],
    *,
    auto_correct: bool = True,
    accept_truncated: bool = False,
    **run_options: Any,
) -> StructuredResult[Any]: ...


async def structured(
    schema: Any,
    stream: Callable[..., Any],
    *,
    auto_correct: bool = True,
    accept_truncated: bool = False,
    **run_options: Any,
) -> StructuredResult[Any]:
    """Run ``stream`` and return its answer parsed and validated against ``schema``.

    Args:
        schema: What the answer must be: a pydantic ``BaseModel`` subclass, or any type a
            ``pydantic.TypeAdapter`` accepts (a dataclass, a ``TypedDict``, ``list[Model]``,
            ``dict[str, int]`` ...).
        stream: The stream factory, as for :func:`l0.run`.
        auto_correct: Fix common JSON defects (trailing commas, a truncated end, and with
            ``l0[structured]`` what json-repair fixes); ``False`` accepts only valid JSON.
            Fences and prose around the JSON are skipped either way.
        accept_truncated: Accept an answer the provider cut at the token limit
            (``finish_reason="length"``), its unfinished last item dropped. By default such an
            answer is a content failure and retried, because a cut answer can validate and
            still be wrong (``"quantity": 15`` of ``1500``).
        **run_options: Any option of :func:`l0.run` (``retry=``, ``timeout=``,
            ``fallbacks=``, ``guardrails=``, callbacks ...), except
            ``continue_from_last_good_token=True``.

    Returns:
        A :class:`StructuredResult` with ``.data``, ``.raw``, ``.corrections`` and ``.state``.

    Raises:
        StructuredOutputError: the last allowed attempt was still not valid; it carries the
            validation errors and the raw text.
        RetryExhaustedError: the attempts ran out for another reason (network ...).
        TypeError: ``schema`` is not a type pydantic can validate, or an option is wrong.
        ValueError: ``continue_from_last_good_token=True`` was passed.
    """
    result, validator = _prepare(schema, stream, auto_correct, dict(run_options), accept_truncated)
    try:
        text = await result.read()
    except RetryExhaustedError as exc:
        error = _translate(exc, validator)
        if error is None:
            raise
        raise error from exc
    return _finish(result, validator, text)


class StructuredStream(Generic[T]):
    """Structured output that can be watched while it streams.

    Iterate it for the stream events of :func:`l0.run` (tokens, and a ``reset`` when a
    rejected answer is withdrawn), then ``await stream.result()`` for the validated answer.
    Awaiting ``result()`` without iterating runs the stream to the end.
    """

    __slots__ = ("_result", "_shown", "_validator")

    def __init__(self, result: Result, validator: _Validator) -> None:
        self._result = result
        self._validator = validator
        # The text the iterating consumer was shown, so partial() forgets a withdrawn answer
        # at the reset (issue 8 item 9); None while nobody iterates.
        self._shown: list[str] | None = None

    @property
    def state(self) -> State:
        """The live session state."""
        return self._result.state

    @property
    def l0_result(self) -> Result:
        """The underlying :class:`l0.Result` (abort, raw chunks, tool hooks ...)."""
        return self._result

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        shown: list[str] = []
        self._shown = shown
        try:
            async for event in self._result:
                if event.is_token:
                    shown.append(event.text or "")
                elif event.is_reset:
                    data = event.data if isinstance(event.data, dict) else {}
                    withdrawn = len(data.get("withdrawn") or "")
                    kept = "".join(shown)
                    shown.clear()
                    if withdrawn < len(kept):
                        shown.append(kept[: len(kept) - withdrawn])
                yield event
        except RetryExhaustedError as exc:
            error = _translate(exc, self._validator)
            if error is None:
                raise
            raise error from exc

    def partial(self) -> Any:
        """The JSON received so far, completed as far as it goes (``None`` before any).

        Not validated: useful to show progress, e.g. the fields of an object as they arrive.
        While the stream is iterated it follows what was shown: a ``reset`` withdraws the
        rejected answer, so ``partial()`` is ``None`` until the next one starts.
        """
        shown = self._shown
        text = extract_json("".join(shown) if shown is not None else self._result.state.content)
        if not text:
            return None
        try:
            return pydantic_core.from_json(text, allow_partial="trailing-strings")
        except ValueError:
            return None

    async def result(self) -> StructuredResult[T]:
        """The validated answer; runs the stream to the end if nobody iterated it.

        Raises:
            StructuredOutputError: as :func:`structured`.
        """
        try:
            text = await self._result.read()
        except RetryExhaustedError as exc:
            error = _translate(exc, self._validator)
            if error is None:
                raise
            raise error from exc
        finished: StructuredResult[T] = _finish(self._result, self._validator, text)
        return finished


@overload
def structured_stream(
    schema: type[T],
    stream: Callable[..., Any],
    *,
    auto_correct: bool = True,
    accept_truncated: bool = False,
    **run_options: Any,
) -> StructuredStream[T]: ...


@overload
def structured_stream(
    schema: Any,
    stream: Callable[..., Any],
    *,
    auto_correct: bool = True,
    accept_truncated: bool = False,
    **run_options: Any,
) -> StructuredStream[Any]: ...


def structured_stream(
    schema: Any,
    stream: Callable[..., Any],
    *,
    auto_correct: bool = True,
    accept_truncated: bool = False,
    **run_options: Any,
) -> StructuredStream[Any]:
    """Like :func:`structured`, but returns at once with a :class:`StructuredStream`.

    The arguments and errors are those of :func:`structured`; the stream starts when the
    returned object is iterated or its ``result()`` awaited.
    """
    result, validator = _prepare(schema, stream, auto_correct, dict(run_options), accept_truncated)
    return StructuredStream(result, validator)
