"""``MBPOProgressBar``: one tqdm bar for the whole run, counted in env steps."""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from tqdm.auto import tqdm

from callbacks.env_loop import find_loop


class MBPOProgressBar(ProgressBar):
    """Env steps done out of ``loop.total_env_steps`` with the run's ETA, the last evaluation return and env
    steps/s (of the last epoch). A resumed run starts the bar where the checkpoint stopped.

    Args:
        refresh_every_n_env_steps: redraw period (the postfix and ETA follow the env steps).
    """

    def __init__(self, refresh_every_n_env_steps: int = 10) -> None:
        super().__init__()
        self.refresh_every_n_env_steps = refresh_every_n_env_steps
        self._enabled = True
        self.bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        loop = find_loop(trainer)
        metrics: dict[str, Any] = {"env_steps": f"{loop.env_steps}/{loop.total_env_steps}"}
        last_return = next(
            (cb.last_return for cb in trainer.callbacks if getattr(cb, "last_return", None) is not None), None
        )
        if last_return is not None:
            metrics["eval"] = f"{last_return:.1f}"
        if loop.env_steps_per_s is not None:
            metrics["steps/s"] = f"{loop.env_steps_per_s:.1f}"
        return metrics

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        loop = find_loop(trainer)
        self.bar = tqdm(
            total=loop.total_env_steps, initial=loop.env_steps, desc=trainer.datamodule.env_id, unit="step",
            dynamic_ncols=True, file=sys.stdout, smoothing=0.05,
        )  # fmt: skip

    def _refresh(self, trainer: Trainer, pl_module: LightningModule, force: bool = False) -> None:
        if self.bar is None:
            return
        steps = find_loop(trainer).env_steps
        if force or steps - self.bar.n >= self.refresh_every_n_env_steps:
            metrics = self.get_metrics(trainer, pl_module)
            metrics.pop("env_steps")
            self.bar.set_postfix(metrics, refresh=False)
            self.bar.update(steps - self.bar.n)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._refresh(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._refresh(trainer, pl_module, force=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.bar is not None:
            self._refresh(trainer, pl_module, force=True)
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
