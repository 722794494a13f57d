"""How the tour talks: headings, prose, and every exchange shown byte for byte."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from wirekit.tour.recording import TourRecording

__all__ = ["Narrator", "SectionSkipped", "TourResult"]


class SectionSkipped(Exception):
    """Raised by a section that cannot run here (an optional dependency is missing);
    the runner reports it as skipped with the reason, not as a failure."""


@dataclass(slots=True)
class TourResult:
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.passed or self.skipped)


class Narrator:
    """Writes the tour to a rich console (stdout: the tour *is* the output)."""

    def __init__(self, console: Console | None = None,
                 recording: TourRecording | None = None) -> None:
        self.console = console or Console(highlight=False)
        # The tour's pcapng file (None: --no-record); sections record into it.
        self.recording = recording

    def section(self, title: str) -> None:
        self.console.rule(f"[bold]{escape(title)}")

    def step(self, title: str) -> None:
        self.console.print(f"\n[bold cyan]▶ {escape(title)}[/]")

    def say(self, text: str) -> None:
        self.console.print(f"  {escape(text)}")

    def command(self, text: str) -> None:
        """The equivalent shell command, so the reader can try it themselves."""
        self.console.print(f"  [dim]$ {escape(text)}[/]")

    def sent(self, data: bytes, who: str = "client") -> None:
        self.console.print(f"  [green]{escape(who)} >>[/] {escape(_show(data))}")

    def received(self, data: bytes, who: str = "client") -> None:
        self.console.print(f"  [magenta]{escape(who)} <<[/] {escape(_show(data))}")

    def ok(self, text: str) -> None:
        self.console.print(f"  [green]✓[/] {escape(text)}")

    def fail(self, text: str) -> None:
        self.console.print(f"  [red]✗ {escape(text)}[/]")

    def skip(self, text: str) -> None:
        self.console.print(f"  [yellow]skipped: {escape(text)}[/]")

    def block(self, text: str) -> None:
        """Preformatted text (a report), indented, never re-wrapped."""
        for line in text.splitlines():
            self.console.print(f"  {escape(line)}", soft_wrap=True)

    def columns(self, headers: tuple[str, str], rows: list[tuple[str, str]]) -> None:
        """Two things shown side by side (e.g. the same exchange seen on two wires)."""
        table = Table(*headers, show_lines=False, padding=(0, 1))
        for left, right in rows:
            table.add_row(escape(left), escape(right))
        self.console.print(table)


def _show(data: bytes, limit: int = 400) -> str:
    text = repr(data[:limit])[2:-1]
    return text + (f" … ({len(data)} bytes)" if len(data) > limit else "")
