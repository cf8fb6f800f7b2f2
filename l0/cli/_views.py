"""How ``l0 demo`` and ``l0 replay`` show a stream: a live rich view, or plain lines.

Both views take stream events one at a time. Text a retry withdraws stays on screen, struck
through in the live view and marked ``[withdrawn: ...]`` in plain output, so the reader sees
what L0 took back.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import l0

if TYPE_CHECKING:
    from l0.cli.demo import Scene, SceneReport

WITHDRAWN = "strike dim red"
NOTE = "yellow"
OK = "green"
FAIL = "bold red"


def _action(event: l0.Event) -> str:
    data = event.data or {}
    if data.get("will_retry"):
        return "retrying"
    if data.get("will_fallback"):
        return "falling back"
    return "giving up"


def describe_error(event: l0.Event) -> str:
    """``Type: message -> action`` for an error event."""
    error = event.error
    name = getattr(error, "type_name", None) or type(error).__name__
    return f"{name}: {error} -> {_action(event)}"


class StreamText:
    """The text of a stream as rich ``Text``: tokens, withdrawn text, and notes in order."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []

    def token(self, text: str) -> None:
        """Append shown text."""
        self.parts.append((text, ""))

    def withdraw(self, count: int) -> None:
        """Restyle the last ``count`` shown characters as withdrawn."""
        remaining = count
        for index in range(len(self.parts) - 1, -1, -1):
            if remaining <= 0:
                break
            text, style = self.parts[index]
            if style:
                continue
            if len(text) <= remaining:
                self.parts[index] = (text, WITHDRAWN)
                remaining -= len(text)
            else:
                keep = len(text) - remaining
                self.parts[index : index + 1] = [(text[:keep], ""), (text[keep:], WITHDRAWN)]
                remaining = 0

    def note(self, text: str, style: str = NOTE) -> None:
        """Add a line of commentary (a retry, a fallback, a violation)."""
        self.parts.append((f"\n  {text}\n", style))

    def render(self) -> Text:
        """The rich text to show."""
        out = Text()
        for text, style in self.parts:
            out.append(text, style=style or None)
        return out


class LiveView:
    """Demo watcher for terminals: each scene's stream redrawn live as events arrive."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._text = StreamText()
        self._title = ""

    def _renderable(self) -> Group:
        return Group(Text(self._title, style="bold"), self._text.render())

    def begin(self, scene: Scene) -> None:
        """Open a live region for the scene."""
        self._text = StreamText()
        self._title = f"== {scene.name}: {scene.title}"
        self._live = Live(self._renderable(), console=self.console, refresh_per_second=20)
        self._live.start()

    def event(self, event: l0.Event) -> None:
        """Apply one stream event to the live text."""
        apply_event(self._text, event)
        if self._live is not None:
            self._live.update(self._renderable())

    def end(self, report: SceneReport) -> None:
        """Close the live region with a one-line outcome."""
        if report.note:
            self._text.note(report.note, "dim")
        self._text.note(outcome_line(report), OK if report.ok else FAIL)
        if self._live is not None:
            self._live.update(self._renderable())
            self._live.stop()
            self._live = None


def apply_event(text: StreamText, event: l0.Event) -> None:
    """Add one stream event to ``text``."""
    if event.is_token:
        text.token(event.text or "")
    elif event.is_reset:
        text.withdraw(len((event.data or {}).get("withdrawn", "")))
    elif event.is_error:
        text.note(f"! {describe_error(event)}", NOTE if _action(event) != "giving up" else FAIL)


class PlainView:
    """Demo watcher for pipes and logs: tokens as they arrive, one line per recovery."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self._mid_line = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            self.out.write("\n")
        self.out.write(text + "\n")
        self.out.flush()
        self._mid_line = False

    def begin(self, scene: Scene) -> None:
        """Print the scene's title."""
        self._line(f"\n== {scene.name}: {scene.title}")

    def event(self, event: l0.Event) -> None:
        """Print a token, a withdrawal or an error as it happens."""
        if event.is_token:
            self.out.write(event.text or "")
            self.out.flush()
            self._mid_line = True
        elif event.is_reset:
            withdrawn = (event.data or {}).get("withdrawn", "")
            shown = withdrawn if len(withdrawn) <= 60 else f"{withdrawn[:28]}…{withdrawn[-28:]}"
            self._line(f" [withdrawn {len(withdrawn)} chars: {shown!r}]")
        elif event.is_error:
            self._line(f"  ! {describe_error(event)}")

    def end(self, report: SceneReport) -> None:
        """Print the scene's outcome."""
        if report.note:
            self._line(f"  {report.note}")
        self._line(f"  {outcome_line(report)}")


def outcome_line(report: SceneReport) -> str:
    """``ok: 27 tokens, 2 retries (2 network + 0 model), fallback 0, 3 requests, 0.41s``."""
    return (
        f"{'ok' if report.ok else 'FAILED'}: {report.tokens} tokens, {report.retries} retries "
        f"({report.network_retries} network + {report.model_retries} model), "
        f"fallback {report.fallback}, {report.requests} requests, {report.seconds:.2f}s"
    )


SUMMARY_COLUMNS = ("scene", "outcome", "requests", "retries", "fallback", "time")


def summary_rows(reports: Sequence[SceneReport]) -> list[tuple[str, ...]]:
    """The rows of the summary table (the ``--json`` output holds the same fields)."""
    return [
        (
            r.scene,
            "ok" if r.ok else "FAILED",
            str(r.requests),
            f"{r.retries} ({r.network_retries} network + {r.model_retries} model)",
            str(r.fallback),
            f"{r.seconds:.2f}s",
        )
        for r in reports
    ]


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table; rendered as plain columns when the console is not a terminal."""
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*(str(cell) for cell in row))
    return out
