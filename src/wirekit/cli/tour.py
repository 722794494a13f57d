"""``wirekit tour``: every scenario, live on loopback, narrated."""

from __future__ import annotations

import click

from wirekit.net.runtime import run
from wirekit.tour import Narrator, run_tour


@click.command()
@click.option("--only", metavar="TEXT", help="Run only the sections whose title contains TEXT.")
def tour(only: str | None) -> None:
    """Run the textbook chapter live on loopback, every step narrated.

    Starts real servers on 127.0.0.1 (ports picked by the kernel), talks to them
    through wirekit, and shows every exchange.  Needs no network beyond loopback
    and exits 0 only if every step worked.

    \b
    Examples:
      wirekit tour
      wirekit tour --only udp
    """
    narrator = Narrator()
    result = run(run_tour(narrator, only))
    narrator.console.rule()
    for title, reason in result.skipped:
        narrator.console.print(f"[yellow]skipped:[/] {title}: {reason}")
    if result.ok:
        skipped = f" ({len(result.skipped)} skipped)" if result.skipped else ""
        narrator.console.print(f"[green]All {len(result.passed)} sections worked{skipped}.[/]")
        return
    for title, reason in result.failed:
        narrator.console.print(f"[red]failed:[/] {title}: {reason}")
    if not result.passed and not result.failed:
        narrator.console.print(f"[red]no section matches --only {only!r}[/]")
    raise click.exceptions.Exit(1)
