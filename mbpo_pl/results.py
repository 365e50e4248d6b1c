"""Evaluation curves as committed data, and the results table and figures generated from them.

    python -m mbpo_pl results export RUN_DIR... -o docs/results/hopper_seed0.csv [--hardware "..."] [--note "..."]
                                     [--replace]
    python -m mbpo_pl results table [docs/results] [--write README.md]
    python -m mbpo_pl results table --runs [docs/results] [--write docs/results.md]
    python -m mbpo_pl results plot [docs/results] [-o docs/results]

``export`` reads the TensorBoard logs of one run (several folders when a run was resumed into new ones) and writes
``env_steps,eval_return,wall_s`` (``wall_s``: training wall seconds up to that evaluation, from ``time/epoch_s``,
so pauses between processes and suspensions by SIGTSTP are not counted), and records the run's env, seed,
algorithm, precision, hardware, config hash and every start with its code commit in ``runs.yaml`` beside the CSV.
It updates an existing CSV only with a curve that holds all its evaluations (the same run, further on); one that
would lose evaluations (another run's curve, or a longer one) is refused, saying where the two curves part, unless
``--replace``.
``table`` prints the markdown table of each env and algorithm, ours beside the published curves on the same basis
(:mod:`mbpo_pl.basis`; ``--runs``: one row per run; ``--write`` replaces the table's marked block in a file);
``plot`` draws one figure per env against env steps and wall-clock hours.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from mbpo_pl.basis import REFERENCE_DIR, PublishedCurves, SeedStats, across_seeds, published_curves, window_mean
from mbpo_pl.errors import ConfigError, exit_with_error
from mbpo_pl.run_curves import (  # noqa: F401 (export, read_curve, return_at: this module's public API too)
    RESULTS_DIR,
    Run,
    export,
    last_window,
    load_runs,
    read_curve,
    return_at,
)

REFERENCE_STEPS = (50_000, 100_000)
PAPER_ENVS = ("Hopper", "Walker2d", "HalfCheetah", "Ant", "Humanoid")
PAPER_ENV_VERSION = "v5"  # the Gymnasium version of our configs of the paper envs
TABLES = {"summary": ("<!-- results-table -->", "<!-- /results-table -->"),
          "runs": ("<!-- results-runs -->", "<!-- /results-runs -->")}  # fmt: skip

# How our Gymnasium v5 configs differ from the v2 envs the paper ran, in the table's words; each config's header
# (conf/<env>.yaml) gives the details and the Gymnasium changelog they come from.
V2_DIFFERENCES = {
    "HalfCheetah": "none",
    "Hopper": "no healthy reward on the falling step (1 less per fall)",
    "Walker2d": "v2's feet loaded; no healthy reward on the falling step (1 less per fall)",
    "Ant": "no healthy reward on the falling step (1 less per fall); MuJoCo 3 contacts, so its returns compare with "
    "the paper's only approximately and the published σ is no fair yardstick (the reward terms in docs/results.md "
    "show what a return is made of)",
    "Humanoid": "no healthy reward on the falling step (5 less per fall); MuJoCo 3 contacts and a revised model, "
    "so only approximately",
    "InvertedPendulum": "no reward on the failing step (1 less per failure)",
    "InvertedDoublePendulum": "no healthy reward on the failing step; 9-dim observation (v2: 11, two always 0)",
    "Pendulum": "not a paper env",
}


def _env_order(env_id: str) -> tuple[int, str]:
    name = env_id.split("-")[0]
    return (PAPER_ENVS.index(name) if name in PAPER_ENVS else len(PAPER_ENVS), env_id)


def _by_env_and_algorithm(runs: list[Run]) -> dict[str, dict[str, list[Run]]]:
    """``{env_id: {algorithm: [runs]}}``, paper envs first (with no run yet: empty), then the others."""
    grouped: dict[str, dict[str, list[Run]]] = {f"{name}-{PAPER_ENV_VERSION}": {} for name in PAPER_ENVS}
    for run in runs:
        grouped.setdefault(run.env_id, {}).setdefault(run.algorithm, []).append(run)
    return {env_id: grouped[env_id] for env_id in sorted(grouped, key=_env_order)}


def _cell(stats: SeedStats | None) -> str:
    return "—" if stats is None else str(stats)


def _versus(ours: SeedStats | None, published: SeedStats | None) -> str:
    """Our distance from the published mean in the published σ, and whether the ``mean ± std`` bands overlap."""
    if ours is None or published is None:
        return "—"
    sigmas = ours.sigmas_from(published)
    distance = "" if sigmas is None else f"{sigmas:+.1f} σ, "
    return distance + ("bands overlap" if ours.overlaps(published) else "bands apart")


def _our_row(env_id: str, algorithm: str, runs: list[Run], published: PublishedCurves | None) -> str:
    curves = [run.returns for run in runs]
    least = min(run.last_step for run in runs)
    reference = list(published.curves.values()) if published is not None else []
    at = [across_seeds(curves, step) for step in REFERENCE_STEPS]
    versus = [_versus(ours, across_seeds(reference, step) if reference else None)
              for ours, step in zip(at, REFERENCE_STEPS)]  # fmt: skip
    last = across_seeds(curves, least, last_window(least))
    versus.append(_versus(last, across_seeds(reference, least, last_window(least)) if reference else None))
    wall = statistics.fmean(run.wall_hours_at(least) for run in runs)
    seeds = ", ".join(str(run.meta["seed"]) for run in runs)
    cells = [env_id, algorithm, seeds, f"{least:,}", *map(_cell, at), _cell(last), *versus, f"{wall:.1f}"]
    return "| " + " | ".join(cells) + " |"


def _published_row(env_id: str, published: PublishedCurves) -> str:
    curves = list(published.curves.values())
    at = [across_seeds(curves, step) for step in REFERENCE_STEPS]
    last = across_seeds(curves, published.last_step)
    hours = max(h for h, _ in next(iter(published.hours.values())))
    cells = [env_id, f"published {published.algorithm}", f"{len(curves)} seeds", f"{published.last_step:,}",
             *map(_cell, at), _cell(last), "—", "—", "—", f"{hours:.1f} (authors' hardware)"]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def table(results_dir: Path, reference_dir: Path = REFERENCE_DIR) -> str:
    """The markdown results table: per env and algorithm, our seeds and the published curves on one basis."""
    header = (
        "| env | algorithm | seeds | env steps (all seeds) | return at 50k | return at 100k | return at the last step "
        "| vs published at 50k | vs published at 100k | vs published at the last step | wall h |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    grouped = _by_env_and_algorithm(load_runs(results_dir))
    for env_id, by_algorithm in grouped.items():
        for algorithm in ("MBPO", "SAC"):
            published = published_curves(algorithm, env_id, reference_dir)
            # the algorithm's one-agent runs, then its seeds trained as populations (their own rows)
            variants = sorted(a for a in by_algorithm if a == algorithm or a.startswith(f"{algorithm}, "))
            for variant in variants:
                lines.append(_our_row(env_id, variant, by_algorithm[variant], published))
            if not variants and published is not None:
                lines.append("| " + " | ".join([env_id, algorithm, "no run yet"] + ["—"] * 8) + " |")
            if published is not None:
                lines.append(_published_row(env_id, published))
    lines += ["", "How each Gymnasium v5 env differs from the paper's v2:", ""]
    lines += [f"* {env_id}: {V2_DIFFERENCES.get(env_id.split('-')[0], '—')}" for env_id in grouped]
    return "\n".join(lines)


def runs_table(results_dir: Path) -> str:
    """One row per committed run: where it got, its returns on the same basis, and how it was made."""
    header = (
        "| run | algorithm | seed | env steps reached | return at 50k | return at 100k | return at the last step "
        "| wall h | precision | hardware | code |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for run in load_runs(results_dir):
        at = [window_mean(run.returns, step) for step in REFERENCE_STEPS]
        last = window_mean(run.returns, run.last_step, last_window(run.last_step))
        code = ", ".join(run.meta.get("commits", [])) or "not recorded"
        returns = [("—" if v is None else f"{v:,.0f}") for v in (*at, last)]
        wall = f"{run.wall_hours_at(run.last_step):.1f}"
        cells = [f"[{run.env_id}]({run.name})", run.algorithm, str(run.meta["seed"]), f"{run.last_step:,}",
                 *returns, wall, str(run.meta["precision"]), run.meta["hardware"], code]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(results_dir: Path, target: Path, which: str = "summary") -> None:
    """Replace ``which`` table's marked block in ``target`` (links made relative to ``target``)."""
    begin, end = TABLES[which]
    text = target.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{target}: no {begin} ... {end} block to replace")
    prefix = Path(results_dir).resolve().relative_to(target.parent.resolve())
    body = table(results_dir) if which == "summary" else runs_table(results_dir)
    body = re.sub(r"\]\(([^)]+\.csv)\)", lambda m: f"]({prefix.as_posix()}/{m.group(1)})", body)
    before, rest = text.split(begin, 1)
    after = rest.split(end, 1)[1]
    target.write_text(f"{before}{begin}\n{body}\n{end}{after}")


def plot(results_dir: Path, output_dir: Path, reference_dir: Path = REFERENCE_DIR) -> list[Path]:
    """One PNG per env: returns against env steps and against wall-clock hours, ours and published."""
    from mbpo_pl.plot import draw_results

    written = []
    for env_id, by_algorithm in _by_env_and_algorithm(load_runs(results_dir)).items():
        if not by_algorithm:
            continue
        published = {algorithm: published_curves(algorithm, env_id, reference_dir) for algorithm in ("MBPO", "SAC")}
        ours = {algorithm: [(run.meta["seed"], run.curve) for run in runs] for algorithm, runs in by_algorithm.items()}
        hardware = sorted({run.meta["hardware"] for runs in by_algorithm.values() for run in runs})
        slug = env_id.split("-")[0].lower()
        written.append(draw_results(env_id, ours, published, hardware, output_dir / f"{slug}.png"))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="one run's eval curve from its TensorBoard logs to a CSV")
    exporting.add_argument("run_dirs", nargs="+", type=Path, help="the run's folders (logs/ENV/version_N)")
    exporting.add_argument("-o", "--output", type=Path, required=True, help="CSV to write, e.g. docs/results/x.csv")
    exporting.add_argument("--hardware", default=None, help="hardware label (default: this machine's CPU model)")
    exporting.add_argument("--note", default=None, help="kept in runs.yaml beside the run (e.g. why it restarted)")
    exporting.add_argument("--commit", default=None, help="code commit of a run whose folder has no provenance.yaml")
    exporting.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a CSV holding evaluations this run lacks (another run's, or a longer one)",
    )
    tabling = commands.add_parser("table", help="the markdown results table from the CSVs")
    tabling.add_argument("results_dir", nargs="?", type=Path, default=RESULTS_DIR)
    tabling.add_argument("--write", type=Path, default=None, help="replace the marked table block in this file")
    tabling.add_argument("--runs", action="store_true", help="the per-run table (<!-- results-runs --> block)")
    plotting = commands.add_parser("plot", help="one figure per env with the paper's band")
    plotting.add_argument("results_dir", nargs="?", type=Path, default=RESULTS_DIR)
    plotting.add_argument("-o", "--output-dir", type=Path, default=None, help="default: the results folder")
    args = parser.parse_args(argv)
    if args.command == "export":
        for run_dir in args.run_dirs:
            if not run_dir.is_dir():
                raise SystemExit(f"{run_dir}: no such run directory")
        try:
            print(export(args.run_dirs, args.output, args.hardware, args.note, args.commit, args.replace))
        except ConfigError as err:
            exit_with_error(err)
    elif args.command == "table":
        which = "runs" if args.runs else "summary"
        if args.write is not None:
            write_table(args.results_dir, args.write, which)
        print(runs_table(args.results_dir) if args.runs else table(args.results_dir))
    else:
        for path in plot(args.results_dir, args.output_dir or args.results_dir):
            print(path)
