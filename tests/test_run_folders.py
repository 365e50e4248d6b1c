"""Run folders: every run logs and checkpoints into its own ``<save_dir>/<env id>/version_N/``; a resume continues
the same folder; user mistakes print ``error: <message>`` (exit status 2) instead of a traceback."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from tests_support import tiny_config_with_checkpoints

from callbacks import Evaluation
from mbpo_pl.cli import main
from mbpo_pl.errors import ConfigError
from mbpo_pl.report import load_scalars
from mbpo_pl.run_folders import resolve_checkpoint

TINY = Path(__file__).parent / "conf" / "tiny.yaml"


@pytest.fixture
def env_named_config(tmp_path):
    return tiny_config_with_checkpoints(tmp_path)


def _fit(config, save_dir, *extra):
    return main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(save_dir), *extra])


def test_loop_and_eval_settings_are_command_line_sections(logdir):
    cli = main(["fit", "--config", str(TINY), "--loop.total_env_steps", "250", "--eval.every_n_env_steps", "125"])
    evaluation = next(c for c in cli.trainer.callbacks if isinstance(c, Evaluation))
    assert [step for step, _ in evaluation.history] == [125, 250]


def test_env_id_override_writes_under_its_own_env_folder(env_named_config, tmp_path):
    _fit(env_named_config, tmp_path / "logs", "--data.env_id", "InvertedDoublePendulum-v5",
         "--loop.total_env_steps", "150")  # fmt: skip
    assert (tmp_path / "logs" / "InvertedDoublePendulum-v5" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "logs" / "InvertedPendulum-v5").exists()


def test_two_runs_of_one_config_keep_both_runs_checkpoints(env_named_config, tmp_path):
    for _ in range(2):
        _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "150")
    runs = tmp_path / "logs" / "InvertedPendulum-v5"
    for version in ("version_0", "version_1"):
        assert (runs / version / "checkpoints" / "last.ckpt").is_file(), version
        assert (runs / version / "config.yaml").is_file()


def test_resume_last_continues_the_same_run_folder_and_curve(env_named_config, tmp_path):
    _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "200")
    _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "300", "--ckpt_path", "last",
         "--flush_denormal", "false")  # fmt: skip
    runs = tmp_path / "logs" / "InvertedPendulum-v5"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]
    assert len(list((runs / "version_0").glob("events.out.tfevents.*"))) == 2  # one file per process, one folder
    steps = [step for step, _ in load_scalars(runs / "version_0")["eval/return"]]
    assert steps == [200, 300]  # 200 from the first process, 300 from the resumed one
    # Each start is recorded in the run folder: where it started, from which checkpoint, with which code.
    starts = yaml.safe_load((runs / "version_0" / "provenance.yaml").read_text())
    assert [start["env_steps"] for start in starts] == [0, 200]
    assert starts[0]["resumed_from"] is None and starts[1]["resumed_from"].endswith("version_0/checkpoints/last.ckpt")
    assert all(start["commit"] and start["torch_threads"] >= 1 for start in starts)
    flushing = torch.set_flush_denormal(False)  # whether this CPU can flush denormals (the first start's default)
    assert [start["flush_denormal"] for start in starts] == [flushing, False]


def test_resume_from_a_run_folder(env_named_config, tmp_path):
    _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "150")
    run = tmp_path / "logs" / "InvertedPendulum-v5" / "version_0"
    assert resolve_checkpoint(str(run), None) == run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no checkpoint file at"), (b"not a checkpoint", "truncated or corrupt")],
    ids=["missing", "corrupt"],
)
def test_missing_or_corrupt_checkpoint_gets_a_message_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "last.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=reason) as info:
        resolve_checkpoint(str(path), None)
    assert str(path) in str(info.value)


def test_truncated_checkpoint_is_refused(env_named_config, tmp_path):
    _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "150")
    checkpoint = tmp_path / "logs" / "InvertedPendulum-v5" / "version_0" / "checkpoints" / "last.ckpt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        resolve_checkpoint(str(checkpoint), None)


def test_resume_last_without_any_run_says_so(env_named_config, tmp_path):
    with pytest.raises(ConfigError, match="no run under .* has a checkpoints/last.ckpt"):
        _fit(env_named_config, tmp_path / "logs", "--ckpt_path", "last")


def test_trainer_max_epochs_is_refused_in_favour_of_the_loop(logdir):
    with pytest.raises(ConfigError, match="loop.total_env_steps"):
        main(["fit", "--config", str(TINY), "--trainer.max_epochs", "3"])


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--data.env_id", "CartPole-v1"], "needs continuous actions"),
        (["--ckpt_path", "does/not/exist.ckpt"], "no checkpoint file at does/not/exist.ckpt"),
    ],
    ids=["discrete-env", "missing-checkpoint"],
)
def test_user_mistakes_print_an_error_line_and_exit_2(tmp_path, args, reason):
    env = {"MBPO_TEST_LOGDIR": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mbpo_pl", "fit", "--config", str(TINY), *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert reason in result.stderr


def test_memmap_buffers_live_in_the_run_folder_and_resume_with_it(env_named_config, tmp_path):
    memmap = ["--data.buffer_storage", "memmap"]
    _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "150", *memmap)
    run = tmp_path / "logs" / "InvertedPendulum-v5" / "version_0"
    assert list((run / "buffers" / "rank0" / "checkpoint" / "real").glob("*/checkpoint_token"))
    cli = _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "200", "--ckpt_path", "last", *memmap)
    assert len(cli.datamodule.real_buffer) == 200 and cli.datamodule.buffer_dir == run / "buffers"


def test_resuming_in_another_precision_says_so_and_is_recorded(env_named_config, tmp_path):
    _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "150")
    said = r"Resuming with precision bf16-mixed a run whose last start \(at env step 0\) trained in 32-true"
    with pytest.warns(UserWarning, match=said + r".*--trainer.precision 32-true after --config"):
        _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "200", "--ckpt_path", "last",
             "--trainer.precision", "bf16-mixed")  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:  # the same precision again: nothing to say
        warnings.simplefilter("always")
        _fit(env_named_config, tmp_path / "logs", "--loop.total_env_steps", "250", "--ckpt_path", "last",
             "--trainer.precision", "bf16-mixed")  # fmt: skip
    assert not [w for w in caught if "Resuming with precision" in str(w.message)]
    starts = yaml.safe_load((tmp_path / "logs" / "InvertedPendulum-v5" / "version_0" / "provenance.yaml").read_text())
    assert [(s["env_steps"], s["precision"]) for s in starts] == [
        (0, "32-true"),
        (150, "bf16-mixed"),
        (200, "bf16-mixed"),
    ]
