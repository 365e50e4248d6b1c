"""A population of 4 seeds split over 2 CPU processes (gloo), ``python tests/ddp_population_fit.py OUT_DIR STEPS
[ARGS...]``: trains to ``STEPS`` env steps with checkpoints, logging into ``OUT_DIR/logs``; ``ARGS``: more
command-line arguments (e.g. ``--ckpt_path RUN`` to resume).

Run by ``tests/test_population_split.py``; Lightning's DDP launcher starts rank 1 by re-running this script.
"""

import faulthandler
import sys
from pathlib import Path

faulthandler.dump_traceback_later(240, exit=True)  # a hang (a collective one process missed) fails with its stacks

sys.path.insert(0, str(Path(__file__).parent))
from tests_support import tiny_config_with_checkpoints  # noqa: E402

from mbpo_pl.cli import main  # noqa: E402

out_dir, steps = Path(sys.argv[1]), sys.argv[2]
extra = sys.argv[3:]
out_dir.mkdir(parents=True, exist_ok=True)
config = tiny_config_with_checkpoints(out_dir, name=f"tiny_{steps}.yaml")
main(["fit", "--config", config, "--seeds", "[0,1,2,3]", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
      "--trainer.logger.init_args.save_dir", str(out_dir / "logs"), "--torch_threads", "1",
      "--loop.total_env_steps", steps, *extra])  # fmt: skip
