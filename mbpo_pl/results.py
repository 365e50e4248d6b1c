"""Evaluation curves as committed data, and the results table and figures generated from them.

    python -m mbpo_pl results export RUN_DIR... -o docs/results/hopper_seed0.csv [--hardware "2 CPU cores (...)"]
    python -m mbpo_pl results table [docs/results] [--write README.md]
    python -m mbpo_pl results plot [docs/results] [-o docs/results]

``export`` reads the TensorBoard logs of one run (several folders when a run was resumed into new ones) and writes
``env_steps,eval_return,wall_s`` (``wall_s``: training wall seconds up to that evaluation, from ``time/epoch_s``,
so pauses between processes and suspensions by SIGTSTP are not counted), and records the run's env, seed,
precision and hardware in ``runs.yaml`` beside the CSV. ``table`` prints the markdown table (``--write`` replaces
the block between ``<!-- results-table -->`` and ``<!-- /results-table -->`` in a file); ``plot`` draws one figure
per env with the paper's MBPO band.
"""

from __future__ import annotations

import argparse
import csv
import platform
import re
import statistics
from pathlib import Path

import yaml

from mbpo_pl.plot import PAPER_MBPO_RETURNS, draw_curves
from mbpo_pl.report import load_scalars

RESULTS_DIR = Path("docs/results")
MANIFEST = "runs.yaml"
WINDOW = 5000  # a return "at step S" is the mean of the evaluations in (S - WINDOW, S]


def last_window(last_step: int) -> int:
    """The window of the return at a run's last step: 5k, or the last fifth of a run shorter than 25k."""
    return min(WINDOW, max(last_step // 5, 1))


REFERENCE_STEPS = (50_000, 100_000)
PAPER_ENV_VERSION = "v5"  # the Gymnasium version of our configs of the paper envs
BEGIN, END = "<!-- results-table -->", "<!-- /results-table -->"

# How our Gymnasium v5 configs differ from the v2 envs the paper ran, in the table's words; each config's header
# (conf/<env>.yaml) gives the details and the Gymnasium changelog they come from.
V2_DIFFERENCES = {
    "HalfCheetah": "none",
    "Hopper": "no healthy reward on the falling step (1 less per fall)",
    "Walker2d": "v2's feet loaded; no healthy reward on the falling step (1 less per fall)",
    "Ant": "no healthy reward on the falling step (1 less per fall); MuJoCo 3 contacts, so only approximately",
    "Humanoid": "no healthy reward on the falling step (5 less per fall); MuJoCo 3 contacts and a revised model, "
    "so only approximately",
    "InvertedPendulum": "no reward on the failing step (1 less per failure)",
    "InvertedDoublePendulum": "no healthy reward on the failing step; 9-dim observation (v2: 11, two always 0)",
    "Pendulum": "not a paper env",
}


def eval_curve(run_dirs: list[Path]) -> list[tuple[int, float, float]]:
    """``[(env_steps, eval_return, wall_s)]`` of one run from its TensorBoard folders, in env-step order (a step
    logged by several folders, as around a resume, keeps the later folder's value)."""
    returns: dict[int, float] = {}
    epoch_seconds: dict[int, float] = {}
    for run_dir in run_dirs:
        scalars = load_scalars(run_dir)
        returns.update(dict(scalars.get("eval/return", [])))
        epoch_seconds.update(dict(scalars.get("time/epoch_s", [])))
    if not returns:
        raise SystemExit(f"{', '.join(map(str, run_dirs))}: no eval/return logged (an mbpo_pl run folder?)")
    rows, elapsed, epochs = [], 0.0, sorted(epoch_seconds.items())
    for step in sorted(returns):
        while epochs and epochs[0][0] <= step:
            elapsed += epochs.pop(0)[1]
        rows.append((step, returns[step], round(elapsed, 1)))
    return rows


def this_machine() -> str:
    """A short hardware label: the CPU model (``/proc/cpuinfo``), or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if match:
            return re.sub(r"\s+", " ", match.group(1)).strip()
    return platform.processor() or platform.machine()


def export(run_dirs: list[Path], output: Path, hardware: str | None = None) -> Path:
    """Write the run's curve to ``output`` and its description to ``runs.yaml`` beside it."""
    config_file = run_dirs[-1] / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_steps", "eval_return", "wall_s"])
        writer.writerows(eval_curve(run_dirs))
    manifest_path = output.parent / MANIFEST
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.is_file() else {}
    threads = config.get("torch_threads")
    manifest[output.name] = {
        "env_id": config.get("data", {}).get("env_id", "unknown"),
        "seed": config.get("seed_everything"),
        "precision": config.get("trainer", {}).get("precision") or "32-true",  # Lightning's default
        "hardware": hardware or f"{this_machine()}" + (f", {threads} torch thread(s)" if threads else ""),
    }
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=True))
    return output


def read_curve(path: Path) -> list[tuple[int, float, float]]:
    with path.open() as handle:
        return [(int(r["env_steps"]), float(r["eval_return"]), float(r["wall_s"])) for r in csv.DictReader(handle)]


def return_at(curve: list[tuple[int, float, float]], step: int, window: int = WINDOW) -> float | None:
    """Mean evaluation return in ``(step - window, step]``, or ``None`` when the run did not reach ``step``."""
    if not curve or curve[-1][0] < step:
        return None
    window = [ret for s, ret, _ in curve if step - window < s <= step]
    return statistics.fmean(window) if window else None


def _paper_figure(env_id: str, step: int) -> tuple[float, float] | None:
    """The paper's MBPO ``(mean, std)`` for ``env_id`` at ``step``, if it reports one."""
    for ref_step, mean, std in PAPER_MBPO_RETURNS.get(env_id.split("-")[0], []):
        if ref_step == step:
            return mean, std
    return None


def paper_at(env_id: str, step: int) -> str:
    figure = _paper_figure(env_id, step)
    return "—" if figure is None else f"{figure[0]:,.0f} ± {figure[1]:,.0f}"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _sigmas(value: float, env_id: str, step: int) -> str | None:
    """``value``'s distance from the paper's mean in the paper's standard deviations, e.g. ``+2.0 σ`` (below -1 σ is
    under the paper's band, above +1 σ over it), or ``None`` where the paper has no figure."""
    figure = _paper_figure(env_id, step)
    return None if figure is None else f"{(value - figure[0]) / figure[1]:+.1f} σ"


def _against_paper(value: float | None, env_id: str, step: int) -> str:
    """``value`` formatted with its distance from the paper's mean, e.g. ``1,240 (+2.0 σ)``."""
    sigmas = None if value is None else _sigmas(value, env_id, step)
    return _fmt(value) if sigmas is None else f"{value:,.0f} ({sigmas})"


def load_runs(results_dir: Path) -> list[tuple[str, dict, list[tuple[int, float, float]]]]:
    """``[(csv name, manifest entry, curve)]`` for every CSV in ``results_dir``, ordered by env then seed."""
    manifest_path = results_dir / MANIFEST
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.is_file() else {}
    runs = []
    for path in sorted(results_dir.glob("*.csv")):
        if path.name not in manifest:
            raise SystemExit(f"{path}: not described in {manifest_path} (write CSVs with `results export`)")
        runs.append((path.name, manifest[path.name], read_curve(path)))
    return sorted(runs, key=lambda run: (run[1]["env_id"], run[1]["seed"] or 0))


def _mean_std(values: list[float]) -> str:
    """``mean ± std`` (sample std over seeds); a single value alone."""
    if len(values) == 1:
        return _fmt(values[0])
    return f"{statistics.fmean(values):,.0f} ± {statistics.stdev(values):,.0f}"


def _last_return(curve: list[tuple[int, float, float]]) -> float | None:
    return return_at(curve, curve[-1][0], last_window(curve[-1][0]))


def _by_env(runs: list[tuple[str, dict, list[tuple[int, float, float]]]]) -> dict[str, list]:
    """The runs of :func:`load_runs` grouped by env id, in their order."""
    grouped: dict[str, list] = {}
    for run in runs:
        grouped.setdefault(run[1]["env_id"], []).append(run)
    return grouped


def _row(env_id: str, head: list[str], at_steps: list[str], tail: list[str]) -> str:
    """A table row: ``head`` (env, seed, steps reached), each reference step's return beside the paper's, ``tail``,
    and how the env differs from the paper's."""
    cells = list(head)
    for step, value in zip(REFERENCE_STEPS, at_steps):
        cells += [value, paper_at(env_id, step)]
    return "| " + " | ".join(cells + tail + [V2_DIFFERENCES.get(env_id.split("-")[0], "—")]) + " |"


def _seeds_row(env_id: str, curves: list[list[tuple[int, float, float]]], seeds: list) -> str:
    """The row of an env run with several seeds: mean ± std over the seeds that reached each step (``n`` of them
    when not all did), and in the last-step column over all seeds at the least step they all reached (a mean of
    each seed's own last step would mix returns from different stages of training)."""
    at_steps = []
    for step in REFERENCE_STEPS:
        reached = [value for value in (return_at(curve, step) for curve in curves) if value is not None]
        if not reached:
            at_steps.append("—")
            continue
        notes = [f"n = {len(reached)}"] if len(reached) < len(curves) else []
        sigmas = _sigmas(statistics.fmean(reached), env_id, step)
        notes += [sigmas] if sigmas else []
        at_steps.append(_mean_std(reached) + (f" ({', '.join(notes)})" if notes else ""))
    least = min(curve[-1][0] for curve in curves)
    head = [f"{env_id}: {len(curves)} seeds", ", ".join(map(str, seeds)), f"{least:,} (least)"]
    at_least = [return_at(curve, least, last_window(least)) for curve in curves]
    return _row(env_id, head, at_steps, [_mean_std(at_least)] + ["—"] * 3)


def table(results_dir: Path) -> str:
    """The markdown results table: one row per run, a mean ± std row per env with several seeds, and a row with
    the paper's figures for each paper env without a run."""
    header = (
        "| env | seed | env steps reached | return at 50k | paper MBPO at 50k | return at 100k | paper MBPO at 100k "
        "| return at the last step | wall h | precision | hardware | v5 vs the paper's v2 |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    by_env = _by_env(load_runs(results_dir))
    for name in PAPER_MBPO_RETURNS:
        if not any(env_id.split("-")[0] == name for env_id in by_env):
            by_env[f"{name}-{PAPER_ENV_VERSION}"] = []
    for env_id in sorted(by_env):
        runs = by_env[env_id]
        if not runs:
            lines.append(_row(env_id, [env_id, "—", "no run yet"], ["—"] * len(REFERENCE_STEPS), ["—"] * 4))
        for name, meta, curve in runs:
            at_steps = [_against_paper(return_at(curve, step), env_id, step) for step in REFERENCE_STEPS]
            tail = [_fmt(_last_return(curve)), f"{curve[-1][2] / 3600:.1f}", str(meta["precision"]), meta["hardware"]]
            lines.append(_row(env_id, [f"[{env_id}]({name})", str(meta["seed"]), f"{curve[-1][0]:,}"], at_steps, tail))
        if len(runs) > 1:
            lines.append(_seeds_row(env_id, [curve for *_, curve in runs], [meta["seed"] for _, meta, _ in runs]))
    return "\n".join(lines)


def write_table(results_dir: Path, target: Path) -> None:
    """Replace the marked block in ``target`` with the table (links made relative to ``target``)."""
    text = target.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{target}: no {BEGIN} ... {END} block to replace")
    prefix = Path(results_dir).resolve().relative_to(target.parent.resolve())
    body = re.sub(r"\]\(([^)]+\.csv)\)", lambda m: f"]({prefix.as_posix()}/{m.group(1)})", table(results_dir))
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    target.write_text(f"{before}{BEGIN}\n{body}\n{END}{after}")


def plot(results_dir: Path, output_dir: Path) -> list[Path]:
    """One PNG per env: every seed's curve and the paper's MBPO band where known."""
    written = []
    for env_id, runs in _by_env(load_runs(results_dir)).items():
        curves = [(f"seed {meta['seed']}", [(s, r) for s, r, _ in curve]) for _, meta, curve in runs]
        slug = env_id.split("-")[0].lower()
        written.append(draw_curves({env_id: curves}, output_dir / f"{slug}.png"))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="one run's eval curve from its TensorBoard logs to a CSV")
    exporting.add_argument("run_dirs", nargs="+", type=Path, help="the run's folders (logs/ENV/version_N)")
    exporting.add_argument("-o", "--output", type=Path, required=True, help="CSV to write, e.g. docs/results/x.csv")
    exporting.add_argument("--hardware", default=None, help="hardware label (default: this machine's CPU model)")
    tabling = commands.add_parser("table", help="the markdown results table from the CSVs")
    tabling.add_argument("results_dir", nargs="?", type=Path, default=RESULTS_DIR)
    tabling.add_argument("--write", type=Path, default=None, help="replace the marked table block in this file")
    plotting = commands.add_parser("plot", help="one figure per env with the paper's band")
    plotting.add_argument("results_dir", nargs="?", type=Path, default=RESULTS_DIR)
    plotting.add_argument("-o", "--output-dir", type=Path, default=None, help="default: the results folder")
    args = parser.parse_args(argv)
    if args.command == "export":
        for run_dir in args.run_dirs:
            if not run_dir.is_dir():
                raise SystemExit(f"{run_dir}: no such run directory")
        print(export(args.run_dirs, args.output, args.hardware))
    elif args.command == "table":
        if args.write is not None:
            write_table(args.results_dir, args.write)
        print(table(args.results_dir))
    else:
        for path in plot(args.results_dir, args.output_dir or args.results_dir):
            print(path)
