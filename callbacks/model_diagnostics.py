"""``ModelDiagnostics``: how far the dynamics model can be trusted, measured on the run's own data.

After a model training period (the ``diagnostics:`` section), on rank 0:

* **compounding error vs horizon** (``dynamics/``): the real transitions collected since the model was last trained
  are held out from its training data; segments of ``horizon`` consecutive steps of one episode are replayed
  through the elites from their real first state with their real actions (open loop), and the standardised error
  of the predicted state and reward is measured at every step ``h``, for the mean prediction and for sampled
  rollouts as MBPO makes them (``error_at_h/{1,5,k,H}``, ``sampled_error_at_h/...``, ``reward_error_at_h/...``;
  ``trusted_horizon``: sampled steps before the state error exceeds ``error_threshold``); the whole curve as a
  TensorBoard figure every ``figure_every_n_model_trainings``;
* **model data vs real data** (``rollout/``): the model buffer's states and rewards against the real buffer's
  (standardised mean shift, std ratio, fraction of model states outside the range the real data has seen, reward
  mean and std of both).

It draws its samples from a generator of its own (checkpointed, so a resumed run measures on the same samples as an
uninterrupted one), so a run trains exactly the same with or without it, and bills its time to
``time/diagnostics_s``. See :mod:`mbpo_pl.diagnostics` for the definitions.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from mbpo_pl.data import MBPODataModule
from mbpo_pl.diagnostics import (
    distribution_shift,
    evenly_spaced,
    gather_segments,
    open_loop_errors,
    safe_std,
    segment_starts,
    trusted_horizon,
)
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import require_positive
from mbpo_pl.replay import latest
from mbpo_pl.run_state import RunState


class ModelDiagnostics(Callback):
    """Model-error and model-data diagnostics, logged after every ``every_n_model_trainings``-th model training.

    Args:
        every_n_model_trainings: measurement period in model trainings (1: every ``loop.model_train_freq`` steps).
        horizon: steps ``H`` of the error curve (None: the loop's maximum rollout length, and at least 5).
        num_segments: at most this many held-out segments per measurement.
        error_threshold: standardised state error above which a prediction is not trusted (1 = the data's own
            spread).
        distribution_samples: states drawn from each buffer for the model-vs-real comparison.
        figure_every_n_model_trainings: also log the whole curve as a TensorBoard figure this often (None: never).
        seed: seed of the diagnostics' own random generator.
    """

    def __init__(
        self,
        every_n_model_trainings: int = 1,
        horizon: int | None = None,
        num_segments: int = 64,
        error_threshold: float = 1.0,
        distribution_samples: int = 10_000,
        figure_every_n_model_trainings: int | None = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        require_positive(
            "diagnostics", every_n_model_trainings=every_n_model_trainings, num_segments=num_segments,
            distribution_samples=distribution_samples, horizon=1 if horizon is None else horizon,
        )  # fmt: skip
        self.every_n_model_trainings = every_n_model_trainings
        self.horizon = horizon
        self.num_segments = num_segments
        self.error_threshold = error_threshold
        self.distribution_samples = distribution_samples
        self.figure_every_n_model_trainings = figure_every_n_model_trainings
        self.generator = torch.Generator().manual_seed(seed)
        self.last_curve: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state_dict["generator"])

    def run_horizon(self, run: RunState) -> int:
        return self.horizon or max(run.schedule.max_rollout_length, 5)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        run = pl_module.run
        if not trainer.is_global_zero or not run.use_model or run.model_trainings % self.every_n_model_trainings:
            return
        if run.seeds is not None:  # a population: `python -m mbpo_pl diagnose <run>/seed_<s>` measures each seed
            return
        data, horizon = trainer.datamodule, self.run_horizon(run)
        with run.clock.timed("diagnostics"):
            with trainer.precision_plugin.forward_context():
                metrics = {
                    **self.model_error(data, pl_module.dynamics, run.rollout_length, horizon),
                    **self.data_shift(data),
                }
            if "dynamics/error_segments" in metrics and self._figure_due(run):
                self._log_figure(trainer, run)
            pl_module.log_metrics(metrics, run.env_steps)

    def model_error(
        self, data: MBPODataModule, dynamics: DynamicsModule, rollout_length: int, horizon: int
    ) -> dict[str, float]:
        """The compounding-error metrics of ``dynamics`` on the real transitions added since its last training."""
        recent = latest(data.real_buffer, min(len(data.real_buffer), data.run.schedule.model_train_freq))
        recent = recent.to(dynamics.elites.device)
        obs, next_obs = recent["observation"], recent["next", "observation"]
        done = recent["next", "done"].reshape(-1)
        starts = evenly_spaced(segment_starts(obs, next_obs, done, horizon), self.num_segments)
        if starts.numel() == 0:
            self.last_curve = None
            return {}
        segments = gather_segments(obs, recent["action"], recent["next", "reward"], next_obs, starts, horizon)
        obs_std = dynamics.model.normalizer.std[: dynamics.obs_dim]  # the spread of the data the model was fit on
        # the spread of all real rewards (the model's training data); 1 where they do not vary (e.g. a constant
        # alive bonus), so the reward error is then the raw squared error
        reward_std = safe_std(data.real_transitions()["next", "reward"].reshape(-1, 1)).to(obs.device)[0]

        def predict(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return dynamics.model.forward_members(inputs, dynamics.elites)

        members = dynamics.elites.numel()
        mean = open_loop_errors(predict, members, segments, obs_std, reward_std, sample=False)
        sampled = open_loop_errors(predict, members, segments, obs_std, reward_std, True, self.generator)
        self.last_curve = {"mean": mean.obs.float().cpu(), "sampled": sampled.obs.float().cpu()}
        metrics: dict[str, float] = {"dynamics/error_segments": float(starts.numel())}
        for name, h in (("1", 1), ("5", 5), ("k", rollout_length), ("H", horizon)):
            if 1 <= h <= horizon:
                metrics[f"dynamics/error_at_h/{name}"] = float(mean.obs[h - 1])
                metrics[f"dynamics/sampled_error_at_h/{name}"] = float(sampled.obs[h - 1])
                metrics[f"dynamics/reward_error_at_h/{name}"] = float(mean.reward[h - 1])
        metrics["dynamics/trusted_horizon"] = float(trusted_horizon(sampled.obs, self.error_threshold))
        return metrics

    def data_shift(self, data: MBPODataModule) -> dict[str, float]:
        """The model-vs-real statistics of the two replay buffers."""
        if data.model_buffer is None or len(data.model_buffer) == 0:
            return {}
        real, model = (self._sample(buffer) for buffer in (data.real_buffer, data.model_buffer))
        real_obs = data.real_transitions()["observation"]
        stats = distribution_shift(
            model["observation"].float(), model["next", "reward"].reshape(-1).float(),
            model["next", "terminated"].reshape(-1),
            real["observation"].float(), real["next", "reward"].reshape(-1).float(),
            real["next", "terminated"].reshape(-1),
            real_obs.min(0).values.to(model.device), real_obs.max(0).values.to(model.device),
        )  # fmt: skip
        return {f"rollout/{key}": float(value) for key, value in stats.items()}

    def _sample(self, buffer):  # noqa: ANN001, ANN202 (a TorchRL buffer -> TensorDict)
        index = torch.randint(len(buffer), (self.distribution_samples,), generator=self.generator)
        return buffer.storage[index.to(buffer.storage.device)]

    def _figure_due(self, run: RunState) -> bool:
        every = self.figure_every_n_model_trainings
        return every is not None and self.last_curve is not None and run.model_trainings % every == 0

    def _log_figure(self, trainer: Trainer, run: RunState) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        from mbpo_pl.diagnose import error_curve_figure

        figure = error_curve_figure(self.last_curve, self.error_threshold, run.rollout_length, run.env_steps)
        for logger in loggers:
            logger.experiment.add_figure("dynamics/error_vs_horizon", figure, global_step=run.env_steps)
