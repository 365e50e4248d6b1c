"""``StreamingCheckpointIO``: Lightning's ``TorchCheckpointIO`` writing local checkpoint files without a copy in memory.

Lightning's ``TorchCheckpointIO`` serialises the whole checkpoint into an in-memory buffer and then writes it out
(``lightning.fabric.utilities.cloud_io._atomic_save``), so saving a checkpoint briefly takes its size again in
memory on top of the state it holds (measured in ``tests/test_checkpoint_io.py``). An MBPO checkpoint with
in-memory replay buffers is mostly those buffers (GBs for a population or a long run), so that copy sets a run's
peak memory. For a local path this plugin streams ``torch.save`` into a temporary file beside the target and
renames it into place: still atomic (a reader sees the old file or the new one, never a partial one), with no copy
of the bytes. Remote paths (``s3://`` and other fsspec file systems) go through Lightning's own path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO


class StreamingCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that streams local checkpoints to disk (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with partial.open("wb") as handle:
                torch.save(checkpoint, handle)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return None
