"""The model half of MBPO's loop: train the ensemble on the real data, refill the model buffer with branched
rollouts, and the metrics of both (``dynamics/``, ``rollout/``)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from mbpo_pl.data import MBPODataModule
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.population_dynamics import PopulationDynamicsModule
from mbpo_pl.replay import SeedReplay
from mbpo_pl.rollout import RolloutResult, branched_rollout, population_rollouts
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


def train_dynamics(dynamics: DynamicsModule, data: MBPODataModule, generators: list[torch.Generator] | None = None,
                   seeds: list[int] | None = None) -> dict[str, Tensor]:  # fmt: skip
    """Fit the ensemble (and the learned termination, if any) on every stored real transition; a population's
    ensembles of ``seeds`` (default: all) each on its own seed's (``[S', N]``), drawing from ``generators[s]``."""
    if generators is None:
        real = data.real_transitions().to(dynamics.elites.device)
    else:
        real = data.real_transitions(seeds).to(dynamics.elites.device)
    dataset = dynamics.make_dataset(
        real["observation"], real["action"], real["next", "reward"], real["next", "observation"]
    )  # fmt: skip
    if generators is None:
        stats = dynamics.fit_ensemble(*dataset)
    else:
        stats = dynamics.fit_ensemble(*dataset, generators, seeds)
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


def refill_population_model_buffers(
    data: MBPODataModule, dynamics: PopulationDynamicsModule, actor: TanhGaussianActor, termination_fn: TerminationFn,
    rollout_length: int, generators: list[torch.Generator], seeds: list[int] | None = None,
) -> list[RolloutResult]:  # fmt: skip
    """:func:`refill_model_buffer` for the population's ``seeds`` (default: all): each seed's start states from its
    own real buffer, rolled out through its own ensemble and policy (:func:`~mbpo_pl.rollout.population_rollouts`);
    the other seeds' model buffers keep what they hold."""
    data.size_model_buffer(rollout_length)
    start = data.sample_start_states(data.run.schedule.rollout_batch_size, seeds).to(dynamics.elites.device)
    seeds = list(range(len(data.replay.seeds))) if seeds is None else list(seeds)
    results = []
    for position, seed in enumerate(seeds):  # one seed at a time: only its rollouts wait in memory for its buffer
        (result,) = population_rollouts(dynamics.model, actor, dynamics.elites, termination_fn,
                                        start[position : position + 1], rollout_length, generators, [seed])  # fmt: skip
        data.add_model([result.transitions], [seed])
        results.append(replace(result, transitions=result.transitions[:0].clone()))
    return results


def model_data_metrics(
    stats: dict[str, Tensor], elites: Tensor, result: RolloutResult, data: MBPODataModule, rollout_length: int,
    replay: SeedReplay | None = None,
) -> dict[str, Tensor | float]:  # fmt: skip
    """What one model training and rollout batch logs (``replay``: the seed's buffers; default the DataModule's)."""
    replay = data.replay if replay is None else replay
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
        "rollout/new_transitions": result.num_transitions,
        "rollout/dropped_nonfinite": result.dropped_nonfinite,
        "rollout/model_buffer_size": len(replay.model),
        "rollout/model_buffer_capacity": replay.model.storage.max_size,
        "rollout/real_buffer_size": len(replay.real),
    }


def population_model_data_metrics(
    stats: dict[str, Tensor], elites: Tensor, results: list[RolloutResult], data: MBPODataModule, rollout_length: int,
    seeds: list[int] | None = None,
) -> dict[str, Tensor]:  # fmt: skip
    """:func:`model_data_metrics` of every seed of ``seeds`` (default: all; ``stats`` and ``results`` theirs, in that
    order), each value stacked along a leading seed dimension of the whole population (a seed left out gets zeros,
    which nothing logs)."""
    population = len(data.replay.seeds)
    seeds = list(range(population)) if seeds is None else list(seeds)
    per_seed = []
    for position, (index, result) in enumerate(zip(seeds, results, strict=True)):
        own = {key: value[position] if value.dim() > 0 else value for key, value in stats.items()}
        per_seed.append(model_data_metrics(own, elites[index], result, data, rollout_length, data.replay.seeds[index]))
    metrics = {}
    for key in per_seed[0]:
        values = torch.stack([torch.as_tensor(m[key]) for m in per_seed])
        full = values.new_zeros((population, *values.shape[1:]))
        full[seeds] = values
        metrics[key] = full
    return metrics
