"""One basis for every learning-curve figure, ours and published: the return "at step X".

For each seed, the mean of its evaluations in ``(X - window, X]`` (a seed that did not reach X has none); then
the mean and the sample standard deviation (``ddof=1``) over the seeds that have one, and their number ``n``.
:func:`published_curves` reads the published per-seed curves of MBPO and SAC (``docs/results/reference/``, copied
from the DHMBPO paper's repository: see the README there) so they go through the same computation.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

WINDOW = 5000  # a return "at step X" is the mean of the evaluations in (X - WINDOW, X]
REFERENCE_DIR = Path(__file__).parents[1] / "docs" / "results" / "reference"

Curve = list[tuple[int, float]]  # [(env_steps, evaluation return)], in env-step order


@dataclass(frozen=True)
class SeedStats:
    """Mean and sample standard deviation over ``n`` seeds (``std`` is ``None`` for one seed)."""

    mean: float
    std: float | None
    n: int

    def band(self) -> tuple[float, float]:
        spread = self.std or 0.0
        return self.mean - spread, self.mean + spread

    def overlaps(self, other: SeedStats) -> bool:
        """Whether the ``mean ± std`` bands share a point (a single seed's band is its value)."""
        low, high = self.band()
        other_low, other_high = other.band()
        return low <= other_high and other_low <= high

    def sigmas_from(self, other: SeedStats) -> float | None:
        """``(self.mean - other.mean) / other.std``: our distance in ``other``'s standard deviations."""
        return None if not other.std else (self.mean - other.mean) / other.std

    def __str__(self) -> str:
        spread = "" if self.std is None else f" ± {self.std:,.0f}"
        return f"{self.mean:,.0f}{spread} (n = {self.n})"


def window_mean(curve: Curve, step: int, window: int = WINDOW) -> float | None:
    """Mean return in ``(step - window, step]``, or ``None`` when the curve did not reach ``step`` or has no
    evaluation in the window."""
    if not curve or curve[-1][0] < step:
        return None
    values = [ret for s, ret in curve if step - window < s <= step]
    return statistics.fmean(values) if values else None


def across_seeds(curves: list[Curve], step: int, window: int = WINDOW) -> SeedStats | None:
    """:func:`window_mean` of every seed that reached ``step``, summarised over those seeds."""
    values = [v for v in (window_mean(c, step, window) for c in curves) if v is not None]
    if not values:
        return None
    return SeedStats(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def smoothed(curves: list[Curve], steps: list[int], window: int = WINDOW) -> list[tuple[int, SeedStats]]:
    """:func:`across_seeds` at each of ``steps`` where at least one seed has a value (a whole curve's band)."""
    points = [(step, across_seeds(curves, step, window)) for step in steps]
    return [(step, stats) for step, stats in points if stats is not None]


@dataclass(frozen=True)
class PublishedCurves:
    """A published algorithm's per-seed curves on one env: ``curves[seed]`` and ``hours[seed]`` (the file's
    ``time`` column, the same value for every seed at a row: one representative run on the authors' hardware)."""

    algorithm: str
    env: str
    curves: dict[int, Curve]
    hours: dict[int, list[tuple[float, float]]]  # [(wall hours, return)]

    @property
    def last_step(self) -> int:
        return min(curve[-1][0] for curve in self.curves.values())


def published_curves(algorithm: str, env_id: str, reference_dir: Path = REFERENCE_DIR) -> PublishedCurves | None:
    """The published curves of ``algorithm`` (``mbpo`` or ``sac``) on ``env_id``'s env (any Gym version), or
    ``None`` when there are none."""
    env = env_id.split("-")[0]
    path = reference_dir / algorithm.lower() / f"{env}.csv"
    if not path.is_file():
        return None
    curves: dict[int, Curve] = {}
    hours: dict[int, list[tuple[float, float]]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            seed = int(float(row["seed"]))
            curves.setdefault(seed, []).append((int(float(row["step"])), float(row["reward"])))
            hours.setdefault(seed, []).append((float(row["time"]) / 3600, float(row["reward"])))
    for seed in curves:
        curves[seed].sort()
        hours[seed].sort()
    return PublishedCurves(algorithm.upper(), env, curves, hours)
