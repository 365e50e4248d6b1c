"""``MBPO``: the root LightningModule composing the dynamics ensemble and SAC under one Trainer.

Both children are LightningModules with manual optimization; this root owns the optimizers the Trainer's
strategy manages (SAC's one, then the ensemble's one or two), runs the SAC updates in ``training_step`` and logs
their statistics once per epoch (model-training period); the env-loop callback trains the ensemble. The run's
state (env steps, ranks, seeds, device, clock) is :attr:`MBPO.run`, where every callback reads it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_only
from tensordict import TensorDict
from torch import Tensor

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError, NonFiniteError
from mbpo_pl.population import POPULATION_KEY, build_population, seed_generators, seed_state_dict
from mbpo_pl.run_state import RunState
from mbpo_pl.sac import SACModule
from mbpo_pl.seed_loggers import SeedLoggers, scalar_values
from mbpo_pl.seed_split import (
    gather_objects,
    gather_to_zero,
    merge_population_checkpoints,
    population_block,
    split_population_checkpoint,
    to_cpu,
)

# A checkpoint written inside an epoch (on SIGTERM; a ModelCheckpoint every N training steps) holds the epoch's SAC
# statistics so far under this key, so that the resumed epoch logs their means over the whole epoch.
EPOCH_SAC_STATS_KEY = "mbpo_epoch_sac_stats"


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
        if getattr(dynamics, "population", None) != sac.population:
            raise ConfigError(
                f"model.sac.population={sac.population} but the dynamics model is for "
                f"{getattr(dynamics, 'population', None)} seed(s): train several seeds with --seeds [0,1,...], "
                "which builds both for the population."
            )
        self.automatic_optimization = False
        self.dynamics = dynamics
        self.sac = sac
        self._sac_stat_sums: dict[str, Tensor] = {}
        self._sac_stat_count = 0
        self._run: RunState | None = None
        # A population (``--seeds``, :mod:`mbpo_pl.population`): the seeds this process trains (all of them, or its
        # block of a population split over processes: :mod:`mbpo_pl.seed_split`), each seed's random stream (its
        # state after the seed's initialisation until ``setup`` makes the generators) and, on rank 0, every seed's
        # run-folder loggers.
        self.seeds: list[int] | None = None
        self.population_seeds: list[int] | None = None  # every seed of the population, in every process
        self.seed_offset = 0  # the index of this process's first seed in ``population_seeds``
        self.seed_rng_states: list[Tensor] | None = None
        self.generators: list[torch.Generator] | None = None
        self.seed_loggers: SeedLoggers | None = None
        self._pending_seed_logs: list[tuple[int, dict[str, float], int]] = []  # split: sent at the epoch's end
        self._logged_stops = 0

    @property
    def run(self) -> RunState:
        """The run's state (:class:`~mbpo_pl.run_state.RunState`), built from the Trainer on first use."""
        if self._run is None:
            self._run = RunState.from_trainer(self.trainer) if self._trainer is not None else RunState()
        return self._run

    @classmethod
    def population_of(cls, dynamics_args: Mapping[str, Any], sac_args: Mapping[str, Any], seeds: list[int],
                      rank: int = 0, processes: int = 1) -> MBPO:  # fmt: skip
        """A population of ``len(seeds)`` agents trained together (``--seeds``), built from the one-agent modules'
        constructor arguments, seed ``s`` initialised as a one-agent run of seed ``s``
        (:func:`~mbpo_pl.population.build_population`); split over ``processes``, process ``rank``'s block of them
        (:func:`~mbpo_pl.seed_split.population_block`)."""
        own = population_block(seeds, rank, processes)
        dynamics, sac, states = build_population(dynamics_args, sac_args, own)
        model = cls(dynamics, sac)
        model.seeds, model.seed_rng_states = own, states
        model.population_seeds, model.seed_offset = list(seeds), rank * len(own)
        return model

    @property
    def population(self) -> int | None:
        """The number of agents this process trains (``None``: one agent)."""
        return None if self.seeds is None else len(self.seeds)

    @property
    def split(self) -> bool:
        """Whether the population is split over several processes, each training its block of the seeds."""
        return self.seeds is not None and len(self.seeds) != len(self.population_seeds)

    def setup(self, stage: str) -> None:
        if self.seeds is not None and self.generators is None:
            self.generators = seed_generators(self.seed_rng_states, self.seeds, self.trainer.strategy.root_device)
            self.sac.generators = self.generators
            run_dir = self.trainer.log_dir  # a collective under DDP: every process asks
            if self.trainer.is_global_zero:
                self.seed_loggers = SeedLoggers(self.trainer, self.population_seeds, run_dir)

    def on_train_epoch_end(self) -> None:
        if self.split:
            self._exchange_seed_events()
        if self.seed_loggers is not None:
            self.seed_loggers.save()

    def _exchange_seed_events(self) -> None:
        """A split population's epoch end, in every process: rank 0 writes what the processes' seeds logged out of
        step (episode ends) and the count of stopped seeds; when no seed is left training anywhere, every process
        stops with :class:`~mbpo_pl.errors.NonFiniteError`."""
        stopped = [(self.seed_offset + index, record["env_steps"]) for index, record in self.run.stopped.items()]
        parts = gather_objects(self.trainer, (self._pending_seed_logs, stopped))
        self._pending_seed_logs = []
        all_stopped = [stop for _, stops in parts for stop in stops]
        if self.trainer.is_global_zero:
            for index, values, env_steps in sorted((e for logs, _ in parts for e in logs), key=lambda e: e[2]):
                self.seed_loggers.log_one(index, values, env_steps)
            if len(all_stopped) != self._logged_stops:
                self.log_population_metrics({"population/stopped_seeds": len(all_stopped)}, self.run.env_steps)
        self._logged_stops = len(all_stopped)
        if len(all_stopped) == len(self.population_seeds):
            stops = [(self.population_seeds[index], step) for index, step in sorted(all_stopped)]
            raise NonFiniteError(f"every seed of the population has stopped (seed, env step): {stops}.")

    def teardown(self, stage: str) -> None:
        if self.seed_loggers is not None:
            self.seed_loggers.finalize("success")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mbpo_env"] = self.trainer.datamodule.env_spec.signature()  # the one record of the env
        if self._sac_stat_count and not self.split:  # saved inside an epoch: the epoch's SAC statistics so far
            checkpoint[EPOCH_SAC_STATS_KEY] = {"sums": dict(self._sac_stat_sums), "count": self._sac_stat_count}
        if self.seeds is not None:
            checkpoint[POPULATION_KEY] = {"seeds": self.seeds, "generators": [g.get_state() for g in self.generators],
                                          "stopped": self.run.stopped}  # fmt: skip
        if self.split:  # every process's block into rank 0's file, as one process of all seeds writes it
            parts = gather_to_zero(self.trainer, to_cpu(checkpoint))
            if parts is not None:
                merged = merge_population_checkpoints(parts)
                checkpoint.clear()
                checkpoint.update(merged)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Runs before the weights, buffers and callbacks are loaded: refuse a checkpoint of another env with a clear
        # message instead of a tensor size mismatch (or, worse, silently loading weights of the same shape trained
        # elsewhere).
        if self._trainer is not None and "mbpo_env" in checkpoint:
            self.trainer.datamodule.env_spec.check_checkpoint(checkpoint["mbpo_env"])
        saved = checkpoint.get(POPULATION_KEY)
        saved_seeds = None if saved is None else list(saved["seeds"])
        if saved_seeds != self.population_seeds:

            def flag(seeds: list[int] | None) -> str:
                return "no --seeds (one agent)" if seeds is None else "--seeds [" + ",".join(map(str, seeds)) + "]"

            raise ConfigError(f"This checkpoint was trained with {flag(saved_seeds)}, this run has "
                              f"{flag(self.population_seeds)}: resume it with {flag(saved_seeds)}.")  # fmt: skip
        if self.split:  # this process's block of the population's checkpoint (written by any number of processes)
            split_population_checkpoint(checkpoint, self.seed_offset, self.seed_offset + len(self.seeds))
            saved = checkpoint[POPULATION_KEY]
        if saved is not None:
            for generator, state in zip(self.generators, saved["generators"]):
                generator.set_state(state)
            self.run.stopped = dict(saved.get("stopped", {}))
        if EPOCH_SAC_STATS_KEY in checkpoint:  # the epoch resumes where it was saved: its means cover all of it
            stats = checkpoint[EPOCH_SAC_STATS_KEY]
            self._sac_stat_sums, self._sac_stat_count = dict(stats["sums"]), stats["count"]  # to the device: below

    def on_train_start(self) -> None:
        # Restored before the module moved to its device; the epoch's sums go on adding up there.
        self._sac_stat_sums = {key: value.to(self.device) for key, value in self._sac_stat_sums.items()}

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
        advice = "Check the rewards for NaN/inf or extreme scale, or lower model.sac.lr."
        if self.seeds is not None:  # a population: the seeds whose statistics became non-finite stop, the others go on
            training = self.run.training_seeds
            finite = torch.stack([torch.isfinite(value[training]) for value in means.values()]).all(0).tolist()
            failed = [index for index, ok in zip(training, finite) if not ok]
            if failed:
                bad = [key for key, value in means.items() if not torch.isfinite(value[failed]).all()]
                self.stop_seeds(failed, f"SAC: {', '.join(bad)} became non-finite. {advice}")
            return means
        bad = [key for key, value in means.items() if not torch.isfinite(value).all()]
        if bad:
            raise NonFiniteError(f"SAC: {', '.join(bad)} became non-finite in the updates up to env step "
                                 f"{self.run.env_steps}. {advice}")  # fmt: skip
        return means

    def stop_seeds(self, indices: list[int], reason: str) -> None:
        """Stop the population's seeds at ``indices`` (their training became non-finite, ``reason``): each keeps
        its state at this moment as a one-agent state dict in the population's checkpoints (what ``export``,
        ``test`` and ``diagnose`` of its folder read) and takes no more env steps, model trainings, rollouts and
        evaluations, while the other seeds train on exactly as before. When no seed is left training the run
        stops with :class:`~mbpo_pl.errors.NonFiniteError`."""
        run, state_dict = self.run, self.state_dict()
        for index in indices:
            run.stopped[index] = {
                "seed": self.seeds[index], "env_steps": run.env_steps, "reason": reason,
                "state_dict": {k: v.clone() for k, v in seed_state_dict(state_dict, index, len(self.seeds)).items()},
            }  # fmt: skip
        for index in indices:  # in the seed's own folder: when it stopped (`report` says so)
            self.log_seed_metrics(index, {"population/stopped": 1.0}, run.env_steps)
        names = ", ".join(str(self.seeds[index]) for index in indices)
        if not self.split and not run.training_seeds:
            raise NonFiniteError(f"seed(s) {names} at env step {run.env_steps}: {reason} No seed of the population "
                                 "is left training.")  # fmt: skip
        warnings.warn(f"--seeds: seed(s) {names} stopped at env step {run.env_steps}: {reason} The other seeds train "
                      "on; a stopped seed's state at the stop is what its folder's tools (export, test, diagnose) read "
                      "from the population's checkpoints.", stacklevel=2)  # fmt: skip
        if not self.split:  # split: counted over the processes at the epoch's end (_exchange_seed_events)
            self.log_population_metrics({"population/stopped_seeds": len(run.stopped)}, run.env_steps)

    def log_metrics(self, metrics: Mapping[str, Tensor | float | int], env_steps: int) -> None:
        """Write ``metrics`` to every logger with the env-step count as the x-axis (one host sync per call).

        In a population every tensor with dimensions holds one value per seed along its first (``[S]``, ``[S, E]``)
        and goes to that seed's own run folder (:class:`~mbpo_pl.seed_loggers.SeedLoggers`); scalars are the
        population's (timings, env steps) and go to the population's folder and to every seed's. A stopped seed's
        folder gets nothing more. Split over processes, every process must call it (rank 0 writes)."""
        if self.seeds is None:
            if self.trainer.is_global_zero:
                for logger in self.trainer.loggers:
                    logger.log_metrics(scalar_values(metrics), step=env_steps)
            return
        shared = {key: value for key, value in metrics.items() if not isinstance(value, Tensor) or value.dim() == 0}
        per_seed = {key: value for key, value in metrics.items() if key not in shared}
        rows = {self.seed_offset + index: scalar_values({key: value[index] for key, value in per_seed.items()})
                for index in self.run.training_seeds}  # fmt: skip
        self.log_seed_rows(shared, rows, env_steps)

    def log_seed_rows(self, shared: Mapping[str, Tensor | float | int], rows: Mapping[int, Mapping[str, float]],
                      env_steps: int, gathered: bool = False) -> None:  # fmt: skip
        """A population's ``shared`` scalars into its folder and every seed's, and ``rows[i]`` into the folder of
        seed ``population_seeds[i]``. Split over processes, each passes its own seeds' rows and rank 0 writes them
        all (``gathered``: ``rows`` already hold every process's)."""
        if self.split and not gathered:
            parts = gather_to_zero(self.trainer, dict(rows))
            rows = {} if parts is None else {index: row for part in parts for index, row in part.items()}
        if not self.trainer.is_global_zero:
            return
        common = scalar_values(shared)
        for index in sorted(rows):
            self.seed_loggers.log_one(index, {**common, **rows[index]}, env_steps)
        for logger in self.trainer.loggers:
            logger.log_metrics(common, step=env_steps)

    @rank_zero_only
    def log_population_metrics(self, metrics: Mapping[str, float], env_steps: int) -> None:
        """Write a population's summary figures (e.g. the mean return over seeds) into its own folder only."""
        for logger in self.trainer.loggers:
            logger.log_metrics(scalar_values(metrics), step=env_steps)

    def log_seed_metrics(self, index: int, metrics: Mapping[str, Tensor | float | int], env_steps: int) -> None:
        """Write the ``metrics`` of this process's seed ``index`` (e.g. an episode that ended in its env) into that
        seed's run folder (split over processes: at the epoch's end, through rank 0)."""
        values = scalar_values(metrics)
        if self.split:
            self._pending_seed_logs.append((self.seed_offset + index, values, env_steps))
        elif self.trainer.is_global_zero:
            self.seed_loggers.log_one(index, values, env_steps)
