"""Where a run's numbers come from: every start of a run (fresh or resumed) appended to ``provenance.yaml`` in its
run folder, with the code commit, the machine, threads, precision and the env step it started from.

``python -m mbpo_pl results export`` copies these records into ``docs/results/runs.yaml`` beside the curve.
"""

from __future__ import annotations

import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

PROVENANCE = "provenance.yaml"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def code_commit(root: Path = PACKAGE_ROOT) -> str:
    """The git commit of the code that runs (``+dirty`` with uncommitted changes to tracked files), or
    ``unknown`` outside a git checkout (an installed wheel)."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def this_machine() -> str:
    """A short hardware label: the CPU model (``/proc/cpuinfo``), or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if match:
            return re.sub(r"\s+", " ", match.group(1)).strip()
    return platform.processor() or platform.machine()


def denormals_flushed() -> bool:
    """Whether this thread's CPU float arithmetic computes denormal numbers as zero (``torch.set_flush_denormal``)."""
    return torch.tensor([1e-39]).mul(2.0).item() == 0.0


def recorded_starts(run_dir: Path) -> list[dict]:
    """The starts recorded in ``run_dir/provenance.yaml``, oldest first (none for a folder without one)."""
    record = run_dir / PROVENANCE
    return (yaml.safe_load(record.read_text()) or []) if record.is_file() else []


def precision_change(starts: list[dict], precision: str) -> str | None:
    """What to tell a user who resumes a run in another precision than its last start trained in (``None``: the same,
    or nothing recorded). Allowed, since a run may move to hardware where another precision is the fast one."""
    trained = starts[-1].get("precision") if starts else None
    if trained is None or trained == precision:
        return None
    return (
        f"Resuming with precision {precision} a run whose last start (at env step {starts[-1]['env_steps']:,}) trained "
        f"in {trained}: the rest of the run trains in {precision} (recorded in {PROVENANCE}). To keep the run's "
        f"precision, pass --trainer.precision {trained} after --config (a config file overrides the arguments before "
        "it)."
    )


def record_start(run_dir: Path, env_steps: int, resumed_from: str | None, precision: str, device: str,
                 processes: int) -> dict:  # fmt: skip
    """Append this start of the run to ``run_dir/provenance.yaml``; returns the record."""
    record = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "env_steps": env_steps,
        "resumed_from": resumed_from,
        "commit": code_commit(),
        "cpu": this_machine(),
        "device": device,
        "processes": processes,
        "torch_threads": torch.get_num_threads(),
        "flush_denormal": denormals_flushed(),
        "precision": precision,
    }
    path = run_dir / PROVENANCE
    run_dir.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(yaml.safe_dump([record], sort_keys=False))
    return record
