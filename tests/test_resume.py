"""Checkpoint and resume: a resumed run continues as if never stopped; a killed run loses nothing it had saved; a
run stopped by SIGTERM saves where it stopped and resumes from there exactly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from callbacks import MBPOLoop
from mbpo_pl.cli import main, run_cli
from mbpo_pl.errors import ConfigError
from mbpo_pl.report import load_scalars

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def _fit(save_dir, total, *extra):
    return main(
        [
            "fit", "--config", TINY,
            "--trainer.logger.init_args.save_dir", str(save_dir),
            "--trainer.enable_checkpointing", "true",
            "--loop.total_env_steps", str(total),
            *extra,
        ]
    )  # fmt: skip


def _snapshot(cli):
    loop = next(c for c in cli.trainer.callbacks if isinstance(c, MBPOLoop))
    data = cli.datamodule
    real = data.real_buffer.storage[torch.arange(len(data.real_buffer))]
    model = data.model_buffer.storage[torch.arange(len(data.model_buffer))]
    return {
        "counters": (loop.env_steps, loop.episodes, loop.model_trainings, loop.rollout_length),
        "real": real.flatten_keys(".").to_dict(),
        "model": model.flatten_keys(".").to_dict(),
        "params": {k: v.clone() for k, v in cli.model.state_dict().items()},
    }


def _assert_same_run(resumed, uninterrupted):
    assert resumed["counters"] == uninterrupted["counters"]
    for part in ("real", "model", "params"):
        assert resumed[part].keys() == uninterrupted[part].keys()
        for key in uninterrupted[part]:
            torch.testing.assert_close(resumed[part][key], uninterrupted[part][key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``uninterrupted(storage)``: the snapshot and log folder of the 300-step run with that buffer storage (run once
    for all tests here)."""
    runs = {}

    def run(storage):
        if storage not in runs:
            folder = tmp_path_factory.mktemp(f"uninterrupted_{storage}")
            cli = _fit(folder, 300, "--data.buffer_storage", storage, "--data.buffer_dir", str(folder / "buffers"))
            runs[storage] = (_snapshot(cli), folder / "tiny" / "version_0")
        return runs[storage]

    return run


@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, storage, uninterrupted):
    buffers = ["--data.buffer_storage", storage, "--data.buffer_dir", str(tmp_path / "buffers")]
    _fit(tmp_path / "b", 200, *buffers)
    checkpoint = next((tmp_path / "b").rglob("*.ckpt"))
    if storage == "memmap":  # the checkpoint refers to the buffers on disk instead of holding them
        assert "dumped" in torch.load(checkpoint, weights_only=False)["MBPODataModule"]["real"]
    resumed = _snapshot(_fit(tmp_path / "b2", 300, "--ckpt_path", str(checkpoint), *buffers))
    _assert_same_run(resumed, uninterrupted(storage)[0])


def test_killed_run_resumes_without_losing_checkpointed_transitions(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MBPO_TEST_LOGDIR": str(tmp_path / "killed")}
    command = [sys.executable, "-m", "mbpo_pl", "fit", "--config", TINY, "--trainer.enable_checkpointing", "true",
               "--loop.total_env_steps", "100000"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list((tmp_path / "killed").rglob("*.ckpt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # several more epochs: the kill lands mid-epoch, between checkpoints
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    checkpoint = max((tmp_path / "killed").rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    saved = torch.load(checkpoint, weights_only=False)
    saved_real = saved["MBPODataModule"]["real"]["data"]
    saved_steps = len(saved_real["observation"])
    assert saved_steps >= 150
    cli = _fit(tmp_path / "resumed", saved_steps + 100, "--ckpt_path", str(checkpoint))
    loop = next(c for c in cli.trainer.callbacks if isinstance(c, MBPOLoop))
    assert loop.env_steps == saved_steps + 100
    real = cli.datamodule.real_buffer.storage[torch.arange(saved_steps)].flatten_keys(".").to_dict()
    for key, value in saved_real.items():
        torch.testing.assert_close(real[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_sigterm_saves_the_state_where_training_stopped_and_the_run_resumes_from_there_exactly(
    tmp_path, capsys, storage, uninterrupted
):
    buffers = ["--data.buffer_storage", storage, "--data.buffer_dir", str(tmp_path / "buffers")]
    uninterrupted_run, uninterrupted_logs = uninterrupted(storage)
    # SIGTERM in the step of env step 231, inside an epoch (100 random steps, epochs of 50): Lightning stops at that
    # step's end, after the env step of the next one.
    stop = ["--trainer.callbacks+=tests_support.SigtermAt", "--trainer.callbacks.at=231"]
    with pytest.raises(SystemExit) as stopped:
        run_cli(["fit", "--config", TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "b"), *buffers,
                 "--trainer.enable_checkpointing", "true", "--loop.total_env_steps", "300", *stop])  # fmt: skip
    assert stopped.value.code == 143
    checkpoint = next((tmp_path / "b").rglob("last.ckpt"))  # the periodic ModelCheckpoint here writes no last.ckpt
    assert f"after 232 env steps; its state is saved to {checkpoint}" in capsys.readouterr().err
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["callbacks"]["MBPOLoop"]["env_steps"] == 232
    assert saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == 31  # mid-epoch
    resumed = _snapshot(_fit(tmp_path / "b", 300, "--ckpt_path", str(checkpoint), *buffers))
    _assert_same_run(resumed, uninterrupted_run)
    # Every metric logged once and as uninterrupted (the stopped epoch's SAC means too); not the timings (wall clock)
    # nor TensorBoard's hp_metric placeholder (written at each start).
    logged = [{tag: values for tag, values in load_scalars(folder).items()
               if not tag.startswith("time/") and tag != "hp_metric"}
              for folder in (uninterrupted_logs, tmp_path / "b" / "tiny" / "version_0")]  # fmt: skip
    assert logged[0] == logged[1]


def test_save_on_exception_is_refused_since_it_would_overwrite_the_last_good_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="drop save_on_exception"):
        _fit(tmp_path, 150, "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
             "--trainer.callbacks.init_args.save_on_exception", "true")  # fmt: skip


def test_memmap_resume_from_an_older_checkpoint_is_refused(tmp_path):
    buffers = ["--data.buffer_storage", "memmap", "--data.buffer_dir", str(tmp_path / "buffers")]
    _fit(tmp_path / "a", 250, *buffers, "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
         "--trainer.callbacks.init_args.dirpath", str(tmp_path / "ckpts"),
         "--trainer.callbacks.init_args.save_top_k", "-1")  # fmt: skip
    older = sorted((tmp_path / "ckpts").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)[0]
    with pytest.raises(ValueError, match="only the latest"):
        _fit(tmp_path / "b", 300, "--ckpt_path", str(older), *buffers)


def test_checkpoint_of_another_env_is_refused(tmp_path):
    _fit(tmp_path / "a", 150)
    checkpoint = next((tmp_path / "a").rglob("*.ckpt"))
    with pytest.raises(ValueError, match="was made for env 'InvertedPendulum-v5'"):
        _fit(tmp_path / "b", 300, "--ckpt_path", str(checkpoint), "--data.env_id", "InvertedDoublePendulum-v5")
