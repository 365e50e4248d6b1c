"""The code trains exactly as the reference commit did: every logged scalar but times identical on a fixed-seed run,
and a checkpoint written by the reference commit resumes on the current code as if never stopped.

The reference commit's code is taken from git history (``git archive``) and run in a subprocess on the same machine
as the current code, so the comparison is bit for bit on any CPU. Change ``REFERENCE_COMMIT`` only in a commit that
changes the numbers on purpose, and say which and why in its message.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import tiny_config_with_checkpoints

from mbpo_pl.report import load_scalars

REPO = Path(__file__).resolve().parent.parent
REFERENCE_COMMIT = "8789b24206a61be540f0d80dc6ea1bedef9d7525"
STEPS = 600  # 10 model trainings, rollout lengths 1 to 3, 5 evaluations, diagnostics every model training


@pytest.fixture(scope="module")
def reference_code(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference_code")
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", REFERENCE_COMMIT], capture_output=True)
    except FileNotFoundError:
        pytest.skip("git is not installed: the reference commit cannot be taken from history")
    if archive.returncode != 0:
        pytest.skip(f"the reference commit is not in this checkout's history: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def _fit(code: Path, config: str, logdir: Path, total: int, *extra: str) -> Path:
    """Train with the code in ``code`` in a fresh process; returns the run folder."""
    env = {**os.environ, "PYTHONPATH": str(code), "MBPO_TEST_LOGDIR": str(logdir), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mbpo_pl", "fit", "--config", config, "--loop.total_env_steps", str(total),
               "--torch_threads", "1", *extra]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = {path.parent for path in logdir.rglob("events.out.tfevents.*")}
    return run_dir


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged scalar but times, and TensorBoard's ``hp_metric`` placeholder (written at each start)."""
    scalars = load_scalars(run_dir)
    return {tag: values for tag, values in scalars.items() if not tag.startswith("time/") and tag != "hp_metric"}


def _assert_same(current: dict, reference: dict, unless: tuple[str, ...] = ()) -> None:
    assert sorted(current) == sorted(reference)
    for tag, values in reference.items():
        if not tag.startswith(unless):
            assert current[tag] == values, tag


# Drawn with ModelDiagnostics' own generator, which the reference commit did not checkpoint: after resuming one of its
# checkpoints, these measure the same model and buffers on other samples. Training is unaffected.
DIAGNOSTICS_SAMPLES = ("dynamics/sampled_error_at_h/", "rollout/state_", "rollout/outside_real_range",
                       "rollout/model_reward_", "rollout/model_terminal_", "rollout/real_reward_",
                       "rollout/real_terminal_")  # fmt: skip


def _configs(tmp_path: Path, reference_code: Path) -> tuple[str, str]:
    """The tiny config as each version of the code reads it (the reference's own file, the current one)."""
    reference = tiny_config_with_checkpoints(
        tmp_path, reference_code / "tests" / "conf" / "tiny.yaml", "reference.yaml"
    )
    return reference, tiny_config_with_checkpoints(tmp_path)


def test_a_fixed_seed_run_logs_the_reference_commits_numbers(tmp_path, reference_code):
    reference_config, config = _configs(tmp_path, reference_code)
    reference = _scalars(_fit(reference_code, reference_config, tmp_path / "reference", STEPS))
    current = _scalars(_fit(REPO, config, tmp_path / "current", STEPS))
    assert len(reference["eval/return"]) == 5 and len(reference["dynamics/holdout_mse_elites"]) == 10
    _assert_same(current, reference)


def test_a_reference_commit_checkpoint_resumes_as_if_never_stopped(tmp_path, reference_code):
    reference_config, config = _configs(tmp_path, reference_code)
    uninterrupted = _scalars(_fit(reference_code, reference_config, tmp_path / "uninterrupted", STEPS))
    run_dir = _fit(reference_code, reference_config, tmp_path / "stopped", STEPS // 2)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert checkpoint.exists()
    # Resumed with the current code into the same run folder: the reference run's first half, the current code's
    # second half.
    _fit(REPO, config, tmp_path / "stopped", STEPS, "--ckpt_path", str(checkpoint))
    resumed = _scalars(run_dir)
    _assert_same(resumed, uninterrupted, unless=DIAGNOSTICS_SAMPLES)
    assert any(resumed[tag] != uninterrupted[tag] for tag in resumed if tag.startswith(DIAGNOSTICS_SAMPLES))


def test_a_resumed_run_logs_every_scalar_of_an_uninterrupted_one(tmp_path):
    config = tiny_config_with_checkpoints(tmp_path)
    uninterrupted = _scalars(_fit(REPO, config, tmp_path / "uninterrupted", STEPS))
    run_dir = _fit(REPO, config, tmp_path / "stopped", STEPS // 2)
    _fit(REPO, config, tmp_path / "stopped", STEPS, "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"))
    _assert_same(_scalars(run_dir), uninterrupted)
