"""Record and replay: JSON lines, byte-identical replay, determinism, bad files."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

import l0
from l0.events import ObservabilityEvent
from l0.record import Recorder, RecordFormatError, read_sessions, replay, stream_event_dict
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script


def faults() -> Script:
    return Script(
        [
            Fault("raise", 2, ConnectionResetError("connection reset")),
            Fault("status", status=503),
        ]
    )


async def record_session(path: Path, *, iterate: bool = True, seed: int = 7) -> dict[str, Any]:
    pm = l0.build_plugin_manager(entry_points=False)
    seen: list[ObservabilityEvent] = []
    result = l0.run(
        faults().factory,
        plugins=pm,
        record=path,
        seed=seed,
        retry=l0.Retry(base_delay=0.001, max_delay=0.002),
        context={"request": "r1"},
        on_event=seen.append,
    )
    consumed: list[l0.Event] = []
    if iterate:
        consumed = [event async for event in result]
    else:
        await result.read()
    await result.wait_callbacks()
    return {"stream": consumed, "obs": seen, "result": result}


def session_lines(path: Path) -> list[bytes]:
    return [
        line + b"\n"
        for line in path.read_bytes().splitlines()
        if b'"kind":"header"' not in line and b'"kind":"end"' not in line
    ]


async def test_replay_gives_back_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    recorded = await record_session(path)
    replayed_obs: list[ObservabilityEvent] = []
    session = replay(path, on_event=replayed_obs.append)
    events = [event async for event in session]
    assert [stream_event_dict(e) for e in events] == [
        stream_event_dict(e) for e in recorded["stream"]
    ]
    assert [e.to_dict() for e in replayed_obs] == [e.to_dict() for e in recorded["obs"]]
    assert session.stream_id == recorded["result"].stream_id
    assert await replay(path).read() == TEXT
    errors = [e for e in events if e.is_error]
    assert errors
    assert type(errors[0].error).__name__ == "RecordedError"
    assert "connection reset" in str(errors[0].error)


async def test_replay_is_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    await record_session(path)
    assert list(replay(path).lines()) == session_lines(path)


async def test_read_mode_records_the_consumer_events_too(tmp_path: Path) -> None:
    path = tmp_path / "read.jsonl"
    await record_session(path, iterate=False)
    kinds = [e.type.value for e in [ev async for ev in replay(path)]]
    assert kinds.count("token") == len(TOKENS) + 2  # the failed attempt's tokens too
    assert kinds[-1] == "complete"


async def test_sessions_append_and_are_found_by_id(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    first = await record_session(path)
    second = await record_session(path)
    sessions = read_sessions(path)
    assert [s.stream_id for s in sessions] == [
        first["result"].stream_id,
        second["result"].stream_id,
    ]
    assert replay(path, stream_id=first["result"].stream_id).stream_id == sessions[0].stream_id
    with pytest.raises(LookupError, match="present"):
        replay(path, stream_id="nope")


def test_same_seed_and_faults_give_the_same_record(tmp_path: Path) -> None:
    def normalised(path: Path) -> list[Any]:
        out = []
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            event = row.get("event", {})
            row.pop("t", None)  # time since the session started
            for key in ("ts", "stream_id", "session_id", "start_ts", "end_ts"):
                event.pop(key, None)
                row.pop(key, None)
            for key in list(event):
                if key.endswith("_ms") and key != "delay_ms":
                    event.pop(key)
            out.append(row)
        return out

    asyncio.run(record_session(tmp_path / "a.jsonl", seed=3))
    asyncio.run(record_session(tmp_path / "b.jsonl", seed=3))
    assert normalised(tmp_path / "a.jsonl") == normalised(tmp_path / "b.jsonl")


async def test_recorder_plugin_records_every_session(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    pm = l0.build_plugin_manager(entry_points=False)
    recorder = Recorder(path)
    pm.register(recorder, name="recorder")

    async def tokens() -> Any:
        yield "a"

    for _ in range(2):
        await l0.run(tokens, plugins=pm).read()
    await asyncio.to_thread(recorder.flush)
    sessions = read_sessions(path)
    assert len(sessions) == 2
    assert all(kind == "obs" for s in sessions for kind, _ in s.items)
    types = [e["type"] for _, e in sessions[0].items]
    assert types[0] == "SESSION_START"
    assert types[-1] == "SESSION_END"


async def test_writes_happen_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[str] = []
    original = Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "spy.jsonl":
            writers.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    await record_session(tmp_path / "spy.jsonl")
    assert writers
    assert all(name.startswith("l0-record") for name in writers)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            b'{"kind":"header","format":"l0-record","version":1,"stream_id":"s","session_id":"s"}\n{"kind":"stream","ev',
            r":2: expected a JSON object",
        ),
        (
            b'{"kind":"header","format":"l0-record","version":1,"stream_id":"s","session_id":"s"}\n{"kind":"stream","event":{"type":"token","text":"a"}}\n',
            r"no end line \(the file is truncated\)",
        ),
        (
            b'{"kind":"header","format":"l0-record","version":99,"stream_id":"s","session_id":"s"}\n',
            r":1: record format version 99 is newer",
        ),
        (b'{"kind":"stream","event":{"type":"token"}}\n', r":1: expected a header line"),
        (b'{"kind":"header","format":"other","version":1}\n', r":1: expected format 'l0-record'"),
        (b"[1, 2]\n", r':1: expected an object with a "kind" field'),
    ],
)
def test_bad_record_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(RecordFormatError, match=match):
        replay(path)


def test_record_argument_is_checked() -> None:
    async def tokens() -> Any:
        yield "a"

    with pytest.raises(TypeError, match="record=42"):
        l0.run(tokens, record=42)  # type: ignore[arg-type]
