"""``MBPO``: the root LightningModule composing the dynamics ensemble and SAC under one Trainer.

Both children are LightningModules with manual optimization; this root owns the optimizers the Trainer's
strategy manages (SAC's one, then the ensemble's one or two), runs the SAC updates in ``training_step`` and logs
their statistics once per epoch (model-training period); the env-loop callback trains the ensemble. The run's
state (env steps, ranks, seeds, device, clock) is :attr:`MBPO.run`, where every callback reads it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_only
from tensordict import TensorDict
from torch import Tensor

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError, NonFiniteError
from mbpo_pl.run_state import RunState
from mbpo_pl.sac import SACModule


class MBPO(LightningModule):
    """Model-Based Policy Optimization (Janner et al. 2019).

    Args:
        dynamics: the probabilistic ensemble and its training settings.
        sac: the SAC agent and its settings.

    The speed switches (``cuda_graphs``, ``lightning_hooks_every_step``, ``fused_optimizer``) are settings of each
    child, not of this root: each child is also used on its own (the benchmark, scripts, tests) with its own
    optimizer and training step, and the two steps differ in kind (G SAC updates per env step, one ensemble step
    per minibatch of a training call), so a run can, e.g., replay only the SAC updates as a graph. Each child
    resolves its switches from the Trainer's run itself when its optimizer is built
    (:func:`~mbpo_pl.cuda_graphs.step_switches`).
    """

    def __init__(self, dynamics: DynamicsModule, sac: SACModule) -> None:
        super().__init__()
        if (dynamics.obs_dim, dynamics.act_dim) != (sac.obs_dim, sac.act_dim):
            raise ValueError("model.dynamics and model.sac were built for different observation/action sizes")
        if sac.population is not None:
            raise ConfigError(
                f"model.sac.population={sac.population}: the MBPO training loop trains one agent per process; leave "
                "it unset and start one run per seed."
            )
        self.automatic_optimization = False
        self.dynamics = dynamics
        self.sac = sac
        self._sac_stat_sums: dict[str, Tensor] = {}
        self._sac_stat_count = 0
        self._run: RunState | None = None

    @property
    def run(self) -> RunState:
        """The run's state (:class:`~mbpo_pl.run_state.RunState`), built from the Trainer on first use."""
        if self._run is None:
            self._run = RunState.from_trainer(self.trainer) if self._trainer is not None else RunState()
        return self._run

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mbpo_env"] = self.trainer.datamodule.env_spec.signature()  # the one record of the env

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Runs before the weights, buffers and callbacks are loaded: refuse a checkpoint of another env with a clear
        # message instead of a tensor size mismatch (or, worse, silently loading weights of the same shape trained
        # elsewhere).
        if self._trainer is not None and "mbpo_env" in checkpoint:
            self.trainer.datamodule.env_spec.check_checkpoint(checkpoint["mbpo_env"])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*self.sac.configure_optimizers(), *self.dynamics.configure_optimizers()]

    def training_step(self, batch: TensorDict, batch_idx: int) -> None:
        """``batch`` is ``[G, batch_size]``: G SAC updates for the real env step that preceded it. The epoch's last
        step logs the means of the epoch's SAC statistics (one host sync per epoch)."""
        for key, value in self.sac.update_many(batch).items():
            total = self._sac_stat_sums.get(key)
            # A copy: with CUDA graphs `value` is the graph's own output tensor, rewritten by the next replay.
            self._sac_stat_sums[key] = value.clone() if total is None else total + value
        self._sac_stat_count += batch.shape[0]
        if batch_idx == self.trainer.num_training_batches - 1:
            self.log_metrics(self._pop_sac_stats(), self.run.env_steps)

    def _pop_sac_stats(self) -> dict[str, Tensor]:
        """Means of the SAC statistics since the last call (``train/`` namespace), then reset; a non-finite one
        stops training (before the epoch's checkpoint is written)."""
        count = max(self._sac_stat_count, 1)
        means = {f"train/{key}": value / count for key, value in self._sac_stat_sums.items()}
        self._sac_stat_sums, self._sac_stat_count = {}, 0
        bad = [key for key, value in means.items() if not torch.isfinite(value).all()]
        if bad:
            raise NonFiniteError(
                f"SAC: {', '.join(bad)} became non-finite in the updates up to env step {self.run.env_steps}. Check "
                "the rewards for NaN/inf or extreme scale, or lower model.sac.lr."
            )
        return means

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Tensor | float | int], env_steps: int) -> None:
        """Write ``metrics`` to every logger with the env-step count as the x-axis (one host sync per call)."""
        values = {}
        for key, value in metrics.items():
            if isinstance(value, Tensor):
                if value.numel() == 1:
                    values[key] = float(value.float())
                else:  # one scalar per element, e.g. the holdout MSE of each ensemble member
                    for i, element in enumerate(value.float().flatten().tolist()):
                        values[f"{key}/{i}"] = element
            else:
                values[key] = float(value)
        for logger in self.trainer.loggers:
            logger.log_metrics(values, step=env_steps)
