"""The benchmark's projection arithmetic (no timing)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

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


def test_model_fit_precision_compares_both_fits_on_a_real_checkpoint(tmp_path, capsys):
    """The bf16-vs-fp32 model-fit comparison reads a real run's checkpoint and fits both ways from the same seed."""
    from mbpo_pl.cli import main as cli_main

    tiny = Path(__file__).parent / "conf" / "tiny.yaml"
    cli_main(["fit", "--config", str(tiny), "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--trainer.enable_checkpointing", "true"])  # fmt: skip
    checkpoint = max(tmp_path.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    capsys.readouterr()  # the fit's own output
    spec = importlib.util.spec_from_file_location("mbpo_bench_model_fit", BENCHMARKS / "model_fit_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(checkpoint), "--config", str(tiny), "--transitions", "200", "--test", "50", "--seeds", "0", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert "300 real transitions; train on 200, test on 50" in lines[0]
    rows = [line.split() for line in lines[2:4]]
    assert [row[0] for row in rows] == ["0", "3"]
    for row in rows:
        fp32_mse, bf16_mse, ratio = float(row[2]), float(row[4]), float(row[5])
        assert 1 <= int(row[1]) <= 5 and 1 <= int(row[3]) <= 5  # epochs: the tiny config caps a fit at 5
        assert 0 < fp32_mse < 1e3 and 0 < bf16_mse < 1e3 and ratio == pytest.approx(bf16_mse / fp32_mse, rel=1e-2)
    assert lines[4].startswith("bf16/fp32 test MSE over 2 seeds")
    with pytest.raises(SystemExit, match="holds 300 real transitions"):
        module.main([str(checkpoint), "--config", str(tiny), "--transitions", "300"])


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"mbpo_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peer_worker_times_our_side_on_shared_data(tmp_path):
    """Our side of the mbrl-lib comparison runs on the driver's data file and prints the three figures."""
    import subprocess
    import sys

    peer = _load("peer")
    data = peer.hopper_transitions(tmp_path / "hopper.npz", count=1500)
    command = [sys.executable, str(BENCHMARKS / "peer_worker.py"), "ours", str(data), "--threads", "1",
               "--repeats", "2", "--rollout-starts", "500"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=BENCHMARKS.parent)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["side"] == "ours" and figures["threads"] == 1
    assert all(figures[key] > 0 for key in ("sac_update_ms", "model_epoch_s", "rollout_s"))


def test_peer_summary_ratios_and_composite():
    peer = _load("peer")
    rows = [{"side": side, "sac_update_ms": ms, "model_epoch_s": epoch, "rollout_s": 1.0}
            for side, ms, epoch in (("ours", 5.0, 0.2), ("ours", 7.0, 0.2), ("mbrl", 10.0, 0.3), ("mbrl", 12.0, 0.3),
                                    ("ours-bf16", 4.0, 0.1), ("ours-bf16", 4.0, 0.1))]  # fmt: skip
    summary = peer.summarise(rows)
    assert summary["ours"]["sac_update_ms"] == {"median": 6.0, "min": 5.0, "max": 7.0}
    # 20,000 updates x 6 ms + 240 epochs x 0.2 s + 4 rollouts x 1 s
    assert summary["ours"]["per_1000_env_steps_s"]["median"] == pytest.approx(120 + 48 + 4)
    text = peer.table(summary, "test CPU", 2, 2)
    assert "| SAC update (ms) | 11 [10–12] | 6 [5–7] | 4 [4–4] | 1.83× | 2.75× |" in text


def test_readme_speed_table_is_generated_from_the_committed_peer_json():
    peer = _load("peer")
    readme = (BENCHMARKS.parent / "README.md").read_text()
    block = readme.split("<!-- peer-table -->\n", 1)[1].split("\n<!-- /peer-table -->", 1)[0]
    assert block == peer.table_from_json(BENCHMARKS / "peer_cpu2.json")


def test_speed_doc_population_table_is_generated_from_the_committed_json():
    population = _load("population_sac")
    stored = json.loads((BENCHMARKS / "population_sac_cpu2.json").read_text())
    text = population.markdown(stored)
    separate = next(row for row in stored["rows"] if row["layout"].endswith("1 agent each"))
    mbrl = sum(stored["mbrl_update_ms"]) / len(stored["mbrl_update_ms"])
    per_seed = 1000 / separate["seed_updates_per_s"]  # the reference layout: 1.00x, and mbrl-lib over its time
    assert f"| {separate['layout']} | 2 | {per_seed:.2f} | {separate['seed_updates_per_s']:.0f} | 1.00× | " in text
    assert f"| {mbrl / per_seed:.2f}× |" in text
    speed = (BENCHMARKS.parent / "docs" / "speed.md").read_text()
    block = speed.split("<!-- population-sac -->\n", 1)[1].split("\n<!-- /population-sac -->", 1)[0]
    assert block == text


def test_speed_doc_whole_loop_population_table_is_generated_from_the_committed_json():
    population = _load("population")
    stored = json.loads((BENCHMARKS / "population_cpu2.json").read_text())
    text = population.markdown(stored)
    rows = [r for r in stored["rows"] if r["precision"] == "bf16-mixed"]
    best = max(r["seed_env_steps_per_s"] for r in rows if r["layout"] == "separate")
    split = next(r for r in rows if r["layout"] == "split" and r["population"] == 4)
    separate = next(r for r in rows if r["layout"] == "separate" and r["population"] == 4)
    ratio = split["seed_env_steps_per_s"] / separate["seed_env_steps_per_s"]
    rate = split["seed_env_steps_per_s"]
    assert f"| {rate:.2f} | {ratio:.2f}x | {rate / best:.2f}x |" in text
    speed = (BENCHMARKS.parent / "docs" / "speed.md").read_text()
    blocks = {"population": "population_cpu2.json", "population-8": "population8_cpu2.json",
              "population-zen5": "population_zen5_cpu2.json"}  # fmt: skip
    for name, file in blocks.items():
        source = json.loads((BENCHMARKS / file).read_text())
        block = speed.split(f"<!-- {name} -->\n", 1)[1].split(f"\n<!-- /{name} -->", 1)[0]
        assert block == population.markdown(source)


def test_distributed_doc_population_split_table_is_generated_from_the_committed_json():
    population = _load("population")
    stored = json.loads((BENCHMARKS / "population_ddp_cpu2.json").read_text())
    text = population.markdown(stored)
    ddp = next(r for r in stored["rows"] if r["layout"] == "ddp" and r["population"] == 4)
    best = max(r["seed_env_steps_per_s"] for r in stored["rows"] if r["layout"] == "separate")
    rate = ddp["seed_env_steps_per_s"]
    assert f"population of 2 each | {rate:.2f} | - | {rate / best:.2f}x |" in text
    doc = (BENCHMARKS.parent / "docs" / "distributed.md").read_text()
    block = doc.split("<!-- population-ddp -->\n", 1)[1].split("\n<!-- /population-ddp -->", 1)[0]
    assert block == text


def test_the_gpu_scripts_are_valid_bash_and_name_what_they_write():
    import subprocess

    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        result = subprocess.run(["bash", "-n", str(BENCHMARKS / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    text = (BENCHMARKS / "gpu_check.sh").read_text()
    assert '--json "$OUT/population.json"' in text and '--out "$OUT/components.json"' in text


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real (tiny) MBPO run's last checkpoint, trained with IEEE denormals."""
    from mbpo_pl.cli import main as cli_main

    folder = tmp_path_factory.mktemp("tiny_run")
    tiny = Path(__file__).parent / "conf" / "tiny.yaml"
    cli_main(["fit", "--config", str(tiny), "--trainer.logger.init_args.save_dir", str(folder),
              "--trainer.enable_checkpointing", "true", "--flush_denormal", "false"])  # fmt: skip
    return max(folder.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)


def test_denormals_benchmark_times_both_settings_on_a_run_checkpoint(tiny_checkpoint, monkeypatch, capsys):
    import sys

    denormals = _load("denormals")
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormal numbers")
    monkeypatch.setattr(sys, "argv", ["denormals.py", str(tiny_checkpoint), "--rounds", "1", "--env-steps", "2"])
    denormals.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("optimizer 0 (") and "Adam moments are denormal" in lines[0]
    assert "1 model epoch(s) on 300 real transitions" in lines[3]
    for figure in ("ms per SAC update", "s per model epoch"):
        ieee, flushed = (float(next(line for line in lines if line.startswith(f"{figure}, {label}")).split(label)[1]
                               .split()[0]) for label in ("IEEE denormals:", "flushed to zero:"))  # fmt: skip
        assert ieee > 0 and flushed > 0
        ratio = next(line for line in lines if line.startswith(f"{figure}, IEEE / flushed: "))
        assert float(ratio.split(": ")[1].rstrip("x")) == pytest.approx(ieee / flushed, abs=0.02)


def test_peer_late_state_is_read_by_our_worker(tiny_checkpoint, tmp_path):
    """``peer.py --state``: the run's SAC state goes into a plain tensor file that our worker times from."""
    import subprocess
    import sys

    peer = _load("peer")
    state_file, label = peer.late_state(str(tiny_checkpoint), tmp_path / "state.pt")
    state = torch.load(state_file, weights_only=True)  # what mbrl-lib's interpreter reads: tensors only
    assert label == state["label"] and "checkpoint at 300 env steps" in label
    assert len(state["real"]["observation"]) == 300 and len(state["model"]["observation"]) > 0
    assert set(state["optimizer"]["state"]) == set(range(13))  # critic (6), actor (6), log_alpha
    command = [sys.executable, str(BENCHMARKS / "peer_worker.py"), "ours-bf16", "--state", str(state_file),
               "--threads", "1", "--repeats", "2"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=BENCHMARKS.parent)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["side"] == "ours-bf16" and figures["sac_update_ms"] > 0


def test_peer_late_summary_and_its_committed_table():
    peer = _load("peer")
    rows = [{"side": side, "sac_update_ms": ms}
            for side, ms in (("ours", 6.0), ("mbrl", 12.0), ("ours-bf16", 4.0), ("mbrl-flush", 10.0))]  # fmt: skip
    text = peer.late_table(peer.summarise(rows, late=True), "test CPU", 1, 1, "a run")
    assert "| SAC update (ms) | 12 [12–12] | 10 [10–10] | 6 [6–6] | 4 [4–4] | 2.00× | 3.00× | 2.50× |" in text
    doc = (BENCHMARKS.parent / "docs" / "speed.md").read_text()
    block = doc.split("<!-- peer-late-table -->\n", 1)[1].split("\n<!-- /peer-late-table -->", 1)[0]
    assert block == peer.table_from_json(BENCHMARKS / "peer_late_cpu1.json")
