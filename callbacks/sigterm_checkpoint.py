"""``SigtermCheckpoint``: a run stopped by SIGTERM saves its whole state at the env step it stopped at.

Schedulers stop a job with SIGTERM and kill it a grace period later (SLURM at preemption or at the time limit, after
``KillWait``, 30 s by default; Kubernetes after ``terminationGracePeriodSeconds``; ``kill PID``). Lightning answers
SIGTERM by stopping training at the end of the current training step (one real env step and its SAC updates; a
model training under way finishes first) and raising ``SIGTERMException``; this callback then writes the run's state
there into the checkpoint folder's ``last.ckpt``, the file ``--ckpt_path RUN_DIR`` and ``--ckpt_path last`` resume.
The resumed run continues exactly as if it had not stopped (Lightning resumes inside the epoch; the env loop skips
the epoch-start work already done), instead of repeating up to ``every_n_epochs`` epochs of env steps since the last
periodic checkpoint. The file is written through the run's ``CheckpointIO`` (the CLI's streams to a temporary file
and renames it), so a SIGKILL during the write leaves the previous ``last.ckpt`` whole. The command then exits
with status 143 (128 + SIGTERM), as a process ended by SIGTERM does.

Not saved: a run without checkpointing; a run over several processes (DDP, a population split over processes),
which resumes from its last periodic checkpoint; Ctrl-C (SIGINT), which stops at once, possibly inside an update,
where no consistent state exists. ``ModelCheckpoint(save_on_exception=True)`` is refused: it would also write the
state after a crash or a non-finite loss over ``last.ckpt`` (the env loop saves that state to its own
``nonfinite-env_steps=N.ckpt``).

The CLI adds this callback to every run; with a Trainer of one's own, pass it in ``callbacks``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mbpo_pl.errors import ConfigError
from mbpo_pl.system import MBPO

SIGTERM_EXIT_STATUS = 143  # 128 + SIGTERM (15): what a shell reports for a process ended by SIGTERM


class SigtermCheckpoint(Callback):
    """On SIGTERM, save the run's state to ``<checkpoint dir>/last.ckpt`` (module docstring)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "save_on_exception", False):
                raise ConfigError(
                    "ModelCheckpoint(save_on_exception=true) would write the state after any error (a crash inside an "
                    "update, a non-finite loss) over last.ckpt, losing the last good one. A SIGTERM is saved anyway "
                    "(callbacks.SigtermCheckpoint): drop save_on_exception from the ModelCheckpoint."
                )

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        env_steps = pl_module.run.env_steps if isinstance(pl_module, MBPO) else None
        stopped = f"SIGTERM: training stopped after {env_steps:,} env steps" if env_steps is not None else "SIGTERM"
        checkpoint = trainer.checkpoint_callback
        if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.dirpath is None:
            self._say(trainer, f"{stopped}; checkpointing is off, so nothing was saved.")
            return
        if trainer.world_size > 1:
            self._say(trainer, f"{stopped}; a run over {trainer.world_size} processes saves no checkpoint on SIGTERM: "
                               "it resumes from its last periodic checkpoint.")  # fmt: skip
            return
        path = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        trainer.save_checkpoint(path, weights_only=False)  # everything a resume needs
        self._say(trainer, f"{stopped}; its state is saved to {path}: --ckpt_path {path} resumes it from there.")

    @staticmethod
    def _say(trainer: Trainer, message: str) -> None:
        if trainer.is_global_zero:
            print(message, file=sys.stderr, flush=True)
