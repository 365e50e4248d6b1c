"""``MBPOProgressBar``: one tqdm bar for the whole run, counted in env steps."""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from tqdm.auto import tqdm


class MBPOProgressBar(ProgressBar):
    """Env steps done out of ``loop.total_env_steps`` with the run's ETA, the last evaluation return (a population's:
    mean [min, max] over its seeds) and env steps/s (of the last epoch). A resumed run starts the bar where the
    checkpoint stopped; the ETA is timed from the first policy step, so the quick random steps at the start do not
    make it optimistic.

    Args:
        refresh_every_n_env_steps: redraw period (the postfix and ETA follow the env steps).
    """

    def __init__(self, refresh_every_n_env_steps: int = 10) -> None:
        super().__init__()
        self.refresh_every_n_env_steps = refresh_every_n_env_steps
        self._enabled = True
        self._timing_policy_steps = False
        self.bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        run = pl_module.run
        metrics: dict[str, Any] = {"env_steps": f"{run.env_steps}/{run.total_env_steps}"}
        if run.last_eval_returns is not None:  # a population: the seeds' mean, min and max
            returns = run.last_eval_returns
            metrics["eval"] = f"{sum(returns) / len(returns):.1f} [{min(returns):.1f}, {max(returns):.1f}]"
            if run.stopped:
                metrics["stopped"] = ",".join(str(run.seeds[index]) for index in sorted(run.stopped))
        elif run.last_eval_return is not None:
            metrics["eval"] = f"{run.last_eval_return:.1f}"
        if run.env_steps_per_s is not None:
            metrics["steps/s"] = f"{run.env_steps_per_s:.1f}"
        return metrics

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            self._open(trainer, leave=False)
            self._timing_policy_steps = False

    def _open(self, trainer: Trainer, leave: bool) -> None:
        run = trainer.lightning_module.run
        self.bar = tqdm(
            total=run.total_env_steps, initial=run.env_steps, desc=trainer.datamodule.env_id, unit="step",
            dynamic_ncols=True, file=sys.stdout, smoothing=0.05, leave=leave,
        )  # fmt: skip

    def _refresh(self, trainer: Trainer, pl_module: LightningModule, force: bool = False) -> None:
        if self.bar is None:
            return
        steps = pl_module.run.env_steps
        if force or steps - self.bar.n >= self.refresh_every_n_env_steps:
            metrics = self.get_metrics(trainer, pl_module)
            metrics.pop("env_steps")
            self.bar.set_postfix(metrics, refresh=False)
            self.bar.update(steps - self.bar.n)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.bar is not None and not self._timing_policy_steps:
            # The random steps and the first model training are done: time (and so estimate) the run from here,
            # with the policy's own steps only.
            self.bar.close()
            self._open(trainer, leave=True)
            self._timing_policy_steps = True
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
