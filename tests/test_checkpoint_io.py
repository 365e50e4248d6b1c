"""StreamingCheckpointIO: atomic local checkpoints without an in-memory copy of their bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbpo_pl.checkpoint_io import StreamingCheckpointIO

ROOT = Path(__file__).resolve().parents[1]

_PEAK = """
import json, resource, sys, torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from mbpo_pl.checkpoint_io import StreamingCheckpointIO
plugin = StreamingCheckpointIO() if sys.argv[1] == "streaming" else TorchCheckpointIO()
state = {"buffer": torch.ones(64 * 2**20)}  # 256 MiB
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
plugin.save_checkpoint(state, sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"extra_mib": (after - before) / 1024}))
"""


def test_a_checkpoint_round_trips_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    state = {"state_dict": {"w": torch.randn(3, 4)}, "loops": {"step": 7}}
    StreamingCheckpointIO().save_checkpoint(state, path)
    loaded = StreamingCheckpointIO().load_checkpoint(path)
    torch.testing.assert_close(loaded["state_dict"]["w"], state["state_dict"]["w"], rtol=0, atol=0)
    assert loaded["loops"] == {"step": 7}
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    StreamingCheckpointIO().save_checkpoint({"step": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 (pickle's error type depends on the object)
        StreamingCheckpointIO().save_checkpoint({"step": 2, "unpicklable": lambda: None}, path)
    assert torch.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_saving_takes_no_copy_of_the_checkpoint_in_memory(tmp_path):
    """Peak memory added by saving a 256 MiB checkpoint: ours streams it, Lightning's default holds a copy of its
    bytes."""
    extra = {}
    for name in ("streaming", "lightning"):
        result = subprocess.run([sys.executable, "-c", _PEAK, name, str(tmp_path / f"{name}.ckpt")], cwd=ROOT,
                                capture_output=True, text=True, check=True)  # fmt: skip
        extra[name] = json.loads(result.stdout.splitlines()[-1])["extra_mib"]
    assert extra["streaming"] < 64, extra
    assert extra["lightning"] > 200, extra  # the copy this plugin avoids is really there


def test_the_command_line_saves_through_it(tmp_path):
    from mbpo_pl.cli import main

    cli = main(["fit", "--config", str(ROOT / "tests" / "conf" / "tiny.yaml"), "--trainer.logger.init_args.save_dir",
                str(tmp_path), "--loop.total_env_steps", "150"])  # fmt: skip
    assert isinstance(cli.trainer.strategy.checkpoint_io, StreamingCheckpointIO)
