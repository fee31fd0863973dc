"""Percentiles of one run and the median and range of repeated runs."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_ms: list[float]) -> dict[str, float | None]:
    ordered = sorted(latencies_ms)
    return {f"p{q}": percentile(ordered, q) for q in (50, 95, 99)}


@dataclass
class Series:
    """The values one figure took in repeated runs (None for a run that produced none)."""

    values: list[float | None] = field(default_factory=list)

    def add(self, value: float | None) -> None:
        self.values.append(value)

    @property
    def known(self) -> list[float]:
        return [v for v in self.values if v is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.known) if self.known else None

    @property
    def low(self) -> float | None:
        return min(self.known) if self.known else None

    @property
    def high(self) -> float | None:
        return max(self.known) if self.known else None


def paired_ratios(numerators: Series, denominators: Series) -> Series:
    """Run i of one series over run i of the other (the runs were interleaved)."""
    ratios = Series()
    for top, bottom in zip(numerators.values, denominators.values):
        ratios.add(top / bottom if top is not None and bottom else None)
    return ratios
