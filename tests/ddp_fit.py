"""A tiny 2-process DDP (gloo, CPU) fit; each rank saves its final state to OUT_DIR/rank{r}.pt.

Run by ``tests/test_ddp.py`` as ``python tests/ddp_fit.py OUT_DIR``; Lightning's DDP launcher starts rank 1 by
re-running this script.
"""

import sys
from pathlib import Path

import torch

from callbacks import MBPOLoop
from mbpo_pl.cli import main

out_dir = Path(sys.argv[1])
cli = main(
    [
        "fit", "--config", str(Path(__file__).parent / "conf" / "tiny.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
        "--trainer.logger.init_args.save_dir", str(out_dir / "logs"),
        "--torch_threads", "1",
    ]
)  # fmt: skip
model, data = cli.model, cli.datamodule
loop = next(c for c in cli.trainer.callbacks if isinstance(c, MBPOLoop))
real = data.real_buffer.storage[torch.arange(len(data.real_buffer))]
torch.save(
    {
        "world_size": cli.trainer.world_size,
        "sac": {k: v.clone() for k, v in model.sac.state_dict().items()},
        "dynamics": {k: v.clone() for k, v in model.dynamics.state_dict().items()},
        "elites": model.dynamics.elites.clone(),
        "normalizer_mean": model.dynamics.model.normalizer.mean.clone(),
        "env_steps": loop.env_steps,
        "model_trainings": loop.model_trainings,
        "real_observations": real["observation"].clone(),
    },
    out_dir / f"rank{cli.trainer.global_rank}.pt",
)
