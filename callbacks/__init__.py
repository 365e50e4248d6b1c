"""Lightning callbacks of mbpo_pl: the MBPO env/rollout loop, policy evaluation, model diagnostics and the
progress bar."""

from callbacks.env_loop import MBPOLoop
from callbacks.evaluation import Evaluation
from callbacks.model_diagnostics import ModelDiagnostics
from callbacks.progress import MBPOProgressBar

__all__ = ["Evaluation", "MBPOLoop", "MBPOProgressBar", "ModelDiagnostics"]
