"""Lightning callbacks of mbpo_pl: the MBPO env/rollout loop, policy evaluation, model diagnostics and the
progress bar, and the checkpoint written on SIGTERM."""

from callbacks.env_loop import MBPOLoop
from callbacks.evaluation import Evaluation
from callbacks.model_diagnostics import ModelDiagnostics
from callbacks.progress import MBPOProgressBar
from callbacks.sigterm_checkpoint import SigtermCheckpoint

__all__ = ["Evaluation", "MBPOLoop", "MBPOProgressBar", "ModelDiagnostics", "SigtermCheckpoint"]
