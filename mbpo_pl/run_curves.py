"""Committed learning curves as data: one run's evaluation curve exported from its TensorBoard logs to a CSV with its
description in ``runs.yaml`` (env, seed, algorithm, precision, hardware, config hash, every start and its code
commit), and the CSVs read back as :class:`Run` objects for the results table and figures (:mod:`mbpo_pl.results`).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from mbpo_pl.basis import WINDOW, Curve, window_mean
from mbpo_pl.errors import ConfigError
from mbpo_pl.provenance import recorded_starts, this_machine
from mbpo_pl.report import load_scalars
from mbpo_pl.seed_loggers import seed_of

RESULTS_DIR = Path("docs/results")
MANIFEST = "runs.yaml"


def last_window(last_step: int) -> int:
    """The window of the return at a run's last step: 5k, or the last fifth of a run shorter than 25k."""
    return min(WINDOW, max(last_step // 5, 1))


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


def _run_starts(run_dirs: list[Path]) -> list[dict]:
    """Every start of the run (fresh or resumed) recorded in its folders' ``provenance.yaml``, in order."""
    return [start for run_dir in run_dirs for start in recorded_starts(run_dir)]


def dropped_evaluations(existing: list[tuple[int, float, float]], new: list[tuple[int, float, float]]) -> str | None:
    """What writing curve ``new`` over curve ``existing`` would lose, or ``None`` when every evaluation of
    ``existing`` is in ``new`` with the same return (the same run, exported again after more training)."""
    new_returns = {step: value for step, value, _ in new}
    lost = [(i, step, value) for i, (step, value, _) in enumerate(existing) if new_returns.get(step) != value]
    if not lost:
        return None
    agreeing, step, value = lost[0]  # every evaluation before the first lost one agrees exactly
    if step in new_returns:
        how = f"at {step:,} env steps its return is {value:.6g}, this run's {new_returns[step]:.6g}"
    elif new and step > new[-1][0]:
        how = f"it goes on to {existing[-1][0]:,} env steps, this run only to {new[-1][0]:,}"
    else:
        how = f"this run has no evaluation at {step:,} env steps"
    if agreeing:
        how += f"; its {agreeing} evaluation{'s' if agreeing > 1 else ''} before {step:,} env steps agree exactly"
    return f"{len(lost)} of its {len(existing)} evaluations are not this run's ({how})"


def export(
    run_dirs: list[Path],
    output: Path,
    hardware: str | None = None,
    note: str | None = None,
    commit: str | None = None,
    replace: bool = False,
) -> Path:
    """Write the run's curve to ``output`` and its description to ``runs.yaml`` beside it: env, seed, algorithm,
    precision, hardware and threads, the resolved config's hash, and every start of the run with its code commit
    (from ``provenance.yaml`` in the run folder; ``commit`` for a run whose folder has none); ``note`` is kept
    beside them (e.g. a restart's reason).

    An existing ``output`` is updated only when the new curve holds every evaluation it holds (the same run, further
    on); a curve it would lose evaluations of (another run's, or a longer one) raises :class:`ConfigError` unless
    ``replace``, which also drops that curve's ``runs.yaml`` entry, note included."""
    config_file = run_dirs[-1] / "config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    rows = eval_curve(run_dirs)
    manifest_path = output.parent / MANIFEST
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.is_file() else {}
    if output.is_file():
        loss = dropped_evaluations(read_curve(output), rows)
        if loss is not None and not replace:
            raise ConfigError(
                f"{output} already holds a curve that exporting {', '.join(map(str, run_dirs))} would overwrite: "
                f"{loss}. Write to another file with -o, or pass --replace to replace that curve and its {MANIFEST} "
                "entry."
            )
        if replace:
            manifest.pop(output.name, None)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_steps", "eval_return", "wall_s"])
        writer.writerows(rows)
    threads = config.get("torch_threads")
    starts = _run_starts(run_dirs)
    entry = {
        "env_id": config.get("data", {}).get("env_id", "unknown"),
        "seed": config.get("seed_everything"),
        "algorithm": "MBPO" if config.get("loop", {}).get("use_model", True) else "SAC",
        "precision": config.get("trainer", {}).get("precision") or "32-true",  # Lightning's default
        "hardware": hardware or f"{this_machine()}" + (f", {threads} torch thread(s)" if threads else ""),
        "config_sha256": hashlib.sha256(config_file.read_bytes()).hexdigest()[:16] if config_file.is_file() else None,
    }
    population = _population_seeds(run_dirs[-1])
    if population is not None:  # a seed of a population run (--seeds): trained beside these seeds in one process
        entry["population"] = population
    if starts:
        entry["commits"] = list(dict.fromkeys(start["commit"] for start in starts))
        entry["starts"] = starts
    elif commit:
        entry["commits"] = [commit]
    if note or manifest.get(output.name, {}).get("note"):
        entry["note"] = note or manifest[output.name]["note"]
    manifest[output.name] = {**{k: v for k, v in manifest.get(output.name, {}).items() if k not in entry}, **entry}
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=True, width=110))
    return output


def _population_seeds(run_dir: Path) -> list[int] | None:
    """The seeds of the population a seed folder (``<run>/seed_<s>``) belongs to, from the run's ``config.yaml``."""
    parent_config = run_dir.parent / "config.yaml"
    if seed_of(run_dir) is None or not parent_config.is_file():
        return None
    return yaml.safe_load(parent_config.read_text()).get("seeds")


def read_curve(path: Path) -> list[tuple[int, float, float]]:
    with path.open() as handle:
        return [(int(r["env_steps"]), float(r["eval_return"]), float(r["wall_s"])) for r in csv.DictReader(handle)]


def return_at(curve: list[tuple[int, float, float]], step: int, window: int = WINDOW) -> float | None:
    """Mean evaluation return in ``(step - window, step]``, or ``None`` when the run did not reach ``step``."""
    return window_mean([(s, r) for s, r, _ in curve], step, window)


@dataclass
class Run:
    """One committed curve: its CSV name, its ``runs.yaml`` entry and ``[(env_steps, return, wall_s)]``."""

    name: str
    meta: dict
    curve: list[tuple[int, float, float]]

    @property
    def env_id(self) -> str:
        return self.meta["env_id"]

    @property
    def algorithm(self) -> str:
        """``MBPO`` or ``SAC``; a population's seed: ``MBPO, 4 seeds in one process`` (its own rows and band)."""
        algorithm = self.meta.get("algorithm", "MBPO")
        population = self.meta.get("population")
        return algorithm if population is None else f"{algorithm}, {len(population)} seeds in one process"

    @property
    def returns(self) -> Curve:
        return [(s, r) for s, r, _ in self.curve]

    @property
    def last_step(self) -> int:
        return self.curve[-1][0]

    def wall_hours_at(self, step: int) -> float:
        return max((w for s, _, w in self.curve if s <= step), default=0.0) / 3600


def load_runs(results_dir: Path) -> list[Run]:
    """Every CSV in ``results_dir`` with its ``runs.yaml`` entry, ordered by env, algorithm, then seed."""
    manifest_path = results_dir / MANIFEST
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.is_file() else {}
    runs = []
    for path in sorted(results_dir.glob("*.csv")):
        if path.name not in manifest:
            raise SystemExit(f"{path}: not described in {manifest_path} (write CSVs with `results export`)")
        runs.append(Run(path.name, manifest[path.name], read_curve(path)))
    return sorted(runs, key=lambda run: (run.env_id, run.algorithm, run.meta["seed"] or 0))
