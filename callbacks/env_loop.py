"""``MBPOLoop``: the callback that acts in the real environment and fills the model buffer with rollouts.

Schedule (MBPO Alg. 2 with the official code's interleaving), counted in real env steps:

* before the first epoch: ``init_random_steps`` uniform-random actions fill the real buffer;
* at the start of every Lightning epoch (= every ``model_train_freq`` env steps): train the ensemble on
  the whole real buffer, set the rollout length ``k`` from the schedule, and refill the model buffer (which the
  DataModule sizes to ``retain_epochs * k * rollout_batch_size * epoch_length / model_train_freq``) with fresh
  rollouts from ``rollout_batch_size`` real start states;
* one real env step with the current stochastic policy before each ``training_step`` (the first in
  ``on_train_epoch_start``, the others in ``on_train_batch_end`` of the previous batch), so every batch of
  ``G`` SAC updates follows exactly one env step.

Training stops after ``total_env_steps`` env steps: the loop stops the Trainer (which runs with ``max_epochs=-1``)
at the end of the epoch that reaches it. Configured as the ``loop:`` section (``--loop.total_env_steps``).

Under DDP (``--trainer.strategy ddp --trainer.devices N``) every rank steps its own env copy (seed offset by
``1000 * rank``) into its own real buffer and makes its own rollouts; ``env_steps`` and every schedule count
*global* env steps (N per local step), so ``total_env_steps``, ``init_random_steps``, the rollout schedule and
the evaluation period mean the same as in one process. Each rank trains the model every ``model_train_freq`` of
its own steps, i.e. every ``N * model_train_freq`` global steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.model_data import (
    check_batches_fit,
    model_data_metrics,
    population_model_data_metrics,
    refill_model_buffer,
    refill_population_model_buffers,
    train_dynamics,
)
from callbacks.real_env import RealEnvRunner
from mbpo_pl.data import MBPODataModule
from mbpo_pl.errors import ConfigError, NonFiniteError, require_positive
from mbpo_pl.population import check_population_fits, seed_buffer_sizes
from mbpo_pl.rng import global_rng_state, set_global_rng_state
from mbpo_pl.run_state import RunState
from mbpo_pl.schedule import MBPOSchedule
from mbpo_pl.system import MBPO
from mbpo_pl.termination import TerminationFn


class MBPOLoop(Callback):
    """Real env steps, ensemble training and branched rollouts, on the schedule above.

    Args:
        total_env_steps: real env steps of the whole run (random initial steps included).
        init_random_steps: uniform-random env steps before training starts.
        model_train_freq: env steps between two model trainings (= one Lightning epoch; per process under DDP).
        rollout_batch_size: real start states per rollout batch.
        rollout_schedule: ``[min_epoch, max_epoch, min_length, max_length]`` of the truncated-linear schedule
            of the rollout length ``k``; epochs count ``epoch_length`` env steps after the random steps.
        epoch_length: env steps per schedule epoch (the paper's epoch: 1000; 250 for the pendulums).
        retain_epochs: schedule epochs of rollouts the model buffer retains.
        use_model: ``false`` turns the run into model-free SAC on the same code (the baseline MBPO is measured
            against): no ensemble training, no rollouts, no model diagnostics; SAC trains on real data only, so
            ``data.real_ratio`` must be 1 (``conf/sac.yaml`` sets this and the SAC paper's settings).
    """

    def __init__(
        self,
        total_env_steps: int = 20_000,
        init_random_steps: int = 5_000,
        model_train_freq: int = 250,
        rollout_batch_size: int = 100_000,
        rollout_schedule: list[int] = [20, 100, 1, 15],
        epoch_length: int = 1000,
        retain_epochs: int = 1,
        use_model: bool = True,
    ) -> None:
        super().__init__()
        require_positive("loop", total_env_steps=total_env_steps)
        if not 0 <= init_random_steps < total_env_steps:
            raise ConfigError(
                f"init_random_steps={init_random_steps} must be in [0, total_env_steps={total_env_steps})."
            )
        self.total_env_steps = total_env_steps
        self.schedule = MBPOSchedule(init_random_steps, model_train_freq, rollout_batch_size, tuple(rollout_schedule),
                                     epoch_length, retain_epochs)  # fmt: skip
        self.use_model = use_model
        # The run's counters, ranks and clock: the module's RunState from setup() on (checkpointed here).
        self.run = RunState()
        self.runners: list[RealEnvRunner] = []  # the real env (a population: one per seed), built in setup()
        self.termination_fn: TerminationFn | None = None  # what stops model rollouts, chosen in setup()
        self._pending_restore: dict[str, Any] | None = None

    # The run's counters, read where they live (RunState).
    @property
    def env_steps(self) -> int:
        return self.run.env_steps

    @property
    def model_trainings(self) -> int:
        return self.run.model_trainings

    @property
    def rollout_length(self) -> int:
        return self.run.rollout_length

    @property
    def world_size(self) -> int:
        return self.run.world_size

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not isinstance(pl_module, MBPO) or not isinstance(trainer.datamodule, MBPODataModule):
            raise TypeError("MBPOLoop needs the MBPO module and the MBPODataModule")
        data: MBPODataModule = trainer.datamodule
        if not self.use_model and data.real_ratio != 1.0:
            raise ConfigError(
                f"loop.use_model=false trains SAC on real data only, but data.real_ratio={data.real_ratio} asks for "
                "model data in every batch: set --data.real_ratio 1.0 (conf/sac.yaml does)."
            )
        self.run = pl_module.run  # the run's facts, shared with every callback: this loop's settings go in
        self.run.total_env_steps = self.total_env_steps
        self.run.use_model = self.use_model
        self.run.schedule = self.schedule
        self.runners = [RealEnvRunner(data.env_spec.make(), seed) for seed in self.run.seed_streams()]
        dynamics = pl_module.dynamics
        learned = dynamics.predict_termination if dynamics.learn_termination else None
        self.termination_fn = data.env_spec.termination_fn(learned)
        check_batches_fit(data, self.schedule, self.run.world_size)
        if self.run.seeds is not None:
            if self.run.world_size > 1:
                raise ConfigError("--seeds: a population over several processes splits its seeds over them "
                                  "(SeedSplitStrategy, which the command line picks); it cannot train as one agent "
                                  "under DDP.")  # fmt: skip
            real_size, model_size = seed_buffer_sizes(self.schedule, data.real_buffer_size, self.total_env_steps,
                                                      self.use_model)  # fmt: skip
            memmap_dir = data.buffer_dir if data.buffer_storage == "memmap" else None
            # A split population's processes on this machine share its RAM and disk (not a GPU's memory).
            shared = self.run.device.type == "cpu" or memmap_dir is not None
            sharing = len(self.run.seeds) * (trainer.num_devices if shared else 1)
            check_population_fits(sharing, data.obs_dim, data.act_dim, real_size, model_size, self.run.device,
                                  memmap_dir)  # fmt: skip
        self.run.clock.watch()  # leaves SIGTSTP pauses out of the timings; undone in teardown()

    @property
    def runner(self) -> RealEnvRunner | None:
        """The real env (a population's: its first seed's)."""
        return self.runners[0] if self.runners else None

    @property
    def episodes(self) -> int:
        return self.runner.episodes if self.runner is not None else 0

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for runner in self.runners:
            runner.close()
        self.run.clock.stop_watching()

    # ------------------------------------------------------------------ env
    def _env_step(self, trainer: Trainer, pl_module: MBPO, random: bool) -> None:
        """One real step (uniform-random action, or the current stochastic policy) into the real buffer; in a
        population every seed steps its own env, the actions of all seeds from one batched policy call, each seed's
        noise from its own generator."""
        if pl_module.seeds is not None:
            self._population_env_step(trainer, pl_module, random)
            return
        transition, ended = self.runner.step(None if random else pl_module.sac.actor.act, pl_module.device)
        trainer.datamodule.add_real(transition)
        self.run.env_steps += self.run.world_size  # global count: every rank takes one step at the same time
        if ended is not None:
            pl_module.log_metrics(
                {"train/episode_return": ended["return"], "train/episode_length": ended["length"]}, self.env_steps
            )

    def _population_env_step(self, trainer: Trainer, pl_module: MBPO, random: bool) -> None:
        device, training = pl_module.device, self.run.training_seeds  # a stopped seed's env stays where it stopped
        if not training:  # every seed of this process has stopped (split populations: the others' go on)
            self.run.env_steps += 1
            return
        obs = torch.stack([runner.observation(device) for runner in self.runners])  # [S, O]
        if random:
            actions = torch.stack([runner.random_action(device) for runner in self.runners])
        else:
            actions = pl_module.sac.actor.act(obs.unsqueeze(1), generators=pl_module.generators).squeeze(1)
        steps = {index: self.runners[index].advance(obs[index], actions[index]) for index in training}
        trainer.datamodule.add_real(torch.stack([transition for transition, _ in steps.values()]), training)  # [S', 1]
        self.run.env_steps += self.run.world_size
        for index, (_, ended) in steps.items():
            if ended is not None:
                pl_module.log_seed_metrics(
                    index, {"train/episode_return": ended["return"], "train/episode_length": ended["length"]},
                    self.env_steps,
                )  # fmt: skip

    # ------------------------------------------------------------------ model
    def _refresh_model_data(self, trainer: Trainer, pl_module: MBPO) -> None:
        """Train the ensemble on all real data, then replace the model data with fresh k-step rollouts."""
        data: MBPODataModule = trainer.datamodule
        # The Trainer's precision (e.g. `--trainer.precision bf16-mixed`) covers model training and rollouts too,
        # not only the SAC updates in `training_step`.
        run, dynamics, actor, generators = self.run, pl_module.dynamics, pl_module.sac.actor, pl_module.generators
        seeds = None if generators is None else run.training_seeds
        if seeds != []:  # [] : every seed of this process has stopped (a split population's others go on)
            with run.clock.timed("model_train"), trainer.precision_plugin.forward_context():
                stats = train_dynamics(dynamics, data, generators, seeds)
        if seeds and bool(stats["failed"].any()):  # those seeds stop; the others roll out and go on
            failed = [seed for seed, bad in zip(seeds, stats["failed"].tolist()) if bad]
            pl_module.stop_seeds(failed, "the dynamics model's training loss or holdout MSE became non-finite.")
            keep = [position for position, bad in enumerate(stats["failed"].tolist()) if not bad]
            stats = {key: value[keep] if value.dim() > 0 else value for key, value in stats.items()}
            seeds = run.training_seeds
        run.model_trainings += 1
        run.rollout_length = self.schedule.rollout_length(run.env_steps)
        if seeds == []:  # nothing to roll out; the (empty) figures still go through rank 0 with every process's
            pl_module.log_metrics({}, self.env_steps)
            return
        with run.clock.timed("rollout"), trainer.precision_plugin.forward_context():
            if generators is None:
                result = refill_model_buffer(data, dynamics, actor, self.termination_fn, run.rollout_length)
                metrics = model_data_metrics(stats, dynamics.elites, result, data, run.rollout_length)
            else:
                results = refill_population_model_buffers(data, dynamics, actor, self.termination_fn,
                                                           run.rollout_length, generators, seeds)  # fmt: skip
                metrics = population_model_data_metrics(stats, dynamics.elites, results, data, run.rollout_length,
                                                         seeds)  # fmt: skip
        pl_module.log_metrics(metrics, self.env_steps)

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.run.clock.start_epoch()
        with self.run.clock.timed("env"):
            while self.env_steps < self.schedule.init_random_steps:
                self._env_step(trainer, pl_module, random=True)
        if self.use_model:
            self._refresh_model_data(trainer, pl_module)
        with self.run.clock.timed("env"):
            self._env_step(trainer, pl_module, random=False)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx < self.schedule.model_train_freq - 1:
            with self.run.clock.timed("env"):
                self._env_step(trainer, pl_module, random=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        data: MBPODataModule = trainer.datamodule
        run, steps = self.run, self.schedule.model_train_freq
        timing = run.clock.epoch_metrics(steps * run.world_size, steps * data.updates_per_step)  # SAC: per rank
        run.env_steps_per_s = timing["time/env_steps_per_s"]
        pl_module.log_metrics({**timing, "train/env_steps": run.env_steps}, run.env_steps)
        if run.env_steps >= self.total_env_steps:
            trainer.should_stop = True

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, NonFiniteError):
            path = Path(trainer.log_dir or trainer.default_root_dir) / f"nonfinite-env_steps={self.run.env_steps}.ckpt"
            trainer.save_checkpoint(path)
            rank_zero_warn(f"{exception}\nState at the failure saved to {path} for inspection.")

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Counters, the real env's running episode and RNG (:meth:`RealEnvRunner.state_dict`) and the global torch
        RNG streams the loop draws from (policy sampling, rollouts)."""
        return {
            "env_steps": self.run.env_steps,
            "model_trainings": self.run.model_trainings,
            "rollout_length": self.run.rollout_length,
            "world_size": self.run.world_size,
            **(self.runner.state_dict() if len(self.runners) == 1 and self.run.seeds is None else
               {"runners": [runner.state_dict() for runner in self.runners]}),
            **global_rng_state(),
            "clock": self.run.clock.state_dict(),
        }  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Loaded after setup(): self.run is the module's RunState.
        self.run.env_steps = state_dict["env_steps"]
        self.run.model_trainings = state_dict["model_trainings"]
        self.run.rollout_length = state_dict["rollout_length"]
        self._pending_restore = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pending, self._pending_restore = self._pending_restore, None
        if pending is not None:
            self._restore(trainer, pending)
            # Saved inside an epoch (callbacks.SigtermCheckpoint, or a ModelCheckpoint every N training steps):
            # Lightning resumes that epoch without its start hooks, so the model training, rollouts and env step
            # done there before the save are not repeated; its time so far carries over from the checkpoint.
            if trainer.fit_loop.restarted_mid_epoch and "clock" in pending:
                self.run.clock.load_state_dict(pending["clock"])
        if self.run.rank > 0:
            separate_rank_stream(self.run.rank)

    def _restore(self, trainer: Trainer, pending: dict[str, Any]) -> None:
        if pending["world_size"] != self.world_size:
            raise ConfigError(
                f"This checkpoint was written by a run with {pending['world_size']} processes; resume it with the "
                f"same number (--trainer.devices/--trainer.num_nodes), not {self.world_size}."
            )
        if len(trainer.datamodule.real_buffer) == 0:
            raise ConfigError(
                f"This checkpoint was taken after {self.run.env_steps} env steps but holds no replay buffer, so "
                "training cannot continue as if never stopped. Start a new run instead."
            )
        # Restored here, after the Trainer's own set-up, so nothing draws from these streams in between. The
        # checkpoint holds rank 0's streams and buffers only: other ranks continue from rank 0's data with their own
        # env episode restarted (and their own stream, below).
        if "runners" in pending:  # a population: each seed's env
            for runner, state in zip(self.runners, pending["runners"], strict=True):
                runner.load_state_dict(state)
        else:
            self.runner.load_state_dict(pending, continue_episode=self.run.rank == 0)
        set_global_rng_state(pending)


def separate_rank_stream(rank: int) -> None:
    """Give rank ``rank`` > 0 its own global torch stream (policy noise, rollouts, bootstrap draws), derived from the
    run's stream at the start of training, on fresh and resumed runs alike; rank 0 keeps the run's stream."""
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,))) + rank)
