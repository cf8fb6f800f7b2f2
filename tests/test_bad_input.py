"""Bad arguments to l0.run / l0.wrap fail at once, naming the parameter and the value.

``test_runtime.py`` covers the basic cases; these are the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0


async def tokens() -> AsyncIterator[str]:
    yield "x"


def ok() -> AsyncIterator[str]:
    return tokens()


CASES: list[tuple[dict[str, Any], type[Exception], str]] = [
    # stream
    ({"stream": "gpt-4o"}, TypeError, r"stream='gpt-4o': expected a callable"),
    ({"stream": [ok]}, TypeError, r"stream=\[<function ok"),
    # fallbacks
    ({"fallbacks": ok}, TypeError, r"fallbacks=<function ok.*expected a list"),
    ({"fallbacks": None}, TypeError, r"fallbacks=None: expected a list"),
    ({"fallbacks": b"ab"}, TypeError, r"fallbacks=b'ab'"),
    ({"fallbacks": {ok}}, TypeError, r"fallbacks=\{<function ok"),
    ({"fallbacks": [ok, ok, "model-b"]}, TypeError, r"fallbacks\[2\]='model-b'"),
    # retry
    ({"retry": 3}, TypeError, r"retry=3: expected l0\.Retry"),
    ({"retry": True}, TypeError, r"retry=True"),
    ({"retry": l0.Timeout()}, TypeError, r"retry=Timeout\("),
    # timeout
    ({"timeout": 30.0}, TypeError, r"timeout=30\.0: expected l0\.Timeout"),
    ({"timeout": {"initial_token": 5}}, TypeError, r"timeout=\{'initial_token': 5\}"),
    ({"timeout": l0.Retry()}, TypeError, r"timeout=Retry\("),
    # check_intervals
    ({"check_intervals": 5}, TypeError, r"check_intervals=5: expected a dict"),
    ({"check_intervals": [("guardrails", 5)]}, TypeError, r"check_intervals=\[\("),
    ({"check_intervals": {"guardrail": 5}}, ValueError, r"check_intervals\['guardrail'\].*'gua"),
    ({"check_intervals": {"drift": 0}}, ValueError, r"check_intervals\['drift'\]=0.*int >= 1"),
    ({"check_intervals": {"checkpoint": -3}}, ValueError, r"check_intervals\['checkpoint'\]=-3"),
    ({"check_intervals": {"guardrails": 2.5}}, ValueError, r"check_intervals\['guardrails'\]=2.5"),
    ({"check_intervals": {"guardrails": True}}, ValueError, r"check_intervals\['guardrails'\]=Tr"),
    # callbacks
    ({"on_start": 1}, TypeError, r"on_start=1: expected a callable or None"),
    ({"on_complete": "done"}, TypeError, r"on_complete='done'"),
    ({"on_error": [print]}, TypeError, r"on_error=\[<built-in function print>\]"),
    ({"on_event": True}, TypeError, r"on_event=True"),
    ({"on_violation": 0}, TypeError, r"on_violation=0"),
    ({"on_fallback": {}}, TypeError, r"on_fallback=\{\}"),
    ({"on_resume": b"x"}, TypeError, r"on_resume=b'x'"),
    ({"on_checkpoint": 1.0}, TypeError, r"on_checkpoint=1\.0"),
    ({"on_timeout": "t"}, TypeError, r"on_timeout='t'"),
    ({"on_abort": 2}, TypeError, r"on_abort=2"),
    ({"on_drift": "d"}, TypeError, r"on_drift='d'"),
    ({"on_tool_call": 3}, TypeError, r"on_tool_call=3"),
    ({"build_continuation_prompt": "continue:"}, TypeError, r"build_continuation_prompt='con"),
    # the other options
    ({"adapter": "openai"}, TypeError, r"adapter='openai': expected an object with name"),
    ({"plugins": []}, TypeError, r"plugins=\[\]: expected an l0 plugin manager"),
    ({"meta": "user=1"}, TypeError, r"meta='user=1': expected a mapping"),
    ({"seed": 1.5}, TypeError, r"seed=1\.5"),
    ({"seed": True}, TypeError, r"seed=True"),
    ({"session_id": 7}, TypeError, r"session_id=7: expected a str"),
    ({"retry_on_length": "yes"}, TypeError, r"retry_on_length='yes': expected True or False"),
    ({"continue_from_last_good_token": 1}, TypeError, r"continue_from_last_good_token=1"),
    ({"remove_overlap": None}, TypeError, r"remove_overlap=None"),
    ({"max_overlap": 1}, ValueError, r"max_overlap=1: expected an int >= 2"),
    ({"max_overlap": "9"}, ValueError, r"max_overlap='9'"),
    ({"record": 5}, TypeError, r"record=5: expected a file path"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    CASES,
    ids=[f"{next(iter(c[0]))}-{i}" for i, c in enumerate(CASES)],
)
def test_run_rejects(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments: dict[str, Any] = {"stream": ok, **kwargs}
    with pytest.raises(error, match=match):
        l0.run(**arguments)


@pytest.mark.parametrize(("kwargs", "error", "match"), CASES[2:])
async def test_wrap_rejects_the_same(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    stream = tokens()
    with pytest.raises(error, match=match):
        l0.wrap(stream, **kwargs)
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("factory", "error", "match"),
    [
        (lambda: l0.Timeout(initial_token=float("nan")), ValueError, r"initial_token=nan"),
        (lambda: l0.Timeout(initial_token=True), TypeError, r"initial_token=True"),
        (lambda: l0.Timeout(inter_token=[1]), TypeError, r"inter_token=\[1\]"),  # type: ignore[arg-type]
        (lambda: l0.Timeout(initial_token=-0.1), ValueError, r"initial_token=-0\.1"),
    ],
)
def test_timeout_rejects(factory: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        factory()


def test_no_limits_is_allowed() -> None:
    assert l0.Timeout(initial_token=None, inter_token=None).initial_token is None


def test_valid_values_are_accepted() -> None:
    pm = l0.build_plugin_manager(entry_points=False)
    result = l0.run(
        ok,
        fallbacks=(ok,),
        retry=l0.Retry(),
        timeout=l0.Timeout(initial_token=1, inter_token=0.5),
        check_intervals={"guardrails": 1, "drift": 2, "checkpoint": 3},
        on_start=lambda *a: None,
        on_event=print,
        plugins=pm,
        max_overlap=2,
    )
    assert isinstance(result, l0.Result)
