"""Lightning's own callbacks on MBPO's evaluation: ``ModelCheckpoint(monitor="eval/return")`` keeps the best policy
and ``EarlyStopping(monitor="eval/return")`` stops a run, added from the command line as a Lightning user would."""

import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from tests_support import TINY

from callbacks import Evaluation
from mbpo_pl import load_policy
from mbpo_pl.cli import main


def _callback(cli, kind):
    return next(c for c in cli.trainer.callbacks if isinstance(c, kind))


def test_model_checkpoint_keeps_the_best_evaluation_and_early_stopping_stops(logdir):
    cli = main([
        "fit", "--config", str(TINY), "--loop.total_env_steps", "600", "--eval.every_n_env_steps", "50",
        "--trainer.enable_checkpointing", "true",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", "--trainer.callbacks.monitor=eval/return",
        "--trainer.callbacks.mode=max", "--trainer.callbacks.filename=best-{epoch}",
        "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping", "--trainer.callbacks.monitor=eval/return",
        "--trainer.callbacks.mode=max", "--trainer.callbacks.patience=2", "--trainer.callbacks.strict=false",
    ])  # fmt: skip
    history = _callback(cli, Evaluation).history
    best_step, best_return = max(history, key=lambda point: (point[1], -point[0]))
    checkpoint = _callback(cli, ModelCheckpoint)
    assert float(checkpoint.best_model_score) == best_return
    epoch_of = lambda step: (step - 100) // 50 - 1  # noqa: E731 (100 random steps, then epochs of 50 env steps)
    assert checkpoint.best_model_path.endswith(f"best-epoch={epoch_of(best_step)}.ckpt")
    assert load_policy(checkpoint.best_model_path).env_steps == best_step
    # Early stopping counts evaluations (patience 2): the run ends after two evaluations without a new best,
    # before its 600 env steps.
    stopping = _callback(cli, EarlyStopping)
    after_best = [ret for step, ret in history if step > best_step]
    assert len(after_best) == 2 and all(ret <= best_return for ret in after_best)
    assert history[-1][0] < 600 and stopping.stopped_epoch == epoch_of(history[-1][0])
    assert torch.equal(torch.as_tensor(best_return), stopping.best_score)


def test_evaluation_figures_do_not_outlive_their_epoch(logdir):
    """An epoch without an evaluation leaves no stale ``eval/`` value for a monitor to compare again."""
    cli = main(["fit", "--config", str(TINY), "--loop.total_env_steps", "250", "--eval.every_n_env_steps", "200"])
    assert _callback(cli, Evaluation).history == [(200, _callback(cli, Evaluation).last_return)]
    assert not any(key.startswith("eval/") for key in cli.trainer.callback_metrics)  # the last epoch had none
