"""``wirekit tour``: the textbook chapter, run live on loopback and narrated.

Each section is a list of steps; a step is an async function that does something real
through wirekit's public API and tells the narrator what happened.  A step that raises
fails the tour (exit 1) but the remaining sections still run, so one problem does not
hide the rest; a section that raises ``SectionSkipped`` (an optional dependency is
missing) is reported as skipped, not failed.  Later capabilities add their sections to
``SECTIONS``.
"""

from wirekit.tour.narrator import Narrator, SectionSkipped, TourResult
from wirekit.tour.runner import SECTIONS, run_tour

__all__ = ["SECTIONS", "Narrator", "SectionSkipped", "TourResult", "run_tour"]
