"""Plain ``nn.Module`` networks (no Lightning): the dynamics ensemble and the SAC actor/critic."""

from mbpo_pl.nets.ensemble import EnsembleLinear, GaussianEnsemble, InputNormalizer
from mbpo_pl.nets.sac import TanhGaussianActor, TwinQCritic

__all__ = ["EnsembleLinear", "GaussianEnsemble", "InputNormalizer", "TanhGaussianActor", "TwinQCritic"]
