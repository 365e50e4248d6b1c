"""TorchRL replay buffers as MBPO uses them: uniform sampling with a seeded generator of their own, in memory or as
memory-mapped files, and their exact state (filled part, writer cursor, sampling RNG) for checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from mbpo_pl.errors import ConfigError
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


def dump_buffer(name: str, buffer: TensorDictReplayBuffer, generator: torch.Generator, dump_dir: Path, token: str
                ) -> dict:  # fmt: skip
    """A memory-mapped buffer's checkpoint: TorchRL writes it as memory-mapped files in ``dump_dir`` (replacing the
    previous save there), marked with ``token``; the returned state refers to them."""
    shutil.rmtree(dump_dir, ignore_errors=True)
    dump_dir.parent.mkdir(parents=True, exist_ok=True)
    buffer.dumps(dump_dir)
    (dump_dir / "checkpoint_token").write_text(token)
    return {"dumped": name, "token": token, "capacity": buffer.storage.max_size, "rng": generator.get_state()}


def load_dumped_buffer(state: dict, dump_dir: Path, device: torch.device, memmap_dir: Path | None
                       ) -> tuple[TensorDictReplayBuffer, torch.Generator]:  # fmt: skip
    """Rebuild a buffer saved by :func:`dump_buffer` into fresh memory-mapped storage at ``memmap_dir``; refuses
    files of another save (the token differs) with the way out."""
    token_file = dump_dir / "checkpoint_token"
    found = token_file.read_text() if token_file.is_file() else None
    if found != state["token"]:
        raise ConfigError(
            f"The memory-mapped {state['dumped']} buffer for this checkpoint is not in {dump_dir} (found the buffers "
            f"of {'another save' if found else 'no save'}). With data.buffer_storage=memmap only the latest "
            "checkpoint's buffers are kept on disk: resume from the latest checkpoint (--ckpt_path last) "
            "with the same data.buffer_dir."
        )
    buffer, generator = make_replay_buffer(state["capacity"], device, 0, memmap_dir)
    buffer.loads(dump_dir)
    generator.set_state(state["rng"])
    return buffer, generator
