"""``BufferCheckpoints``: how the DataModule's replay buffers go into a checkpoint and come back.

``memory`` storage: the filled part of each buffer, in the checkpoint file itself. ``memmap`` storage: the buffer's
memory-mapped files are dumped beside the run (:func:`~mbpo_pl.buffers.dump_buffer`) and the checkpoint refers to
the dump by a token; the newest save (written or loaded) and the one before it stay on disk until a newer checkpoint
file exists, and a second checkpoint file of the same moment (``last.ckpt`` beside ``epoch=N.ckpt``) refers to the
same files instead of writing them again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torchrl.data import TensorDictReplayBuffer

from mbpo_pl.buffers import buffer_state, dump_buffer, load_dumped_buffer, restore_buffer


def checkpoint_token(real: TensorDictReplayBuffer | None, model: TensorDictReplayBuffer | None) -> str:
    """Identifies the buffers' contents at a save, identically on every rank: their write counts (sizes only grow)
    and the model buffer's capacity (a resized buffer holds fewer transitions)."""
    counts = [b.write_count if b is not None else 0 for b in (real, model)]
    return "-".join(map(str, [*counts, model.storage.max_size if model is not None else 0]))


class BufferCheckpoints:
    """Saves and loads named buffers for ``storage`` (``memory`` or ``memmap``); ``dump_root(name)`` is where a
    memmap buffer's dumps live."""

    def __init__(self, storage: str, dump_root: Callable[[str], Path]) -> None:
        self.storage = storage
        self.dump_root = dump_root
        self._saved_token: str | None = None  # the newest save's token (written or loaded)
        self._kept_token: str | None = None  # the one before it, kept on disk until a newer checkpoint file exists
        self._saved_states: dict[str, dict] = {}  # the newest save's states, by buffer name

    def save(self, name: str, buffer: TensorDictReplayBuffer, generator: torch.Generator, token: str) -> dict:
        """The checkpoint state of buffer ``name`` (with its sampling generator) at the save ``token``."""
        if self.storage == "memory":
            return buffer_state(buffer, generator)
        if token != self._saved_token:
            self._kept_token, self._saved_token, self._saved_states = self._saved_token, token, {}
        if name not in self._saved_states:
            self._saved_states[name] = dump_buffer(
                name, buffer, generator, self.dump_root(name), token, keep=self._kept_token
            )
        return {**self._saved_states[name], "rng": generator.get_state()}

    def load(self, name: str, state: dict, device: torch.device, memmap_dir: Path | None
             ) -> tuple[TensorDictReplayBuffer, torch.Generator]:  # fmt: skip
        """Buffer ``name`` and its generator from :meth:`save`'s state (a memmap one into ``memmap_dir``)."""
        if "dumped" not in state:
            return restore_buffer(state, device)
        loaded = load_dumped_buffer(state, self.dump_root(name), device, memmap_dir)
        self._saved_token, self._kept_token, self._saved_states = state["token"], None, {}
        return loaded
