"""``python -m mbpo_pl plot RUN_DIR... -o curve.png``: learning curves from logged ``eval/return``.

Runs of the same env are drawn together (one line per run); where published MBPO curves exist for that env, their
mean +/- std over seeds is drawn as a band on the same basis as the results (:mod:`mbpo_pl.basis`).
"""

from __future__ import annotations

import argparse
import statistics
import textwrap
from pathlib import Path

import numpy as np
import yaml

from mbpo_pl.basis import WINDOW, PublishedCurves, SeedStats, published_curves, smoothed
from mbpo_pl.report import load_scalars
from mbpo_pl.seed_loggers import seed_folders

COLOURS = {"MBPO": "tab:blue", "SAC": "tab:orange"}


def run_env_id(run_dir: Path) -> str:
    """The env id a run was trained on, from the ``config.yaml`` LightningCLI saved beside its logs."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return "unknown env"
    return yaml.safe_load(config.read_text()).get("data", {}).get("env_id", "unknown env")


def seeds_band(curves: list[list[tuple[int, float]]]) -> list[tuple[float, SeedStats]]:
    """Mean and sample std over seeds at every evaluation step all of ``curves`` logged."""
    by_step = [dict(points) for points in curves]
    steps = sorted(set.intersection(*(set(points) for points in by_step)))
    band = []
    for step in steps:
        values = [points[step] for points in by_step]
        std = statistics.stdev(values) if len(values) > 1 else None
        band.append((float(step), SeedStats(statistics.fmean(values), std, len(values))))
    return band


def plot_runs(run_dirs: list[Path], output: Path, title: str | None = None) -> Path:
    """Each run's curve; a population run (``--seeds``) as its seeds, thin, and their mean ± sample std."""
    curves: dict[str, list[tuple[str, list[tuple[int, float]]]]] = {}
    bands: dict[str, list[tuple[str, list[tuple[float, SeedStats]]]]] = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise SystemExit(f"{run_dir}: no such run directory")
        seed_dirs = seed_folders(run_dir)
        parts = [(d, f"{'/'.join(run_dir.parts[-3:])} {d.name}") for d in seed_dirs] or [
            (run_dir, "/".join(run_dir.parts[-3:]))]  # fmt: skip
        seed_curves = []
        for folder, label in parts:
            points = load_scalars(folder).get("eval/return", [])
            if not points:
                raise SystemExit(f"{folder}: no eval/return logged (is it a TensorBoard run directory of mbpo_pl?)")
            curves.setdefault(run_env_id(run_dir), []).append((label, points))
            seed_curves.append(points)
        if seed_dirs:
            label = f"{'/'.join(run_dir.parts[-3:])}: mean ± std over {len(seed_dirs)} seeds"
            bands.setdefault(run_env_id(run_dir), []).append((label, seeds_band(seed_curves)))
    return draw_curves(curves, output, title, bands)


def draw_curves(
    curves: dict[str, list[tuple[str, list[tuple[int, float]]]]], output: Path, title: str | None = None,
    bands: dict[str, list[tuple[str, list[tuple[float, SeedStats]]]]] | None = None,
) -> Path:  # fmt: skip
    """One panel per env id: each ``(label, [(env_step, return)])`` curve (thin where ``bands`` gives their
    population's mean ± std band) and the paper's MBPO band where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for axis, (env_id, runs) in zip(axes[0], sorted(curves.items())):
        env_bands = (bands or {}).get(env_id, [])
        for label, points in runs:
            steps, returns = zip(*points)
            thin = {"linewidth": 0.7, "alpha": 0.5} if env_bands else {"alpha": 0.7 if len(runs) > 1 else 1.0}
            axis.plot(steps, returns, label=label, **thin)
        for (label, band), colour in zip(env_bands, ("tab:blue", "tab:green", "tab:purple", "tab:red")):
            _draw_band(axis, band, colour, label)
        published = published_curves("mbpo", env_id)
        if published is not None:
            _draw_band(axis, _published_band(published), "gray", "published MBPO (mean ± std)")
        axis.set_title(title or env_id)
        axis.set_xlabel("env steps")
        axis.set_ylabel("evaluation return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save(figure, output)


def _save(figure, output: Path) -> Path:  # noqa: ANN001 (a matplotlib Figure)
    import matplotlib.pyplot as plt

    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


def _grid(last_step: int, spacing: int = 1000) -> list[int]:
    return list(range(WINDOW if spacing <= WINDOW else spacing, last_step + 1, spacing))


def all_seeds_band(curves: list[list[tuple[int, float]]]) -> list[tuple[float, SeedStats]]:
    """Mean ± sample std over seeds on the results' basis (trailing 5k-step window) at every 1k steps up to the last
    step every seed reached: past it a mean over fewer seeds would jump where a seed ends (seeds drawn thin show it)."""
    return smoothed(curves, _grid(min(curve[-1][0] for curve in curves)))


def _published_band(published: PublishedCurves, last_step: int | None = None) -> list[tuple[float, SeedStats]]:
    """The published mean ± std at every multiple of their evaluation spacing (1k for MBPO, 10k for SAC)."""
    steps = [s for s, _ in next(iter(published.curves.values()))]
    spacing = max(1000, round(statistics.median(b - a for a, b in zip(steps, steps[1:])) / 1000) * 1000)
    end = published.last_step if last_step is None else min(last_step, published.last_step)
    return smoothed(list(published.curves.values()), _grid(end, spacing))


def _draw_band(axis, band: list[tuple[float, SeedStats]], colour: str, label: str, hatch: bool = False) -> None:  # noqa: ANN001
    """``mean ± std`` over seeds as a line and a shaded band (the line alone where one seed has a value)."""
    if not band:
        return
    xs = [x for x, _ in band]
    means = [stats.mean for _, stats in band]
    axis.plot(xs, means, color=colour, linestyle="--" if hatch else "-", linewidth=1.6, label=label)
    lows, highs = zip(*(stats.band() for _, stats in band))
    axis.fill_between(xs, lows, highs, color=colour, alpha=0.12 if hatch else 0.2, linewidth=0)


def draw_results(env_id: str, ours: dict[str, list[tuple[int, list[tuple[int, float, float]]]]],
                 published: dict[str, PublishedCurves | None], hardware: list[str], output: Path) -> Path:  # fmt: skip
    """Two panels for one env: returns against env steps (our seeds thin, our mean ± std band and the published
    curves' bands, all smoothed over the same trailing 5k-step window) and against wall-clock hours (our hardware
    named; the published time axis is one run on the authors' hardware, which they do not state)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_steps, by_hours) = plt.subplots(1, 2, figsize=(13, 4.5))
    # Up to the paper's MBPO budget, or further where our runs went further.
    our_last = max(curve[-1][0] for runs in ours.values() for _, curve in runs)
    mbpo = published.get("MBPO")
    x_end = max(our_last, mbpo.last_step if mbpo is not None else 0)
    for algorithm, reference in published.items():
        if reference is None:
            continue
        colour = "gray" if algorithm == "MBPO" else "tab:brown"
        band = _published_band(reference, x_end)
        _draw_band(by_steps, band, colour, f"published {algorithm} (n = {len(reference.curves)}, mean ± std)",
                   hatch=True)  # fmt: skip
        # Their time column is one representative run: its hours at each step of the band.
        steps, hours = zip(*((s, h) for (s, _), (h, _) in zip(next(iter(reference.curves.values())),
                                                              next(iter(reference.hours.values())))))  # fmt: skip
        if band:
            xs = [float(np.interp(step, steps, hours)) for step, _ in band]
            by_hours.plot(xs, [stats.mean for _, stats in band], color=colour, linestyle="--",
                          label=f"published {algorithm} mean (authors' hardware, unknown)")  # fmt: skip
    for algorithm, runs in ours.items():
        colour = COLOURS.get(algorithm, "tab:green")
        for seed, curve in runs:
            steps, returns, walls = zip(*curve)
            by_steps.plot(steps, returns, color=colour, alpha=0.3, linewidth=0.7)
            by_hours.plot([w / 3600 for w in walls], returns, color=colour, alpha=0.5, linewidth=0.8,
                          label=f"ours {algorithm} seed {seed}")  # fmt: skip
        curves = [[(s, r) for s, r, _ in curve] for _, curve in runs]
        band = all_seeds_band(curves)
        shortest, longest = min(c[-1][0] for c in curves), max(c[-1][0] for c in curves)
        extent = "" if shortest == longest else f" to {shortest:,} steps, all seeds"
        _draw_band(by_steps, band, colour, f"ours {algorithm} (n = {len(runs)}, mean ± std{extent}; seeds thin)")
    by_steps.set_xlim(0, x_end * 1.02)
    by_steps.set_title(f"{env_id}: evaluation return (trailing 5k-step mean)")
    by_steps.set_xlabel("env steps")
    by_hours.set_title("against training wall-clock time")
    ours_hardware = textwrap.fill("ours: " + "; ".join(hardware), width=95)
    by_hours.set_xlabel(f"wall-clock hours\n{ours_hardware}", fontsize=8)
    for axis in (by_steps, by_hours):
        axis.set_ylabel("evaluation return")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    return _save(figure, output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl plot", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="TensorBoard run directories (logs/ENV/version_N)")
    parser.add_argument("-o", "--output", type=Path, default=Path("curve.png"), help="PNG file to write")
    parser.add_argument("--title", default=None, help="plot title (default: the env id)")
    args = parser.parse_args(argv)
    print(plot_runs(args.run_dirs, args.output, args.title))
