"""A Hopper-v5 population (4 seeds in one process, ``--seeds [0,1,2,3]``) against the single-seed MBPO runs.

Both sides on the results' basis (:mod:`mbpo_pl.basis`): a seed's return "at X" is the mean of its evaluations in
(X - 5k, X]; then mean and sample std over seeds. The single-seed runs are the committed MBPO Hopper curves
(``docs/results/hopper_seed<s>.csv``, bf16-mixed) and the 32-true one in this folder; the published MBPO curves
(``docs/results/reference/mbpo/``) are drawn as their mean ± std band. Prints a markdown table and draws a figure:

    python docs/results/investigations/hopper_population.py \
        --population docs/results/investigations/hopper_population_seed*.csv \
        --write docs/results/investigations/hopper_population.md -o docs/results/investigations/hopper_population.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from mbpo_pl.basis import SeedStats, across_seeds, published_curves, smoothed, window_mean  # noqa: E402
from mbpo_pl.run_curves import read_curve  # noqa: E402

SINGLE = [ROOT / "docs" / "results" / f"hopper_seed{seed}.csv" for seed in range(3)] + [
    ROOT / "docs" / "results" / "investigations" / "hopper_seed1_32true.csv"
]
STEPS = (10_000, 15_000)


def _curve(path: Path) -> list[tuple[int, float]]:
    return [(step, value) for step, value, _ in read_curve(path)]


def table(population: list[Path], singles: list[Path]) -> str:
    """Per-run returns at :data:`STEPS`, the two groups' mean ± std, and whether each population seed lies in the
    single-seed runs' range."""
    pop_curves = {path.stem: _curve(path) for path in population}
    single_curves = {path.stem: _curve(path) for path in singles}
    published = published_curves("mbpo", "Hopper-v5")
    header = "| run | " + " | ".join(f"at {step // 1000}k" for step in STEPS) + " |"
    lines = [header, "|---|" + "---|" * len(STEPS)]
    for group in (pop_curves, single_curves):
        for name, curve in group.items():
            cells = [window_mean(curve, step) for step in STEPS]
            lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:,.0f}" for v in cells) + " |")
    rows: list[tuple[str, list[SeedStats | None]]] = [
        ("population, mean ± std", [across_seeds(list(pop_curves.values()), step) for step in STEPS]),
        ("single-seed runs, mean ± std", [across_seeds(list(single_curves.values()), step) for step in STEPS]),
    ]
    if published is not None:
        rows.append(("published MBPO, mean ± std", [across_seeds(list(published.curves.values()), s) for s in STEPS]))
    for label, stats in rows:
        lines.append(f"| {label} | " + " | ".join("–" if s is None else str(s) for s in stats) + " |")
    verdicts = []
    for step in STEPS:
        singles_at = [v for v in (window_mean(c, step) for c in single_curves.values()) if v is not None]
        pops_at = [v for v in (window_mean(c, step) for c in pop_curves.values()) if v is not None]
        if not singles_at or not pops_at:
            verdicts.append("–")
            continue
        low, high = min(singles_at), max(singles_at)
        inside = sum(low <= v <= high for v in pops_at)
        pop_stats, single_stats = (
            across_seeds(list(pop_curves.values()), step),
            across_seeds(list(single_curves.values()), step),
        )
        overlap = "bands overlap" if pop_stats.overlaps(single_stats) else "bands apart"
        verdicts.append(f"{inside} of {len(pops_at)} in [{low:,.0f}, {high:,.0f}]; {overlap}")
    lines.append("| population seeds in the single-seed range | " + " | ".join(verdicts) + " |")
    welch = []
    for step in STEPS:
        pop, single = across_seeds(list(pop_curves.values()), step), across_seeds(list(single_curves.values()), step)
        if pop is None or single is None or pop.std is None or single.std is None:
            welch.append("–")
            continue
        error = (pop.std**2 / pop.n + single.std**2 / single.n) ** 0.5
        welch.append(f"{(pop.mean - single.mean) / error:+.2f}")
    lines.append("| population − single-seed mean, in standard errors (Welch's t) | " + " | ".join(welch) + " |")
    return "\n".join(lines)


def figure(population: list[Path], singles: list[Path], output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mbpo_pl.plot import _draw_band

    last = max(STEPS)
    fig, axis = plt.subplots(figsize=(7, 4.2))
    published = published_curves("mbpo", "Hopper-v5")
    grid = list(range(6000, last + 1, 1000))
    if published is not None:
        _draw_band(axis, smoothed(list(published.curves.values()), grid), "grey", "published MBPO, mean ± std",
                   hatch=True)  # fmt: skip
    for paths, colour, label in ((singles, "tab:blue", "single-seed runs"), (population, "tab:red", "population")):
        curves = [_curve(path) for path in paths]
        for i, curve in enumerate(curves):
            points = [(s, v) for s, v in curve if s <= last]
            axis.plot(*zip(*points), color=colour, alpha=0.35, linewidth=0.8,
                      label=f"{label}, each seed" if i == 0 else None)  # fmt: skip
        _draw_band(axis, smoothed(curves, grid), colour, f"{label}, mean ± std")
    axis.set_xlabel("env steps")
    axis.set_ylabel("evaluation return")
    axis.text(0.99, 0.01, "bands: mean ± std over seeds of each seed's mean over the last 5k env steps",
              transform=axis.transAxes, ha="right", va="bottom", fontsize=7)  # fmt: skip
    axis.set_title("Hopper-v5: a 4-seed population (one process) vs single-seed runs")
    axis.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=Path, nargs="+", required=True, help="the population's seed CSVs")
    parser.add_argument("--write", type=Path, default=None, help="write the table into this markdown file")
    parser.add_argument("-o", "--output", type=Path, default=None, help="draw the figure to this PNG")
    args = parser.parse_args()
    text = table(args.population, SINGLE)
    print(text)
    if args.write is not None:
        args.write.write_text(
            "# Hopper-v5: a 4-seed population against single-seed runs\n\n"
            "Generated by `python docs/results/investigations/hopper_population.py` (command in its docstring) from\n"
            "the committed CSVs; returns on the results' basis (mean of each seed's evaluations in (X - 5k, X]).\n\n"
            + text
            + "\n\n![population vs single-seed runs](hopper_population.png)\n\n"
            "The population's seeds (`hopper_population_seed<s>.csv`; `runs.yaml`: bf16-mixed, one torch thread,\n"
            "code 12d812f) and the single-seed runs (bf16-mixed, and one 32-true) ran on the same Intel Xeon. With\n"
            "four runs on each side the single-seed range is a narrow yardstick; the mean ± sample std bands and\n"
            "Welch's t (the difference of the means in standard errors) are the figures to read.\n"
        )
    if args.output is not None:
        print(figure(args.population, SINGLE, args.output))


if __name__ == "__main__":
    main()
