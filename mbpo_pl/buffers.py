"""TorchRL replay buffers as MBPO uses them: uniform sampling with a seeded generator of their own, in memory or as
memory-mapped files, and their exact state (filled part, writer cursor, sampling RNG) for checkpoints."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer

from mbpo_pl.errors import ConfigError
from mbpo_pl.rng import seeded_generator

# A save's folder is named by its token: numbers joined by "-" (the buffers' write counts, see MBPODataModule).
_SAVE_NAME = re.compile(r"\d+(-\d+)+")


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
    """The filled part of a buffer (in storage order), its writer position and its sampling RNG, as plain tensors.

    A buffer at least half full gives views of its storage (the checkpoint costs no copy in memory; ``torch.save``
    writes a view's whole storage, so its file holds at most twice the filled rows); a less filled one a copy of
    its filled rows."""
    filled = len(buffer)
    data = {}
    if filled:
        rows = buffer.storage[0:filled]  # views of the storage
        if 2 * filled < buffer.storage.max_size:
            rows = rows.clone()
        data = rows.flatten_keys(".").to_dict()
    return {
        "capacity": buffer.storage.max_size,
        "data": data,
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


def dump_buffer(name: str, buffer: TensorDictReplayBuffer, generator: torch.Generator, dump_root: Path, token: str,
                keep: str | None) -> dict:  # fmt: skip
    """A memory-mapped buffer's checkpoint: TorchRL writes it as memory-mapped files in ``dump_root/token``, marked
    complete by a ``checkpoint_token`` file written last; the returned state refers to them.

    The save ``keep`` (the one the newest checkpoint file refers to until this save's file is written) stays on
    disk, so a process killed in the middle of this save still resumes from the previous checkpoint; every other
    save in ``dump_root`` is removed once this one is complete.
    """
    target = dump_root / token
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer.dumps(target)
    (target / "checkpoint_token").write_text(token)
    legacy_token = _read_token(dump_root)  # a save written straight into dump_root by older versions of this code
    for entry in dump_root.iterdir():
        is_save = _SAVE_NAME.fullmatch(entry.name) is not None
        if (entry.name in (token, keep)) if is_save else (legacy_token == keep):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return {"dumped": name, "token": token, "capacity": buffer.storage.max_size, "rng": generator.get_state()}


def _read_token(folder: Path) -> str | None:
    token_file = folder / "checkpoint_token"
    return token_file.read_text() if token_file.is_file() else None


def load_dumped_buffer(state: dict, dump_root: Path, device: torch.device, memmap_dir: Path | None
                       ) -> tuple[TensorDictReplayBuffer, torch.Generator]:  # fmt: skip
    """Rebuild a buffer saved by :func:`dump_buffer` into fresh memory-mapped storage at ``memmap_dir``; refuses
    a save that is no longer on disk, with the way out."""
    token = state["token"]
    dump_dir = next((d for d in (dump_root / token, dump_root) if _read_token(d) == token), None)
    if dump_dir is None:
        raise ConfigError(
            f"The memory-mapped {state['dumped']} buffer for this checkpoint (save {token}) is not in {dump_root}. "
            "With data.buffer_storage=memmap only the latest two checkpoints' buffers are kept on disk: resume "
            "from the latest checkpoint (--ckpt_path last) with the same data.buffer_dir."
        )
    buffer, generator = make_replay_buffer(state["capacity"], device, 0, memmap_dir)
    buffer.loads(dump_dir)
    generator.set_state(state["rng"])
    return buffer, generator
