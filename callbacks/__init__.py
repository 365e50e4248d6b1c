"""Lightning callbacks of mbpo_pl: the MBPO env/rollout loop, policy evaluation and the progress bar."""

from callbacks.env_loop import MBPOLoop, find_loop
from callbacks.evaluation import Evaluation
from callbacks.progress import MBPOProgressBar

__all__ = ["Evaluation", "MBPOLoop", "MBPOProgressBar", "find_loop"]
