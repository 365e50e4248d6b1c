"""Summarise runs' TensorBoard logs: the evaluation curve, the training's health signals and where the wall time
went, per block of env steps.

``python -m mbpo_pl report logs/Hopper-v5/version_0 [logs/Hopper-v5/version_1 ...] [--block 5000] [--compare]``

The evaluation curve shows, beside the return, the episode sum of each reward term the env reports
(``reward_forward``, ``reward_ctrl``, ``reward_survive``, ...): a return made of the survival bonus alone is a
policy that stands still.

The health table holds what to look at when a run falls behind the paper: the model's holdout MSE (elites) and
training epochs, SAC's Q values, temperature and critic loss, the rollout length, the fraction of model rollouts
that terminated before the last step, the fraction of terminal transitions in samples of the model and the real
buffer (with 1-step rollouts the only sign that the termination function fires), the model transitions dropped as
non-finite and the trusted horizon.

``--compare`` puts the runs side by side instead: one table per health signal, one column per run, e.g. a run
that fell behind the paper next to the same seed in ``32-true``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TIME_PARTS = ("sac", "model_train", "rollout", "env", "eval", "diagnostics")


def load_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(env_step, value), ...]}`` from the event files under ``run_dir``."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def time_split(scalars: dict[str, list[tuple[int, float]]], block: int) -> list[dict[str, float]]:
    """Wall seconds per 1000 env steps for each part, over consecutive blocks of ``block`` env steps."""
    epoch_seconds = dict(scalars.get("time/epoch_s", []))
    steps = sorted(epoch_seconds)
    rows: list[dict[str, float]] = []
    for start in range(0, (steps[-1] if steps else 0), block):
        in_block = [s for s in steps if start < s <= start + block]
        if len(in_block) < 2:
            continue
        span = in_block[-1] - in_block[0] + (in_block[1] - in_block[0])  # env steps covered by these epochs
        row = {"from": start, "to": start + block}
        for part in TIME_PARTS:
            values = dict(scalars.get(f"time/{part}_s", []))
            row[part] = 1000 * sum(values.get(s, 0.0) for s in in_block) / span
        row["total"] = 1000 * sum(epoch_seconds[s] for s in in_block) / span
        rows.append(row)
    return rows


# (column, tag, how the values of a block are combined)
HEALTH_COLUMNS = (
    ("eval", "eval/return", "mean"),
    ("holdout_mse", "dynamics/holdout_mse_elites", "mean"),
    ("model_epochs", "dynamics/epochs", "mean"),
    ("q", "train/q", "mean"),
    ("alpha", "train/alpha", "mean"),
    ("critic_loss", "train/critic_loss", "mean"),
    ("k", "rollout/length", "last"),
    ("terminated", "rollout/kept_fraction", "mean_complement"),
    ("model_term", "rollout/model_terminal_fraction", "mean"),
    ("real_term", "rollout/real_terminal_fraction", "mean"),
    ("nonfinite", "rollout/dropped_nonfinite", "sum"),
    ("trusted_h", "dynamics/trusted_horizon", "mean"),
)

COMBINE_WORDS = {"mean": "mean", "last": "last value", "sum": "sum", "mean_complement": "1 - mean"}


def health(scalars: dict[str, list[tuple[int, float]]], block: int) -> list[dict[str, float | None]]:
    """Per block of ``block`` env steps ``(from, to]``: each :data:`HEALTH_COLUMNS` value (``None`` where the run
    logged none in that block); ``terminated`` is the mean fraction of model rollouts ended before their last step."""
    last = max((step for points in scalars.values() for step, _ in points), default=0)
    rows: list[dict[str, float | None]] = []
    for start in range(0, last, block):
        row: dict[str, float | None] = {"from": start, "to": start + block}
        for column, tag, combine in HEALTH_COLUMNS:
            values = [value for step, value in scalars.get(tag, []) if start < step <= start + block]
            if not values:
                row[column] = None
            elif combine == "sum":
                row[column] = sum(values)
            elif combine == "last":
                row[column] = values[-1]
            elif combine == "mean_complement":
                row[column] = 1 - sum(values) / len(values)
            else:
                row[column] = sum(values) / len(values)
        if any(row[column] is not None for column, _, _ in HEALTH_COLUMNS):
            rows.append(row)
    return rows


def _cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>13}"
    return f"{value:13.4g}" if abs(value) < 1000 else f"{value:13.0f}"


def print_run(run_dir: str | Path, block: int) -> None:
    scalars = load_scalars(run_dir)
    print(f"== {run_dir}")
    terms = sorted(tag for tag in scalars if tag.startswith("eval/reward_"))  # the env's reward terms, if any
    term_values = [dict(scalars[tag]) for tag in terms]
    print("env_steps  eval/return" + "".join(f"{tag.removeprefix('eval/'):>16}" for tag in terms))
    for step, value in scalars.get("eval/return", []):
        cells = "".join(f"{values[step]:16.1f}" if step in values else f"{'-':>16}" for values in term_values)
        print(f"{step:9d}  {value:11.1f}{cells}")
    for step, _ in scalars.get("population/stopped", [])[-1:]:  # a population's seed stopped by a non-finite training
        print(f"stopped at env step {step}: its training became non-finite (the population's checkpoints hold its "
              "state at the stop)")  # fmt: skip
    for step, count in scalars.get("population/stopped_seeds", [])[-1:]:
        print(f"seeds stopped by non-finite training: {count:.0f} (by env step {step}; each seed folder says when)")
    rows = health(scalars, block)
    if rows:
        print(f"\nhealth per {block} env steps (means; k: last; nonfinite: sum)")
        print(f"{'env steps':>15}" + "".join(f"{column:>13}" for column, _, _ in HEALTH_COLUMNS))
        for row in rows:
            label = f"{row['from']}-{row['to']}"
            print(f"{label:>15}" + "".join(_cell(row[column]) for column, _, _ in HEALTH_COLUMNS))
    rows = time_split(scalars, block)
    if rows:
        print("\nwall seconds per 1000 env steps")
        print(f"{'env steps':>15}" + "".join(f"{p:>12}" for p in (*TIME_PARTS, "total")))
        for row in rows:
            label = f"{row['from']}-{row['to']}"
            print(f"{label:>15}" + "".join(f"{row[p]:12.1f}" for p in (*TIME_PARTS, "total")))


def print_comparison(run_dirs: list[str], block: int) -> None:
    """One table per :data:`HEALTH_COLUMNS` signal: a row per block of ``block`` env steps, a column per run."""
    tables = [{row["from"]: row for row in health(load_scalars(run_dir), block)} for run_dir in run_dirs]
    for index, run_dir in enumerate(run_dirs):
        print(f"run {index}: {run_dir}")
    starts = sorted({start for table in tables for start in table})
    for column, tag, combine in HEALTH_COLUMNS:
        cells = [[table[start][column] if start in table else None for table in tables] for start in starts]
        if all(value is None for row in cells for value in row):
            continue  # no run logged this signal
        print(f"\n{column} ({tag}, {COMBINE_WORDS[combine]} per {block} env steps)")
        print(f"{'env steps':>15}" + "".join(f"{'run ' + str(index):>13}" for index in range(len(run_dirs))))
        for start, row in zip(starts, cells, strict=True):
            print(f"{f'{start}-{start + block}':>15}" + "".join(_cell(value) for value in row))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("run_dirs", nargs="+", help="TensorBoard run directories, e.g. logs/Hopper-v5/version_0")
    parser.add_argument("--block", type=int, default=5000, help="env steps per row of the tables")
    parser.add_argument("--compare", action="store_true", help="the runs' health signals side by side")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        if not Path(run_dir).is_dir():
            raise SystemExit(f"{run_dir}: no such run directory")
    if args.block < 1:
        raise SystemExit(f"--block {args.block}: must be a positive number of env steps")
    if args.compare:
        print_comparison(args.run_dirs, args.block)
        return
    for run_dir in args.run_dirs:
        print_run(run_dir, args.block)


if __name__ == "__main__":
    main()
