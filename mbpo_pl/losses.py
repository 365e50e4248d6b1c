"""Pure tensor maths of the SAC update (Haarnoja et al. 2018), testable without a Trainer."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def soft_q_target(
    reward: Tensor, terminated: Tensor, next_q: Tensor, next_log_prob: Tensor, alpha: Tensor, gamma: float
) -> Tensor:
    """``y = r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - alpha * log pi(a'|s'))``.

    ``reward``, ``terminated``, ``next_log_prob`` ``[..., B]``; ``next_q`` ``[..., 2, B]`` from the target critics;
    ``alpha`` ``[..., 1]`` (or a scalar). Only *termination* cuts the bootstrap: a time-limit truncation is stored
    with ``terminated = False``.
    """
    soft_value = next_q.min(dim=-2).values - alpha * next_log_prob
    return reward + gamma * (~terminated).to(reward.dtype) * soft_value


def alpha_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """Automatic entropy tuning: ``-log_alpha * (log pi + target_entropy)`` averaged over the batch, gradient on alpha
    only. ``log_alpha [...]`` (one temperature per leading index), ``log_prob [..., B]`` -> ``[...]``."""
    return -(log_alpha.unsqueeze(-1) * (log_prob.detach() + target_entropy)).mean(-1)


@torch.no_grad()
def polyak_update(target: Iterable[Tensor], online: Iterable[Tensor], tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online`` for every tensor pair, in one fused foreach call."""
    target, online = list(target), list(online)
    torch._foreach_lerp_(target, online, tau)
