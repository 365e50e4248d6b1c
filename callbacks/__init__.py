"""Lightning callbacks of mbpo_pl: the MBPO env/rollout loop and policy evaluation."""

from callbacks.env_loop import MBPOLoop, find_loop
from callbacks.evaluation import Evaluation

__all__ = ["Evaluation", "MBPOLoop", "find_loop"]
