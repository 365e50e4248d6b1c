"""``SeedReplay``: one seed's real and model replay buffers (TorchRL) with their sampling generators, and the mixed
SAC minibatches drawn from them; ``PopulationReplay``: one ``SeedReplay`` per seed of a population.

Transitions use TorchRL's keys (:mod:`mbpo_pl.rollout`). The model buffer is (re)allocated by
:meth:`SeedReplay.resize_model` and keeps the most recent transitions that fit. Each seed samples from generators of
its own, seeded ``seed`` (real buffer) and ``seed + 1`` (model buffer), so what one seed draws never depends on
another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import Tensor
from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer

from mbpo_pl.buffers import make_replay_buffer


def latest(buffer: TensorDictReplayBuffer, count: int) -> TensorDict:
    """The ``count`` most recently written transitions of a round-robin buffer, oldest first."""
    size, capacity = len(buffer), buffer.storage.max_size
    cursor = buffer.write_count % capacity if size == capacity else size
    index = (torch.arange(cursor - count, cursor) % size).to(buffer.storage.device)
    return buffer.storage[index]


class SeedReplay:
    """A real buffer of ``real_buffer_size`` transitions and a model buffer, on ``device``; with ``memmap_root``,
    memory-mapped files under it (``real/``, ``model-<capacity>/``) instead of tensors in memory."""

    def __init__(self, real_buffer_size: int, device: torch.device, seed: int, memmap_root: Path | None = None
                 ) -> None:  # fmt: skip
        self.device, self.seed, self.memmap_root = device, seed, memmap_root
        self.real, self.real_generator = make_replay_buffer(real_buffer_size, device, seed, self._memmap("real"))
        self.model: TensorDictReplayBuffer | None = None
        self.model_generator: torch.Generator | None = None

    def _memmap(self, name: str) -> Path | None:
        return None if self.memmap_root is None else self.memmap_root / name

    def add_real(self, transitions: TensorDict) -> None:
        self.real.extend(transitions.to(self.device))

    def real_transitions(self) -> TensorDict:
        """Every stored real transition ``[N]``, in storage order."""
        return self.real.storage[torch.arange(len(self.real), device=self.real.storage.device)]

    def sample_start_states(self, count: int) -> Tensor:
        """``count`` real observations ``[count, O]`` drawn uniformly (with replacement)."""
        return self.real.sample(count)["observation"]

    def resize_model(self, capacity: int) -> None:
        """(Re)allocate the model buffer with ``capacity``, keeping the most recent transitions that fit."""
        if capacity < 1:
            raise ValueError(f"model buffer capacity must be >= 1, got {capacity}")
        old = self.model
        if old is not None and old.storage.max_size == capacity:
            return
        self.model, self.model_generator = make_replay_buffer(
            capacity, self.device, self.seed + 1, self._memmap(f"model-{capacity}")
        )
        if old is not None and len(old) > 0:
            self.model.extend(latest(old, min(len(old), capacity)))
        if old is not None and isinstance(old.storage, LazyMemmapStorage):
            shutil.rmtree(old.storage.scratch_dir, ignore_errors=True)

    def add_model(self, transitions: TensorDict) -> None:
        if self.model is None:
            raise RuntimeError("the model buffer must be sized (resize_model) before model transitions are added")
        if transitions.shape[0] > 0:
            self.model.extend(transitions)

    def sample_batches(self, num_batches: int, batch_size: int, num_real: int) -> TensorDict:
        """``[num_batches, batch_size]`` minibatches; in each, the first ``num_real`` rows are real, the rest model
        data (every row real before the first rollout has produced data)."""
        if self.model is None or len(self.model) == 0:
            num_real = batch_size
        real = self.real.sample(num_batches * num_real).reshape(num_batches, num_real)
        if num_real == batch_size:
            return real.exclude("index").to(self.device)
        num_model = batch_size - num_real
        model = self.model.sample(num_batches * num_model).reshape(num_batches, num_model)
        return torch.cat([real.exclude("index"), model.exclude("index")], dim=1).to(self.device)


class PopulationReplay:
    """One :class:`SeedReplay` per seed, seeded as a one-process run of that seed seeds its buffers (``seeds``: their
    sampling seeds); batches stack them along a leading seed dimension. With ``memmap_root``, seed ``names[i]``'s
    buffers are memory-mapped under ``memmap_root/seed_<name>/``."""

    def __init__(self, real_buffer_size: int, device: torch.device, seeds: list[int], memmap_root: Path | None = None,
                 names: list[int] | None = None) -> None:  # fmt: skip
        names = seeds if names is None else names
        self.seeds = [
            SeedReplay(real_buffer_size, device, seed, None if memmap_root is None else memmap_root / f"seed_{name}")
            for seed, name in zip(seeds, names, strict=True)
        ]  # fmt: skip

    def chosen(self, seeds: list[int] | None) -> list[SeedReplay]:
        """The buffers of the seeds at indices ``seeds`` (``None``: every seed's)."""
        return self.seeds if seeds is None else [self.seeds[s] for s in seeds]

    def add_real(self, transitions: TensorDict, seeds: list[int] | None = None) -> None:
        """``transitions [S', n]``: row ``i`` into seed ``seeds[i]``'s buffer (default: row ``s`` into seed ``s``)."""
        for replay, own in zip(self.chosen(seeds), transitions.unbind(0), strict=True):
            replay.add_real(own)

    def real_transitions(self, seeds: list[int] | None = None) -> TensorDict:
        """``[S', N]`` of the seeds ``seeds`` (default: all; the seeds still training hold as many real
        transitions: one per env step)."""
        return torch.stack([replay.real_transitions() for replay in self.chosen(seeds)])

    def sample_start_states(self, count: int, seeds: list[int] | None = None) -> Tensor:
        """``[S', count, O]``: each of the seeds ``seeds`` (default: all) draws from its own buffer."""
        return torch.stack([replay.sample_start_states(count) for replay in self.chosen(seeds)])

    def resize_model(self, capacity: int) -> None:
        for replay in self.seeds:
            replay.resize_model(capacity)

    def add_model(self, transitions: list[TensorDict], seeds: list[int] | None = None) -> None:
        """``transitions[i] [M_i]``: seed ``seeds[i]``'s rollouts (default: seed ``i``'s) into its model buffer."""
        for replay, own in zip(self.chosen(seeds), transitions, strict=True):
            replay.add_model(own)

    def sample_batches(self, num_batches: int, batch_size: int, num_real: int) -> TensorDict:
        """``[num_batches, S, batch_size]``: every seed's minibatches, each drawn with its own generators."""
        return torch.stack([r.sample_batches(num_batches, batch_size, num_real) for r in self.seeds], dim=1)
