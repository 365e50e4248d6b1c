"""mbpo_pl: Model-Based Policy Optimization (Janner et al. 2019) as a PyTorch Lightning project."""

from mbpo_pl.data import MBPODataModule
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.evaluate import PolicyEvaluation, evaluate_policy
from mbpo_pl.policy import Policy, load_policy
from mbpo_pl.sac import SACModule
from mbpo_pl.system import MBPO

__all__ = [
    "MBPO",
    "DynamicsModule",
    "MBPODataModule",
    "Policy",
    "PolicyEvaluation",
    "SACModule",
    "evaluate_policy",
    "load_policy",
]
__version__ = "0.1.0"
