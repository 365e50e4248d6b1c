"""Loggers: W&B (offline) receives the metrics and the config once; TensorBoard gets the config as hparams."""

from pathlib import Path

import pytest
from tests_support import renderer_available

from mbpo_pl.cli import main

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def test_wandb_offline_run_records_metrics_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    main(
        [
            "fit", "--config", TINY,
            "--trainer.logger", "lightning.pytorch.loggers.WandbLogger",
            "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.logger.init_args.offline", "true",
            "--trainer.logger.init_args.project", "mbpo_pl_test",
        ]
    )  # fmt: skip
    import wandb

    wandb.finish()
    records = list(tmp_path.rglob("run-*.wandb"))
    assert len(records) == 1, "expected one offline W&B run"
    data = records[0].read_bytes()  # W&B's record stream: metric keys and config entries appear verbatim
    for key in ("eval/return", "train/critic_loss", "dynamics/holdout_mse_elites", "rollout/length"):
        assert key.encode() in data, key
    assert b"data.env_id" in data and b"InvertedPendulum-v5" in data and b"model.sac" in data


def test_tensorboard_hparams_hold_the_config(logdir):
    main(["fit", "--config", TINY])
    hparams = next(Path(logdir).rglob("hparams.yaml")).read_text()
    assert "data.env_id: InvertedPendulum-v5" in hparams
    assert "model.dynamics.init_args.num_elites: 2" in hparams or "model.dynamics.num_elites: 2" in hparams


@pytest.mark.skipif(not renderer_available(), reason="no offscreen OpenGL (EGL) renderer on this machine")
def test_evaluation_video_is_logged_to_tensorboard(logdir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    main(["fit", "--config", TINY, "--eval.video_every_n_env_steps", "200", "--eval.video_size", "48"])
    events = next(Path(logdir).rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events.parent), size_guidance={"images": 0})
    accumulator.Reload()
    assert "eval/video" in accumulator.Tags()["images"]
    videos = accumulator.Images("eval/video")
    assert [v.step for v in videos] == [200]
    assert videos[0].width == 48 and videos[0].encoded_image_string[:3] == b"GIF"
