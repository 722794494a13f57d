"""The pure part of the benchmarks: medians, percentiles, ratios, targets and the table.

No processes, sockets or clocks here, so it can be unit-tested
(tests/unit/test_bench_harness.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Column",
    "Target",
    "check_targets",
    "format_table",
    "median",
    "percentile",
    "ratio",
]


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN when there are none; NaNs are ignored)."""
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return math.nan
    mid = len(clean) // 2
    if len(clean) % 2:
        return clean[mid]
    return (clean[mid - 1] + clean[mid]) / 2


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank method."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ratio(value: float, reference: float) -> float:
    """``value / reference``; NaN when either is missing or the reference is zero."""
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return math.nan
    return value / reference


@dataclass(frozen=True, slots=True)
class Column:
    """One metric column: its key in the results, header, and how to print a value."""

    key: str
    header: str
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}"


def _cell(value: float | None, fmt: Callable[[float], str]) -> str:
    if value is None or math.isnan(value):
        return "-"
    return fmt(value)


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[Column],
    *,
    ratios_to: Sequence[str] = (),
    ratio_columns: Sequence[str] = (),
) -> str:
    """A markdown table: one row per subject, one column per metric.

    For every subject named in ``ratios_to`` and every metric key in ``ratio_columns``,
    a column ``METRIC ÷ SUBJECT`` is added after the metric.
    """
    headers: list[str] = ["subject"]
    cells: list[list[str]] = [[name] for name in rows]
    for col in columns:
        headers.append(col.header)
        for cell_row, values in zip(cells, rows.values(), strict=True):
            cell_row.append(_cell(values.get(col.key), col.fmt))
        if col.key not in ratio_columns:
            continue
        for ref in ratios_to:
            if ref not in rows:
                continue
            headers.append(f"÷ {ref}")
            reference = rows[ref].get(col.key, math.nan)
            for cell_row, values in zip(cells, rows.values(), strict=True):
                r = ratio(values.get(col.key, math.nan), reference)
                cell_row.append(_cell(r, lambda v: f"{v:.2f}x"))
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(parts: Sequence[str]) -> str:
        padded = [p.ljust(w) if i == 0 else p.rjust(w) for i, (p, w) in
                  enumerate(zip(parts, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths)
    ) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


@dataclass(frozen=True, slots=True)
class Target:
    """``subject``'s ``key`` compared with ``reference``'s: ratio must be >= or <= ``bound``.

    With ``higher_is_better`` the target is ``value >= bound * reference``, otherwise
    ``value <= bound * reference``. An empty ``reference`` makes ``bound`` absolute
    (``value >= bound`` or ``value <= bound``), e.g. "<= 4 KiB per pair".
    """

    label: str
    subject: str
    key: str
    reference: str
    bound: float
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: Target
    value: float
    reference_value: float
    ratio: float
    met: bool | None  # None: not measured

    def describe(self) -> str:
        t = self.target
        op = ">=" if t.higher_is_better else "<="
        want = f"{op} {t.bound:g}x {t.reference}" if t.reference else f"{op} {t.bound:g}"
        if self.met is None:
            return f"[n/a ] {t.label}: {t.subject} {want}: not measured"
        verdict = "MET " if self.met else "MISS"
        if not t.reference:
            return f"[{verdict}] {t.label}: {t.subject} {want}: {self.value:,.3g}"
        return (f"[{verdict}] {t.label}: {t.subject} {want}: "
                f"{self.value:,.3g} vs {self.reference_value:,.3g} = {self.ratio:.2f}x")


def check_targets(rows: Mapping[str, Mapping[str, float]],
                  targets: Sequence[Target]) -> list[TargetResult]:
    results = []
    for t in targets:
        value = rows.get(t.subject, {}).get(t.key, math.nan)
        if t.reference:
            ref = rows.get(t.reference, {}).get(t.key, math.nan)
            r = ratio(value, ref)
        else:  # absolute bound: compare value / bound with 1
            ref = t.bound
            r = value if not math.isnan(value) else math.nan
        limit = t.bound
        if math.isnan(r):
            met = None
        elif t.higher_is_better:
            met = r >= limit
        else:
            met = r <= limit
        results.append(TargetResult(t, value, ref, r, met))
    return results
