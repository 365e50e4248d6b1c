"""``MBPOProgressBar``: Lightning's tqdm bar showing env steps, the last evaluation return and env steps/s."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

from callbacks.env_loop import find_loop


class MBPOProgressBar(TQDMProgressBar):
    """The standard bar (one tick per env step within an epoch) plus ``env_steps=N/total``, ``eval`` and
    ``steps/s`` in its postfix."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        loop = find_loop(trainer)
        metrics["env_steps"] = f"{loop.env_steps}/{loop.total_env_steps}"
        last_return = next(
            (cb.last_return for cb in trainer.callbacks if getattr(cb, "last_return", None) is not None), None
        )
        if last_return is not None:
            metrics["eval"] = f"{last_return:.1f}"
        if loop.env_steps_per_s is not None:
            metrics["steps/s"] = f"{loop.env_steps_per_s:.1f}"
        return metrics
