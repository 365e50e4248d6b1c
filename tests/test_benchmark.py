"""The benchmark's projection arithmetic (no timing)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_bench():
    spec = importlib.util.spec_from_file_location("mbpo_bench", BENCHMARKS / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproject_gives_the_projections_the_benchmark_run_wrote():
    """`--reproject` rebuilds the per-1000-step rows from a results file and projects them as the timed run did;
    the committed CPU file was written with the current epochs per call, so both must agree."""
    bench = _load_bench()
    path = BENCHMARKS / "results_cpu2.json"
    stored = json.loads(path.read_text())["results"]
    projected = bench.reproject(path)
    assert set(projected) == {"projected_hopper_125k_hours_plain", "projected_hopper_125k_hours_fast"}
    for key, hours in projected.items():
        assert hours == pytest.approx(stored[key], rel=1e-9)


def test_epochs_per_call_follows_the_measured_blocks():
    bench = _load_bench()
    assert bench.epochs_per_call(5_000) == bench.EPOCHS_PER_CALL[0][1] == 298  # the first call, from the CSV
    assert bench.epochs_per_call(5_250) == bench.EPOCHS_PER_CALL[1][1]
    assert bench.epochs_per_call(120_000) == bench.EPOCHS_PER_CALL[-1][1]
