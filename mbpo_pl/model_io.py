"""What the dynamics model reads and predicts: the one home of MBPO's input and target conventions.

* input ``[obs, action]``, ``[..., O + A]``;
* target ``[reward, next_obs - obs]``, ``[..., 1 + O]``: the reward and the *change* of the state, as the official
  MBPO code learns them (a change is smaller and better conditioned than the next state itself).

Every leading dimension is batch (members, samples, seeds).
"""

from __future__ import annotations

import torch
from torch import Tensor


def input_size(obs_dim: int, act_dim: int) -> int:
    return obs_dim + act_dim


def target_size(obs_dim: int) -> int:
    return 1 + obs_dim


def model_input(obs: Tensor, action: Tensor) -> Tensor:
    """``obs [..., O]``, ``action [..., A]`` -> ``[..., O + A]``."""
    return torch.cat([obs, action], dim=-1)


def model_target(obs: Tensor, reward: Tensor, next_obs: Tensor) -> Tensor:
    """``obs, next_obs [..., O]``, ``reward [...]`` or ``[..., 1]`` -> ``[reward, next_obs - obs]`` ``[..., 1 + O]``."""
    return torch.cat([reward.reshape(*obs.shape[:-1], 1), next_obs - obs], dim=-1)


def apply_prediction(obs: Tensor, prediction: Tensor) -> tuple[Tensor, Tensor]:
    """Undo :func:`model_target` on a predicted (or sampled) target: ``(reward [...], next_obs [..., O])`` from
    ``obs [..., O]`` and ``prediction [..., 1 + O]``."""
    return prediction[..., 0], obs + prediction[..., 1:]
