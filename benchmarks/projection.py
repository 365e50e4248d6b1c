"""Full-run hours projected from per-1000-step timings; times nothing.

    python benchmarks/projection.py benchmarks/results_h200.json   # a stored results file, current epochs/call

Epochs per model-training call are decided by early stopping from the data, so the benchmark does not measure them
on its random-policy data but reads them from a real Hopper-v5 run with the paper settings (seed 0, bf16-mixed,
2 CPU cores; ``dynamics/epochs`` in its logs; docs/speed.md): ``epochs_per_call.csv`` beside this file holds, per
block of 5,000 env steps, the mean epochs of the calls in it; the first row (block 0) is the first call (5,000
random transitions, fresh model); the last block's mean stands for every later call. Reprojecting a stored results
file brings a projection made with older epoch figures up to date without the machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mbpo_pl.schedule import rollout_length

EPOCHS_PER_CALL_FILE = Path(__file__).with_name("epochs_per_call.csv")


def load_epochs_per_call(path: Path = EPOCHS_PER_CALL_FILE) -> list[tuple[int, float]]:
    """``[(block start in env steps, mean epochs per call)]`` from the CSV (columns ``block_start,epochs``)."""
    with path.open() as handle:
        rows = [line.strip().split(",") for line in handle if line.strip()]
    return [(int(start), float(epochs)) for start, epochs in rows[1:]]


def epochs_per_call(env_step: int, blocks: list[tuple[int, float]] | None = None) -> float:
    """Epochs of the model-training call at ``env_step`` (the first call is the one at 5,000 steps)."""
    first, *later = blocks if blocks is not None else load_epochs_per_call()
    if env_step <= later[0][0]:
        return first[1]
    return [epochs for start, epochs in later if start < env_step][-1]


def per_1000_sizes(quick: bool) -> dict[str, tuple[int, int]]:
    """``{stage: (real transitions N, rollout length k)}`` of the per-1000-step rows (``quick``: a smaller late
    buffer)."""
    return {"early": (5_000, 1), "late": (100_000 if not quick else 20_000, 15 if not quick else 3)}


def project_hopper_run(early: dict, late: dict, sizes: dict[str, tuple[int, int]], total_steps: int = 125_000) -> float:
    """Projected wall hours of a full Hopper run from the early/late rows measured at ``sizes``
    (:func:`per_1000_sizes`): model-epoch time interpolated linearly in the buffer size, rollout time linearly in
    ``k`` (schedule [20, 100, 1, 15]), epochs per call as above."""
    blocks = load_epochs_per_call()
    hours = 0.0
    (early_n, _), (late_n, late_k) = sizes["early"], sizes["late"]

    def interpolate(key: str, x: float, x0: float, x1: float) -> float:
        return early[key] + (late[key] - early[key]) * (x - x0) / (x1 - x0)

    fixed = early["sac"] + early["env"] + early["eval"]  # per 1000 env steps, independent of the buffer
    for step in range(5000, total_steps, 250):
        epochs = epochs_per_call(step, blocks)
        k = rollout_length((step - 5000) // 1000, 20, 100, 1, 15)
        hours += (
            interpolate("model_epoch_s", step, early_n, late_n) * epochs
            + interpolate("rollout", k, 1, late_k) / 4
            + fixed / 4
        ) / 3600
    return hours


def reproject(path: Path) -> dict[str, float]:
    """The projected full-run hours of both paths from the per-1000-step rows stored in a results file."""
    stored = json.loads(path.read_text())
    results, sizes = stored["results"], per_1000_sizes(stored["meta"]["quick"])
    projected = {}
    for path_name in ("plain", "fast"):
        rows = {
            stage: {key.removeprefix(f"per1000_{stage}_{path_name}_"): value for key, value in results.items()
                    if key.startswith(f"per1000_{stage}_{path_name}_")}
            for stage in ("early", "late")
        }  # fmt: skip
        if not all(rows.values()):
            raise SystemExit(f"{path} has no per-1000-step rows (it was written with --skip-per-1000)")
        projected[f"projected_hopper_125k_hours_{path_name}"] = project_hopper_run(rows["early"], rows["late"], sizes)
    return projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, metavar="RESULTS_JSON", help="a file written by benchmarks/bench.py")
    for key, value in reproject(parser.parse_args().results).items():
        print(f"{key}  {value:.3f}")


if __name__ == "__main__":
    main()
