"""The pure parts of the benchmark harness (bench/table.py): no processes, no timing."""

from __future__ import annotations

import math
import sys
from pathlib import Path

# bench/ is a top-level package of the repository, not of the installed wirekit: `python -m
# pytest` (make test) has the repository root on sys.path already, a bare `pytest` does not.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.table import Column, Target, check_targets, format_table, median, percentile, ratio


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert median([5.0, math.nan, 1.0]) == 3.0
    assert math.isnan(median([]))


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_ratio() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))


def test_format_table_with_ratios() -> None:
    rows = {"a": {"x": 200.0, "y": 1.5}, "b": {"x": 100.0}}
    text = format_table(rows, [Column("x", "X"), Column("y", "Y", lambda v: f"{v:.1f}")],
                        ratios_to=["b"], ratio_columns=["x"])
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["subject", "X", "÷ b", "Y"]
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["a", "200", "2.00x", "1.5"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["b", "100", "1.00x", "-"]
    assert len({len(line) for line in lines}) == 1  # columns are aligned


def test_targets_relative_absolute_and_missing() -> None:
    rows = {"w": {"t": 15.0, "lat": 10.0, "mem": 3.0}, "h": {"t": 10.0, "lat": 20.0}}
    results = check_targets(rows, [
        Target("thr", "w", "t", "h", 1.0),
        Target("thr", "w", "t", "h", 2.0),
        Target("lat", "w", "lat", "h", 1.0, higher_is_better=False),
        Target("mem", "w", "mem", "", 4.0, higher_is_better=False),
        Target("mem", "w", "mem", "", 2.0, higher_is_better=False),
        Target("gone", "w", "t", "nobody", 1.0),
    ])
    assert [r.met for r in results] == [True, False, True, True, False, None]
    assert results[0].ratio == 1.5
    assert "MISS" in results[1].describe() and "1.50x" in results[1].describe()
    assert "not measured" in results[5].describe()
