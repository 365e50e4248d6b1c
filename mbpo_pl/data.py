"""``MBPODataModule``: the real and model replay buffers (TorchRL) and the stream of mixed SAC batches.

Mapping of MBPO's loop onto Lightning (see also ``callbacks/env_loop.py``):

* one Lightning **epoch** = one model-training period of ``loop.model_train_freq`` real env steps (the run's
  :class:`~mbpo_pl.schedule.MBPOSchedule`, which also sizes the model buffer: :meth:`MBPODataModule.size_model_buffer`);
* one **batch** (one ``training_step``) = one real env step's worth of SAC training: a ``[G, batch_size]``
  TensorDict holding ``G = updates_per_step`` minibatches, each with exactly ``int(batch_size * real_ratio)``
  real rows followed by model rows (mixed *within* every minibatch), all drawn in one ``sample`` call per buffer.

The train dataloader is sized (``len == loop.model_train_freq``), so Lightning does not prefetch: each batch is drawn
when the loop asks for it, after the env step that precedes it has been pushed into the real buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from tensordict import TensorDict
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset
from torchrl.data import TensorDictReplayBuffer

from mbpo_pl.buffer_checkpoints import BufferCheckpoints, checkpoint_token
from mbpo_pl.envs import EnvSpec
from mbpo_pl.errors import ConfigError, require_positive
from mbpo_pl.replay import PopulationReplay, SeedReplay
from mbpo_pl.run_state import RunState


def _as_is(batch: TensorDict) -> TensorDict:
    return batch  # the default collate would unpack the TensorDict


class _SACBatches(IterableDataset):
    """``model_train_freq`` batches per epoch (the run's schedule), each drawn lazily from the DataModule's buffers."""

    def __init__(self, datamodule: MBPODataModule) -> None:
        self.datamodule = datamodule

    def __len__(self) -> int:
        return self.datamodule.run.schedule.model_train_freq

    def __iter__(self) -> Iterator[TensorDict]:
        for _ in range(len(self)):
            yield self.datamodule.sample_sac_batches()


class MBPODataModule(LightningDataModule):
    """Real-env and model-rollout replay buffers and the mixed SAC batches.

    Args:
        env_id: Gymnasium id of a continuous-control env (e.g. ``Hopper-v5``).
        env_kwargs: keyword arguments of ``gymnasium.make`` (e.g. the paper's Ant/Humanoid observation options).
        updates_per_step: SAC updates per real env step (``G``).
        batch_size: SAC minibatch size.
        real_ratio: fraction of each minibatch drawn from real transitions (``int(batch_size * real_ratio)`` rows).
        real_buffer_size: capacity of the real replay buffer.
        buffer_storage: ``memory`` (tensors on the training device) or ``memmap`` (memory-mapped files under
            ``buffer_dir``: large buffers off the RAM, and checkpoints that hold a reference to a copy of the
            buffers written beside them instead of the buffers themselves).
        buffer_dir: directory of the memory-mapped buffers (``memmap`` only; default: ``buffers/`` in the run's own
            log folder, so runs never share buffer files and a resumed run finds its own).

    The buffers' sampling generators are seeded per rank from the run seed (``RunState.rank_seed``). A population
    run (``--seeds``) holds one real and one model buffer per seed (:class:`~mbpo_pl.replay.PopulationReplay`,
    each seeded as that seed's one-agent run seeds its own); its transitions and batches have a leading seed
    dimension (``[S, ...]``; batches ``[G, S, batch_size]``).
    """

    def __init__(
        self,
        env_id: str = "InvertedPendulum-v5",
        env_kwargs: dict[str, Any] | None = None,
        updates_per_step: int = 20,
        batch_size: int = 256,
        real_ratio: float = 0.05,
        real_buffer_size: int = 1_000_000,
        buffer_storage: Literal["memory", "memmap"] = "memory",
        buffer_dir: str | None = None,
        model_train_freq: int | None = None,
    ) -> None:
        super().__init__()
        if model_train_freq is not None:  # a config written for an older mbpo_pl
            raise ConfigError(
                "data.model_train_freq belongs to the loop: section (loop.model_train_freq, beside the rest of MBPO's "
                "schedule): move the line under loop: in the config (or pass --loop.model_train_freq)."
            )
        if not 0.0 <= real_ratio <= 1.0:
            raise ConfigError(f"data.real_ratio={real_ratio} must be in [0, 1] (the paper uses 0.05).")
        require_positive("data", updates_per_step=updates_per_step,
                         batch_size=batch_size, real_buffer_size=real_buffer_size)  # fmt: skip
        if real_buffer_size < batch_size:
            raise ConfigError(
                f"data.real_buffer_size={real_buffer_size} is smaller than one batch (data.batch_size={batch_size}): "
                "raise real_buffer_size or lower batch_size."
            )
        self.env_spec = EnvSpec.of(env_id, env_kwargs)  # makes and checks the env once
        self.updates_per_step = updates_per_step
        self.batch_size = batch_size
        self.real_ratio = real_ratio
        self.real_buffer_size = real_buffer_size
        self.buffer_storage = buffer_storage
        self.buffer_dir = Path(buffer_dir) if buffer_dir is not None else None
        self.num_real = int(batch_size * real_ratio)
        self.replay: SeedReplay | PopulationReplay | None = None  # the buffers, made in setup()
        self._checkpoints = BufferCheckpoints(buffer_storage, self._dump_root)
        self._seed_checkpoints: list[BufferCheckpoints] = []  # a population's, one per seed (setup())
        self.run = RunState()  # the run's device, rank and seed: the module's RunState from setup() on

    # The env's facts, read from its one description (the CLI links obs_dim/act_dim into the networks' sizes).
    @property
    def env_id(self) -> str:
        return self.env_spec.env_id

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return self.env_spec.env_kwargs

    @property
    def obs_dim(self) -> int:
        return self.env_spec.obs_dim

    @property
    def act_dim(self) -> int:
        return self.env_spec.act_dim

    @property
    def real_buffer(self) -> TensorDictReplayBuffer | None:
        """The real buffer (a population's: its first seed's)."""
        return None if self.replay is None else self._first_seed.real

    @property
    def model_buffer(self) -> TensorDictReplayBuffer | None:
        """The model buffer (a population's: its first seed's)."""
        return None if self.replay is None else self._first_seed.model

    @property
    def _first_seed(self) -> SeedReplay:
        return self.replay.seeds[0] if isinstance(self.replay, PopulationReplay) else self.replay

    def setup(self, stage: str) -> None:
        if self.replay is not None:
            return
        if self.trainer is not None:
            self.run = self.trainer.lightning_module.run
        else:  # detached (scripts, benchmarks): this process, seeded as torch is
            self.run = RunState(seed=torch.initial_seed() % 2**31)
        if self.buffer_dir is None and self.buffer_storage == "memmap":
            run_dir = self.trainer.log_dir if self.trainer is not None else None  # the same on every rank
            self.buffer_dir = Path(run_dir or ".") / "buffers"
        live = None if self.buffer_storage != "memmap" else self.buffer_dir / f"rank{self.run.rank}" / "live"
        if self.run.seeds is not None:  # each seed's buffers (memmap: in live/seed_<s>/) and checkpoint dumps
            self.replay = PopulationReplay(self.real_buffer_size, self._device, self.run.seed_streams(0),
                                           live, self.run.seeds)  # fmt: skip
            self._seed_checkpoints = [
                BufferCheckpoints(self.buffer_storage, partial(self._seed_dump_root, seed)) for seed in self.run.seeds
            ]  # fmt: skip
            return
        # rank_seed(0) for the real buffer, rank_seed(1) = rank_seed(0) + 1 for the model buffer
        self.replay = SeedReplay(self.real_buffer_size, self._device, self.run.rank_seed(0), live)

    @property
    def _device(self) -> torch.device:
        return self.run.device

    @property
    def seed(self) -> int:
        return self.run.seed

    def add_real(self, transitions: TensorDict, seeds: list[int] | None = None) -> None:
        """``transitions [n]`` (a population: ``[S', n]``, row ``i`` of seed index ``seeds[i]``, default every seed)."""
        self.replay.add_real(transitions, *self._of(seeds))

    def real_transitions(self, seeds: list[int] | None = None) -> TensorDict:
        """Every stored real transition ``[N]``, in storage order (what the dynamics model trains on); a
        population's ``[S', N]`` of the seed indices ``seeds`` (default: every seed)."""
        return self.replay.real_transitions(*self._of(seeds))

    def sample_start_states(self, count: int, seeds: list[int] | None = None) -> Tensor:
        """``count`` real observations ``[count, O]`` drawn uniformly (with replacement) as rollout start states (a
        population's: ``[S', count, O]`` of the seed indices ``seeds``, default every seed)."""
        return self.replay.sample_start_states(count, *self._of(seeds))

    def size_model_buffer(self, rollout_length: int) -> None:
        """Size the model buffer for rollouts of ``rollout_length`` steps as the run's schedule says
        (:meth:`MBPOSchedule.model_buffer_capacity`), keeping the most recent transitions that fit."""
        self.resize_model_buffer(self.run.schedule.model_buffer_capacity(rollout_length, self.run.world_size))

    def resize_model_buffer(self, capacity: int) -> None:
        """(Re)allocate the model buffer with ``capacity``, keeping the most recent transitions that fit."""
        self.replay.resize_model(capacity)

    def add_model(self, transitions: TensorDict | list[TensorDict], seeds: list[int] | None = None) -> None:
        """``transitions [M]`` (a population: one ``[M_i]`` per seed index of ``seeds``, default every seed) into
        the model buffer(s)."""
        self.replay.add_model(transitions, *self._of(seeds))

    def _of(self, seeds: list[int] | None) -> tuple:
        """The seed-index argument of a population's buffer call (``()``: all seeds, or one agent's buffers)."""
        if seeds is not None and not isinstance(self.replay, PopulationReplay):
            raise ValueError("seed indices are for a population's buffers; this run trains one agent")
        return () if seeds is None else (seeds,)

    def sample_sac_batches(self) -> TensorDict:
        """``[G, batch_size]`` minibatches; in each, the first ``num_real`` rows are real, the rest model data.

        Before the first rollout has produced data (or with ``real_ratio == 1``) every row is real.
        """
        return self.replay.sample_batches(self.updates_per_step, self.batch_size, self.num_real)

    def train_dataloader(self) -> DataLoader:
        # A private generator: creating the loader's iterator then draws no number from the global torch RNG,
        # so a resumed run consumes random numbers exactly as an uninterrupted one.
        return DataLoader(
            _SACBatches(self), batch_size=None, num_workers=0, collate_fn=_as_is, generator=torch.Generator()
        )

    # ------------------------------------------------------------------ checkpoint
    def _dump_root(self, name: str) -> Path:
        return self.buffer_dir / f"rank{self.run.rank}" / "checkpoint" / name

    def _seed_dump_root(self, seed: int, name: str) -> Path:
        return self._dump_root(f"seed_{seed}") / name

    def state_dict(self) -> dict:
        """Both replay buffers (filled part only) with writer positions and sampling RNG states.

        Under DDP the checkpoint file is written by rank 0 and, with in-memory buffers, holds rank 0's buffers. The
        env the buffers come from is checked by ``MBPO.on_load_checkpoint``, before anything is loaded.
        """
        state = {"seed": self.seed, "buffer_storage": self.buffer_storage}
        if isinstance(self.replay, PopulationReplay):  # each seed's buffers as one agent's
            population = zip(self.replay.seeds, self._seed_checkpoints)
            return {**state, "population": [self._replay_state(replay, saver) for replay, saver in population]}
        return {**state, **self._replay_state(self.replay, self._checkpoints)}

    @staticmethod
    def _replay_state(replay: SeedReplay, checkpoints: BufferCheckpoints) -> dict:
        token = checkpoint_token(replay.real, replay.model)
        state = {"real": checkpoints.save("real", replay.real, replay.real_generator, token)}
        if replay.model is not None:
            state["model"] = checkpoints.save("model", replay.model, replay.model_generator, token)
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.replay is None:  # loaded outside a Trainer's set-up (scripts, tests)
            self.setup("fit")
        self.run.seed = state["seed"]  # the run seed the buffers were made with (model buffers are remade)
        if isinstance(self.replay, PopulationReplay):
            if "population" not in state:
                raise ConfigError("this checkpoint holds one agent's replay buffers, not a population's: resume it "
                                  "without --seeds.")  # fmt: skip
            for replay, own, loader in zip(self.replay.seeds, state["population"], self._seed_checkpoints):
                self._load_replay(replay, own, loader)
            return
        self.replay.seed = self.run.rank_seed(0)
        self._load_replay(self.replay, state, self._checkpoints)

    def _load_replay(self, replay: SeedReplay, state: dict, checkpoints: BufferCheckpoints) -> None:
        replay.real, replay.real_generator = checkpoints.load(
            "real", state["real"], self._device, replay.memmap_root and replay.memmap_root / "real"
        )
        if "model" in state:
            label = f"model-{state['model'].get('capacity')}"
            replay.model, replay.model_generator = checkpoints.load(
                "model", state["model"], self._device, replay.memmap_root and replay.memmap_root / label
            )
