"""The benchmark's projection arithmetic (no timing)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_projection():
    spec = importlib.util.spec_from_file_location("mbpo_bench_projection", BENCHMARKS / "projection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproject_gives_the_projections_the_benchmark_run_wrote():
    """`projection.py` rebuilds the per-1000-step rows from a results file and projects them as the timed run did;
    the committed CPU file was written with the current epochs per call, so both must agree."""
    projection = _load_projection()
    path = BENCHMARKS / "results_cpu2.json"
    stored = json.loads(path.read_text())["results"]
    projected = projection.reproject(path)
    assert set(projected) == {"projected_hopper_125k_hours_plain", "projected_hopper_125k_hours_fast"}
    for key, hours in projected.items():
        assert hours == pytest.approx(stored[key], rel=1e-9)


def test_epochs_per_call_follows_the_measured_blocks():
    projection = _load_projection()
    blocks = projection.load_epochs_per_call()
    assert projection.epochs_per_call(5_000) == blocks[0][1] == 298  # the first call, from the CSV
    assert projection.epochs_per_call(5_250) == blocks[1][1]
    assert projection.epochs_per_call(120_000) == blocks[-1][1]
