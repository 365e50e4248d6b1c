"""``python -m mbpo_pl plot RUN_DIR... -o curve.png``: learning curves from logged ``eval/return``.

Runs of the same env are drawn together (one line per run, plus their mean when there are several); where the
paper's MBPO returns are known for that env, they are drawn as a reference band (mean +/- std over seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mbpo_pl.report import load_scalars

# MBPO returns (mean, std over seeds) at given env steps, from the learning curves released with the DHMBPO
# paper (TMLR 2025), which re-ran the official MBPO code.
PAPER_MBPO_RETURNS: dict[str, list[tuple[int, float, float]]] = {
    "Hopper": [(50_000, 1702, 799), (100_000, 3315, 334), (125_000, 3280, 455)],
    "Walker2d": [(50_000, 836, 476), (100_000, 3476, 1048), (300_000, 4864, 488)],
    "HalfCheetah": [(50_000, 7904, 597), (100_000, 9553, 689), (400_000, 13083, 936)],
    "Ant": [(50_000, 782, 229), (100_000, 1453, 876), (300_000, 5281, 699)],
    "Humanoid": [(50_000, 398, 79), (100_000, 579, 133), (300_000, 5162, 350)],
}


def run_env_id(run_dir: Path) -> str:
    """The env id a run was trained on, from the ``config.yaml`` LightningCLI saved beside its logs."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return "unknown env"
    return yaml.safe_load(config.read_text()).get("data", {}).get("env_id", "unknown env")


def plot_runs(run_dirs: list[Path], output: Path, title: str | None = None) -> Path:
    curves: dict[str, list[tuple[str, list[tuple[int, float]]]]] = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise SystemExit(f"{run_dir}: no such run directory")
        points = load_scalars(run_dir).get("eval/return", [])
        if not points:
            raise SystemExit(f"{run_dir}: no eval/return logged (is it a TensorBoard run directory of mbpo_pl?)")
        curves.setdefault(run_env_id(run_dir), []).append(("/".join(run_dir.parts[-3:]), points))
    return draw_curves(curves, output, title)


def draw_curves(
    curves: dict[str, list[tuple[str, list[tuple[int, float]]]]], output: Path, title: str | None = None
) -> Path:
    """One panel per env id: each ``(label, [(env_step, return)])`` curve and the paper's MBPO band where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for axis, (env_id, runs) in zip(axes[0], sorted(curves.items())):
        for label, points in runs:
            steps, returns = zip(*points)
            axis.plot(steps, returns, alpha=0.7 if len(runs) > 1 else 1.0, label=label)
        reference = PAPER_MBPO_RETURNS.get(env_id.split("-")[0])
        if reference:
            steps, means, stds = zip(*reference)
            axis.fill_between(
                steps,
                [m - s for m, s in zip(means, stds)],
                [m + s for m, s in zip(means, stds)],
                color="gray",
                alpha=0.25,
                label="paper MBPO (mean ± std)",
            )
            axis.plot(steps, means, color="gray", linestyle="--", marker="o")
        axis.set_title(title or env_id)
        axis.set_xlabel("env steps")
        axis.set_ylabel("evaluation return")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl plot", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="TensorBoard run directories (logs/ENV/version_N)")
    parser.add_argument("-o", "--output", type=Path, default=Path("curve.png"), help="PNG file to write")
    parser.add_argument("--title", default=None, help="plot title (default: the env id)")
    args = parser.parse_args(argv)
    print(plot_runs(args.run_dirs, args.output, args.title))
