"""Helpers shared by the benchmarks: timing, result rows and the printed table.

Every figure is reported next to a baseline measured in the same process, because the machine
is shared and noisy: absolute times vary from run to run, ratios much less.
"""

from __future__ import annotations

import statistics
from typing import Any


def best(samples: list[float]) -> float:
    """The least noisy estimate of a duration: the fastest of the samples."""
    return min(samples)


def median(samples: list[float]) -> float:
    """The median of the samples (for very short durations, where min is too optimistic)."""
    return statistics.median(samples)


def row(
    measurement: str,
    seconds: float | None,
    *,
    runs: int | None = None,
    ratio: float | None = None,
    ratio_is: str = "",
    target: str = "",
    met: bool | None = None,
    samples: list[float] | None = None,
) -> dict[str, Any]:
    """One line of the results table (and of the JSON file). `seconds` is None for a line
    that is no duration (a memory figure, say): its time cell stays empty."""
    return {
        "measurement": measurement,
        "seconds": seconds,
        "runs_per_s": runs / seconds if runs and seconds else None,
        "ratio": ratio,
        "ratio_is": ratio_is,
        "target": target,
        "met": met,
        "samples": samples or ([] if seconds is None else [seconds]),
    }


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def format_table(results: dict[str, list[dict[str, Any]]]) -> str:
    """Render {benchmark: rows} as a plain-text table."""
    header = ("benchmark", "measurement", "time", "runs/s", "ratio", "target", "met")
    lines = [header]
    for bench, rows in results.items():
        for r in rows:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g} ({r['ratio_is']})"
            met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
            rate = "" if r["runs_per_s"] is None else f"{r['runs_per_s']:,.0f}"
            lines.append(
                (bench, r["measurement"], _fmt_seconds(r["seconds"]), rate, ratio, r["target"], met)
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
