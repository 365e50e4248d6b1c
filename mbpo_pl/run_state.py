"""``RunState``: the run-level facts every part of a training run reads, in one place.

The root module holds it (``MBPO.run``) and builds it from the Trainer the first time a part asks: the DataModule
(device, per-rank buffer seeds), the env loop (which advances the counters), the evaluation, the diagnostics, the
progress bar and the CLI all read it there; no callback looks for another in the callback list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from lightning.pytorch import Trainer

from mbpo_pl.clock import RunClock
from mbpo_pl.schedule import MBPOSchedule

RANK_SEED_STRIDE = 1000  # rank r's streams are seeded seed + 1000 * r (+ the stream's own offset)


@dataclass
class RunState:
    """Where a run is and what it runs on.

    Attributes:
        seed: the run seed (``seed_everything``; a resumed run keeps its checkpoint's).
        seeds: a population's seeds (``--seeds``: several independent agents in one process), ``None`` for one
            agent; seed ``s``'s streams are seeded as a one-agent run of seed ``s`` seeds them.
        rank, world_size: this process and the number of processes (DDP ranks) that train one agent together on
            their shared data; ``0, 1`` in each process of a population split over processes (its seeds are its
            own: :mod:`mbpo_pl.seed_split`).
        device: the Trainer's root device.
        total_env_steps: the run's length in real env steps (``loop.total_env_steps``).
        use_model: whether the run trains a model and makes rollouts (``false``: the model-free SAC baseline).
        schedule: MBPO's schedule (the loop's :class:`~mbpo_pl.schedule.MBPOSchedule`; ``None`` outside a run).
        env_steps: real env steps so far, counted globally (each process's step counts ``world_size``).
        model_trainings: ensemble trainings so far.
        rollout_length: the rollout length ``k`` of the last model-data refresh.
        last_eval_return: the last evaluation's mean return (``None`` before the first; a population's: the mean
            over its seeds).
        last_eval_returns: a population's last evaluation return of each seed still training.
        stopped: a population's seeds stopped because their training became non-finite, by seed index: the env
            step and reason of the stop and the seed's one-agent state dict at that moment
            (:meth:`~mbpo_pl.system.MBPO.stop_seeds`); the other seeds train on.
        env_steps_per_s: env steps per second over the last epoch (``None`` before the first).
        clock: the epoch's time split that every part bills its time to (``time/`` metrics).
    """

    seed: int = 0
    seeds: list[int] | None = None
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    total_env_steps: int = 0
    use_model: bool = True
    schedule: MBPOSchedule | None = None
    env_steps: int = 0
    model_trainings: int = 0
    rollout_length: int = 0
    last_eval_return: float | None = None
    last_eval_returns: list[float] | None = None
    stopped: dict[int, dict] = field(default_factory=dict)
    env_steps_per_s: float | None = None
    clock: RunClock = field(default_factory=RunClock)

    @classmethod
    def from_trainer(cls, trainer: Trainer) -> RunState:
        """The facts of ``trainer``'s run; the seed is the global torch seed ``seed_everything`` set."""
        device = trainer.strategy.root_device
        seeds = getattr(trainer.lightning_module, "seeds", None)
        rank, world_size = trainer.global_rank, trainer.world_size
        if getattr(trainer.strategy, "independent_ranks", False):  # a population split over processes: each
            rank, world_size = 0, 1  # process's seeds step, count and seed their data as a one-process population's
        return cls(torch.initial_seed() % 2**31, seeds, rank, world_size, device, clock=RunClock(device))

    @property
    def population(self) -> int | None:
        """The number of agents of a population run (``None``: one agent)."""
        return None if self.seeds is None else len(self.seeds)

    @property
    def training_seeds(self) -> list[int]:
        """The indices of a population's seeds still training (not :attr:`stopped`); ``[0]`` for one agent."""
        return [index for index in range(self.population or 1) if index not in self.stopped]

    def rank_seed(self, stream: int = 0) -> int:
        """The seed of this process's copy of a random stream (``stream``: 0 the real buffer and the real env, 1 the
        model buffer): ``seed + 1000 * rank + stream``, on fresh and resumed runs alike. Rank 0 keeps the run seed,
        so a one-process run is seeded as ``seed_everything`` says."""
        return self.seed + RANK_SEED_STRIDE * self.rank + stream

    def seed_streams(self, stream: int = 0) -> list[int]:
        """:meth:`rank_seed` of every agent of a population (``[rank_seed]`` for one agent)."""
        seeds = [self.seed] if self.seeds is None else self.seeds
        return [seed + RANK_SEED_STRIDE * self.rank + stream for seed in seeds]
