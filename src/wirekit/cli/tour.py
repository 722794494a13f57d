"""``wirekit tour``: every scenario, live on loopback, narrated."""

from __future__ import annotations

import click

from wirekit.net.runtime import run
from wirekit.tour import Narrator, run_tour
from wirekit.tour.recording import DEFAULT_PATH, TourRecording


@click.command()
@click.option("--only", metavar="TEXT", help="Run only the sections whose title contains TEXT.")
@click.option("--record", "record", type=click.Path(dir_okay=False, writable=True),
              default=DEFAULT_PATH, show_default=True, metavar="FILE.pcapng",
              help="Record the TCP, UDP and TLS sections to this pcapng file (inspected at "
                   "the end; Wireshark opens it).")
@click.option("--no-record", is_flag=True,
              help="Write no file (the inspection section is skipped).")
def tour(only: str | None, record: str, no_record: bool) -> None:
    """Run the textbook chapter live on loopback, every step narrated.

    Starts real servers on 127.0.0.1 (ports picked by the kernel), talks to them
    through wirekit, and shows every exchange.  The TCP, UDP and TLS sections are
    recorded to wirekit-tour.pcapng in the current directory (--record elsewhere,
    --no-record for none) and the last section inspects that file.  Needs no network
    beyond loopback and exits 0 only if every step worked.

    \b
    Examples:
      wirekit tour
      wirekit tour --only udp
      wirekit tour --record /tmp/tour.pcapng
      wirekit tour --no-record
      wireshark wirekit-tour.pcapng        # afterwards: TLS decrypts, keys are inside
    """
    recording = None if no_record else TourRecording.start(record)
    narrator = Narrator(recording=recording)
    if recording is not None:
        narrator.console.print(f"recording to {recording.path}", soft_wrap=True)
    try:
        result = run(run_tour(narrator, only))
    finally:
        if recording is not None:
            recording.close()
    narrator.console.rule()
    if recording is not None:
        narrator.console.print(f"{recording.recorder.summary()} "
                               f"(open it with: wireshark {recording.path})", soft_wrap=True)
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
