"""Issue 8: iterating a finished result again says what happened."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import l0

pytestmark = pytest.mark.usefixtures("isolated_config")


async def words() -> AsyncIterator[str]:
    for word in ("one ", "two"):
        yield word


async def test_second_iteration_of_a_finished_result() -> None:
    result = l0.run(words)
    assert [e.text async for e in result if e.is_token] == ["one ", "two"]
    with pytest.raises(RuntimeError) as info:
        async for _ in result:
            pass
    message = str(info.value)
    assert message.startswith("this L0 result has finished; a result streams once")
    assert "result.state.content" in message
    assert "already being consumed" not in message
    assert result.state.content == "one two"


async def test_second_iteration_while_running_says_being_consumed() -> None:
    result = l0.run(words)
    iterator = result.__aiter__()
    await anext(iterator)
    with pytest.raises(RuntimeError, match="already being consumed"):
        result.__aiter__()
    await result.aclose()
