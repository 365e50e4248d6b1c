"""Summarise a run's TensorBoard logs: the evaluation curve and where the wall time went.

``python -m mbpo_pl.report logs/Hopper-v5/version_0 [--block 5000]``
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a TensorBoard run directory, e.g. logs/Hopper-v5/version_0")
    parser.add_argument("--block", type=int, default=5000, help="env steps per row of the time table")
    args = parser.parse_args(argv)
    if not Path(args.run_dir).is_dir():
        raise SystemExit(f"{args.run_dir}: no such run directory")
    scalars = load_scalars(args.run_dir)
    print("env_steps  eval/return")
    for step, value in scalars.get("eval/return", []):
        print(f"{step:9d}  {value:10.1f}")
    rows = time_split(scalars, args.block)
    if rows:
        print("\nwall seconds per 1000 env steps")
        print(f"{'env steps':>15}" + "".join(f"{p:>12}" for p in (*TIME_PARTS, "total")))
        for row in rows:
            label = f"{row['from']}-{row['to']}"
            print(f"{label:>15}" + "".join(f"{row[p]:12.1f}" for p in (*TIME_PARTS, "total")))


if __name__ == "__main__":
    main()
