"""Model selection on held-out real data: the holdout split, each member's best weights, the stopping rule."""

from __future__ import annotations

import torch
from torch import Tensor


def split_holdout(
    inputs: Tensor, targets: Tensor, holdout_ratio: float, max_holdout: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A random ``holdout_ratio`` of the rows (at least 1, at most ``max_holdout``) held out from training:
    ``(train_in, train_tg, holdout_in, holdout_tg)``; drawn from ``generator`` (default: the global stream)."""
    num_total = inputs.shape[0]
    permutation = torch.randperm(num_total, device=inputs.device, generator=generator)
    num_holdout = max(1, min(int(num_total * holdout_ratio), max_holdout))
    if num_total - num_holdout < 1:
        raise ValueError(f"need at least 2 transitions to train the dynamics model, got {num_total}")
    held, kept = permutation[:num_holdout], permutation[num_holdout:]
    return inputs[kept], targets[kept], inputs[held], targets[held]


def improved_members(best_mse: Tensor, mse: Tensor, threshold: float) -> Tensor:
    """``[..., E]`` bool: members without a best yet, or whose holdout MSE dropped by more than ``threshold``
    (relative)."""
    return torch.isinf(best_mse) | ((best_mse - mse) / best_mse > threshold)


class BestMembers:
    """Each ensemble member's best holdout MSE so far and a copy of its weights at that epoch (the official MBPO
    early stopping: stop once more than ``patience`` epochs passed in which no member improved by more than
    ``threshold``, relative).

    Every leading dimension of the holdout MSE (``[..., E]``, e.g. one ensemble per seed) is an ensemble of its own,
    with its own stopping counter.

    Args:
        member_tensors: the parameters with one slice per member (``[..., E, ...]`` each, the MSE's shape first),
            updated in place by training; :meth:`restore` writes the best slices back into them.
        patience: epochs without any member improving that are tolerated.
        threshold: relative holdout-MSE decrease that counts as an improvement.
    """

    def __init__(self, member_tensors: list[Tensor], patience: int, threshold: float) -> None:
        self.params = member_tensors
        self.patience, self.threshold = patience, threshold
        self.best = [p.detach().clone() for p in member_tensors]
        self.best_mse: Tensor | None = None  # [..., E], from the first update
        self.epochs_since_update: Tensor | None = None  # [...]: one counter per ensemble

    @torch.no_grad()
    def update(self, mse: Tensor) -> bool:
        """Record one epoch's holdout MSE ``[..., E]``: snapshot the members that improved; ``True`` when every
        ensemble has gone more than ``patience`` epochs without any member improving (one host sync)."""
        if self.best_mse is None:
            self.best_mse = torch.full_like(mse, float("inf"))
            self.epochs_since_update = torch.zeros(mse.shape[:-1], dtype=torch.long, device=mse.device)
        improved = improved_members(self.best_mse, mse, self.threshold)
        self.best_mse = torch.where(improved, mse, self.best_mse)
        for best, param in zip(self.best, self.params):
            mask = improved.view(*improved.shape, *([1] * (param.dim() - improved.dim())))
            best.copy_(torch.where(mask, param, best))
        self.epochs_since_update = torch.where(improved.any(-1), 0, self.epochs_since_update + 1)
        return bool((self.epochs_since_update > self.patience).all())

    @torch.no_grad()
    def restore(self) -> None:
        """Every member back to its best snapshot."""
        for best, param in zip(self.best, self.params):
            param.copy_(best)
        torch.clear_autocast_cache()  # the weights changed in place (mbpo_pl.manual_optimization.weights_changed)
