"""TorchRL replay buffers as MBPO uses them: uniform sampling with a seeded generator of their own, in memory or as
memory-mapped files, and their exact state (filled part, writer cursor, sampling RNG) for checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from mbpo_pl.utils import seeded_generator


def make_replay_buffer(
    capacity: int, device: torch.device, seed: int, memmap_dir: Path | None = None
) -> tuple[TensorDictReplayBuffer, torch.Generator]:
    """Uniform-sampling TorchRL buffer and its own seeded sampling generator.

    Storage in memory on ``device``, or, with ``memmap_dir``, memory-mapped files there (samples sent to ``device``).
    """
    if memmap_dir is None:
        storage = LazyTensorStorage(capacity, device=device)
        generator = seeded_generator(seed, device)
    else:
        shutil.rmtree(memmap_dir, ignore_errors=True)
        # Files are host memory: the storage and its index generator stay on the CPU; batches move on sampling.
        storage = LazyMemmapStorage(capacity, scratch_dir=memmap_dir, device="cpu")
        generator = seeded_generator(seed, torch.device("cpu"))
    buffer = TensorDictReplayBuffer(storage=storage, generator=generator, batch_size=None)
    return buffer, generator


def buffer_state(buffer: TensorDictReplayBuffer, generator: torch.Generator) -> dict:
    """The filled part of a buffer (in storage order), its writer position and its sampling RNG, as plain tensors."""
    index = torch.arange(len(buffer), device=buffer.storage.device)
    return {
        "capacity": buffer.storage.max_size,
        "data": buffer.storage[index].flatten_keys(".").to_dict() if len(buffer) else {},
        "writer": buffer.writer.state_dict(),
        "rng": generator.get_state(),
    }


def restore_buffer(state: dict, device: torch.device) -> tuple[TensorDictReplayBuffer, torch.Generator]:
    """Rebuild a buffer saved by :func:`buffer_state`: same positions, writer cursor and sampling RNG."""
    buffer, generator = make_replay_buffer(state["capacity"], device, seed=0)
    if state["data"]:
        data = TensorDict(state["data"]).unflatten_keys(".")
        buffer.extend(data.auto_batch_size_(batch_dims=1).to(device))
    buffer.writer.load_state_dict(state["writer"])
    generator.set_state(state["rng"])
    return buffer, generator
