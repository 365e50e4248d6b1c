"""Several seeds in one process (``--seeds``): the population's networks, each seed's weights and random stream as a
one-agent run of that seed would have them, and one seed's view of a population checkpoint.

Seed ``s`` of a population starts from the weights a one-agent run of seed ``s`` starts from (its dynamics ensemble
and SAC networks drawn after ``torch.manual_seed(s)``, in the order the CLI builds them) and draws every later random
number (policy noise, holdout split, bootstrap, rollouts) from a generator of its own that continues that stream; its
replay buffers and env are seeded as the one-agent run seeds them (:meth:`~mbpo_pl.run_state.RunState.seed_streams`).
So what a seed computes never depends on the other seeds, and a population of one agrees with the one-agent run up to
the rounding of the batched kernels.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from torch import Tensor

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.population_dynamics import PopulationDynamicsModule
from mbpo_pl.sac import SACModule
from mbpo_pl.schedule import MBPOSchedule

# A population checkpoint's entry: {"seeds": [...], "generators": [state, ...], "stopped": {index: {...}}}
POPULATION_KEY = "mbpo_population"


def check_seeds(seeds: list[int]) -> list[int]:
    """Refuse an empty list, negative or repeated seeds (one line each, the fix included)."""
    if not seeds:
        raise ConfigError("--seeds needs at least one seed, e.g. --seeds [0,1,2,3].")
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"--seeds {seeds}: seeds must be >= 0.")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(f"--seeds {seeds} repeats {repeated}: two agents of one seed would be the same run twice; "
                          "give each seed once.")  # fmt: skip
    return list(seeds)


def slice_into(population: Tensor, index: int, lone: Tensor, linear: bool) -> None:
    """Write a one-agent tensor into seed ``index`` of its population tensor; ``linear``: an ``nn.Linear``
    weight (``[out, in]``; the population's batched layers store ``[S, in, out]``) or bias."""
    target = population[index]
    target.copy_((lone.T if linear and lone.dim() == 2 else lone).reshape(target.shape))


def build_population(
    dynamics_args: Mapping[str, Any], sac_args: Mapping[str, Any], seeds: list[int]
) -> tuple[PopulationDynamicsModule, SACModule, list[Tensor]]:
    """The population's dynamics and SAC modules, seed ``s`` initialised as a one-agent run of seed ``s``, and each
    seed's CPU random-stream state after its initialisation (what its generator continues). ``*_args``: the
    one-agent modules' constructor arguments. The global random stream is left as it was."""
    population = len(seeds)
    with torch.random.fork_rng(devices=[]):
        dynamics = PopulationDynamicsModule(population=population, **dynamics_args)
        sac = SACModule(population=population, **sac_args)
        states = []
        for index, seed in enumerate(seeds):
            torch.manual_seed(seed)
            lone_sac = SACModule(**sac_args)  # in the order the CLI builds a one-agent run's children
            lone_dynamics = DynamicsModule(**dynamics_args)
            dynamics.model.seeds[index].load_state_dict(lone_dynamics.model.state_dict())
            with torch.no_grad():
                for name, value in sac.state_dict(keep_vars=True).items():
                    slice_into(value, index, lone_sac.state_dict()[name], name.startswith("actor.net."))
            states.append(torch.get_rng_state())
    return dynamics, sac, states


def seed_generators(states: list[Tensor], seeds: list[int], device: torch.device) -> list[torch.Generator]:
    """One generator per seed on ``device``: on the CPU continuing ``states`` (the seed's stream after its
    initialisation), elsewhere seeded with the seed itself."""
    generators = []
    for state, seed in zip(states, seeds):
        generator = torch.Generator(device=device)
        if generator.device.type == "cpu":
            generator.set_state(state)
        else:
            generator.manual_seed(seed)
        generators.append(generator)
    return generators


def seed_state_dict(state_dict: Mapping[str, Tensor], index: int, seeds: int) -> dict[str, Tensor]:
    """Seed ``index`` of a population's ``MBPO`` state dict as a one-agent ``MBPO`` state dict (what the tools
    that read a checkpoint's policy or model expect): ``dynamics.model.seeds.<index>.*`` becomes
    ``dynamics.model.*``, every SAC tensor and ``dynamics.elites`` its seed's slice (the actor's batched layers as
    ``nn.Linear`` stores them)."""
    prefix = f"dynamics.model.seeds.{index}."
    lone: dict[str, Tensor] = {}
    for name, value in state_dict.items():
        if name.startswith("dynamics.model.seeds."):
            if name.startswith(prefix):
                lone["dynamics.model." + name[len(prefix) :]] = value
            continue
        if not (name == "dynamics.elites" or name.startswith("sac.")):
            lone[name] = value
            continue
        if value.shape[:1] != (seeds,):
            raise ValueError(f"{name}: expected a leading seed dimension of {seeds}, got {tuple(value.shape)}")
        value = value[index]
        if name.startswith("sac.actor.net."):  # [in, out] -> nn.Linear's [out, in]; bias [1, out] -> [out]
            value = value.T if name.endswith("weight") else value.reshape(-1)
        lone[name] = value.contiguous()
    return lone


def spans_processes(trainer: Namespace) -> bool:
    """Whether a Trainer config asks for several processes (devices or nodes)."""
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    many = nodes > 1 or (isinstance(devices, int) and devices > 1) or (isinstance(devices, list) and len(devices) > 1)
    return many or (isinstance(devices, str) and devices not in ("auto", "1") and devices.strip("[], ") != "0")


def check_population_config(config: Namespace) -> None:
    """Refuse, before anything is built, what a population cannot train (one line each, the fix included)."""
    seeds = check_seeds(config.seeds)
    trainer = config.get("trainer") or Namespace()
    strategy = trainer.get("strategy") or "auto"
    if spans_processes(trainer) and strategy not in ("auto", "ddp"):
        raise ConfigError(f"--seeds {seeds} over several devices splits the seeds over the processes with its own "
                          f"DDP strategy; leave --trainer.strategy at auto (or ddp), not {strategy}.")  # fmt: skip
    model = config.get("model") or Namespace()
    for child, keys in (("dynamics", ("cuda_graphs", "learn_termination")), ("sac", ("cuda_graphs",))):
        init_args = (model.get(child) or Namespace()).get("init_args") or Namespace()
        for key in keys:
            if init_args.get(key):
                raise ConfigError(f"--seeds: model.{child}.{key} is not supported for a population; set it to "
                                  "false (or train the seeds as separate runs).")  # fmt: skip


def seed_checkpoint(checkpoint: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Seed ``index`` of a population's checkpoint as a one-agent checkpoint, for the tools that read a policy,
    a model or the real data (``export``, ``test``, ``diagnose``): its weights (:func:`seed_state_dict`; a seed
    stopped by a non-finite training: its weights at the stop) and its replay buffers. Not for resuming: optimizer
    states and the loop's state stay the population's."""
    seeds = len(checkpoint[POPULATION_KEY]["seeds"])
    lone = {key: value for key, value in checkpoint.items() if key != POPULATION_KEY}
    stopped = checkpoint[POPULATION_KEY].get("stopped", {}).get(index)
    if stopped is not None:  # a seed stopped by a non-finite training: its state at the stop
        lone["state_dict"] = stopped["state_dict"]
    else:
        lone["state_dict"] = seed_state_dict(checkpoint["state_dict"], index, seeds)
    for key, value in checkpoint.items():
        if isinstance(value, Mapping) and "population" in value and "buffer_storage" in value:  # the DataModule's
            lone[key] = {**{k: v for k, v in value.items() if k != "population"}, **value["population"][index]}
    return lone


def seed_buffer_sizes(schedule: MBPOSchedule, real_buffer_size: int, total_env_steps: int, use_model: bool = True
                      ) -> tuple[int, int]:  # fmt: skip
    """The most real and model transitions one seed's buffers hold in a run of ``total_env_steps`` env steps: its
    env steps up to ``real_buffer_size``, and the model buffer's capacity at the run's longest rollouts."""
    longest = max(schedule.rollout_length(0), schedule.rollout_length(total_env_steps))
    return min(real_buffer_size, total_env_steps), schedule.model_buffer_capacity(longest) if use_model else 0


def transition_bytes(obs_dim: int, act_dim: int) -> int:
    """Bytes of one stored transition: observation, action, next observation and reward in float32, three flags."""
    return 4 * (2 * obs_dim + act_dim + 1) + 3


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device`` (the kernel's ``MemAvailable`` for the CPU; ``None``: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_population_fits(
    population: int, obs_dim: int, act_dim: int, real_buffer_size: int, model_buffer_size: int, device: torch.device,
    memmap_dir: Path | None = None,
) -> int:  # fmt: skip
    """Refuse a population whose replay buffers (``population`` real buffers of ``real_buffer_size`` transitions,
    the most a seed's run fills, and model buffers of ``model_buffer_size``, the largest the run's rollouts reach)
    would not fit in the memory free on ``device`` (memory-mapped under ``memmap_dir``: on that disk); returns the
    estimate in bytes."""
    per_seed = (real_buffer_size + model_buffer_size) * transition_bytes(obs_dim, act_dim)
    if memmap_dir is None:
        free, where, other = available_memory(device), str(device), "data.buffer_storage memmap"
    else:
        existing = next(p for p in (memmap_dir, *memmap_dir.parents) if p.exists())
        free, where, other = shutil.disk_usage(existing).free, f"the disk of {existing}", "another data.buffer_dir"
    needed = population * per_seed
    if free is not None and needed > 0.9 * free:
        fitting = max(int(0.9 * free // per_seed), 0)
        raise ConfigError(
            f"--seeds: {population} agents' replay buffers need about {needed / 2**30:.1f} GiB on {where} "
            f"({real_buffer_size:,} real + {model_buffer_size:,} model transitions each at the run's longest "
            f"rollouts), more than the {free / 2**30:.1f} GiB free: train at most {fitting} seeds per process, "
            f"lower data.real_buffer_size / loop.rollout_batch_size, or use {other}."
        )
    return needed
