"""The model half of MBPO's loop: train the ensemble on the real data, refill the model buffer with branched
rollouts, and the metrics of both (``dynamics/``, ``rollout/``)."""

from __future__ import annotations

from torch import Tensor

from mbpo_pl.data import MBPODataModule
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.rollout import RolloutResult, branched_rollout
from mbpo_pl.schedule import MBPOSchedule
from mbpo_pl.termination import TerminationFn


def check_batches_fit(data: MBPODataModule, schedule: MBPOSchedule, world_size: int) -> None:
    """Refuse loop settings whose buffers cannot give a full SAC batch (and the model a holdout split) when training
    starts: ``init_random_steps`` real transitions shared by ``world_size`` processes, ``rollout_batch_size`` model
    transitions from the first rollout."""
    init_random_steps, rollout_batch_size = schedule.init_random_steps, schedule.rollout_batch_size
    first_real = init_random_steps // world_size  # real transitions per rank at the first model training
    needed = max(data.num_real, 2)  # the real rows of one SAC batch; 2 for the model's holdout split
    if first_real < needed:
        raise ConfigError(
            f"loop.init_random_steps={init_random_steps} gives each of the {world_size} process(es) "
            f"{first_real} real transitions before training starts, fewer than the {data.num_real} real rows of "
            f"one SAC batch (data.batch_size={data.batch_size} x real_ratio={data.real_ratio}; at least 2 for "
            f"the model's holdout split). Raise init_random_steps to at least "
            f"{needed * world_size} or lower data.batch_size / data.real_ratio."
        )
    model_rows = data.batch_size - data.num_real
    if rollout_batch_size < model_rows:
        raise ConfigError(
            f"loop.rollout_batch_size={rollout_batch_size} model transitions per rollout are fewer "
            f"than the {model_rows} model rows of each SAC batch (data.batch_size={data.batch_size}, "
            f"real_ratio={data.real_ratio}). Raise rollout_batch_size or lower data.batch_size."
        )


def train_dynamics(dynamics: DynamicsModule, data: MBPODataModule) -> dict[str, Tensor]:
    """Fit the ensemble (and the learned termination, if any) on every stored real transition."""
    real = data.real_transitions().to(dynamics.elites.device)
    stats = dynamics.fit_ensemble(*dynamics.make_dataset(
        real["observation"], real["action"], real["next", "reward"], real["next", "observation"]
    ))  # fmt: skip
    if dynamics.learn_termination:
        stats.update(dynamics.fit_termination(real["next", "observation"], real["next", "terminated"]))
    return stats


def refill_model_buffer(
    data: MBPODataModule, dynamics: DynamicsModule, actor: TanhGaussianActor, termination_fn: TerminationFn,
    rollout_length: int,
) -> RolloutResult:  # fmt: skip
    """Size the model buffer for ``rollout_length`` (the DataModule, from the run's schedule) and add
    ``rollout_length``-step rollouts from ``schedule.rollout_batch_size`` real start states."""
    data.size_model_buffer(rollout_length)
    result = branched_rollout(
        dynamics.model, actor, dynamics.elites, termination_fn,
        data.sample_start_states(data.run.schedule.rollout_batch_size).to(dynamics.elites.device), rollout_length,
    )  # fmt: skip
    data.add_model(result.transitions)
    return result


def model_data_metrics(
    stats: dict[str, Tensor], elites: Tensor, result: RolloutResult, data: MBPODataModule, rollout_length: int
) -> dict[str, Tensor | float]:
    """What one model training and rollout batch logs."""
    rollout_batch_size = data.run.schedule.rollout_batch_size
    optional = ("termination_loss", "termination_accuracy")
    return {
        "dynamics/holdout_mse": stats["holdout_mse"],
        "dynamics/holdout_mse_elites": stats["holdout_mse"][elites].mean(),
        "dynamics/train_loss": stats["train_loss"],
        "dynamics/epochs": stats["epochs"],
        **{f"dynamics/{key}": stats[key] for key in optional if key in stats},
        "dynamics/elites": elites,
        "rollout/length": rollout_length,
        "rollout/kept_fraction": result.steps_alive[-1].float() / rollout_batch_size,
        "rollout/mean_alive_steps": result.steps_alive.float().sum() / rollout_batch_size,
        "rollout/new_transitions": result.transitions.shape[0],
        "rollout/dropped_nonfinite": result.dropped_nonfinite,
        "rollout/model_buffer_size": len(data.model_buffer),
        "rollout/model_buffer_capacity": data.model_buffer.storage.max_size,
        "rollout/real_buffer_size": len(data.real_buffer),
    }
