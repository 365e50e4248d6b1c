"""Training the learned termination classifier (``model.dynamics.learn_termination``): for envs without a
hand-written termination function, ``p(terminated | next_obs)`` is fit to the real ``terminated`` flags and stops
model rollouts where it says ``> 0.5``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from mbpo_pl.manual_optimization import all_mean, optimizer_step
from mbpo_pl.nets.ensemble import TerminationClassifier


def fit_termination(module: LightningModule, classifier: TerminationClassifier, optimizer, next_obs: Tensor,  # noqa: ANN001
                    terminated: Tensor, steps: int, batch_size: int) -> dict[str, Tensor]:  # fmt: skip
    """``steps`` Adam steps of ``classifier`` (a part of ``module``, stepped with ``optimizer``) on minibatches of the
    real ``next_obs [N, O]`` / ``terminated [N]``, with a class-balanced BCE; its normalizer and the class balance
    are averaged over ranks. Returns the mean loss and the accuracy on all of the data."""
    terminated = terminated.reshape(-1).float()
    classifier.normalizer.fit(next_obs, average=lambda t: all_mean(module, t))
    positives = all_mean(module, terminated.mean())
    # Terminal transitions are rare (~1/episode length): weight them up to balance the classes.
    pos_weight = ((1 - positives) / positives.clamp_min(1e-3)).clamp(1.0, 1000.0)
    loss_sum = torch.zeros((), device=next_obs.device)
    for _ in range(steps):
        idx = torch.randint(next_obs.shape[0], (batch_size,), device=next_obs.device)
        loss = F.binary_cross_entropy_with_logits(classifier(next_obs[idx]), terminated[idx], pos_weight=pos_weight)
        optimizer_step(module, optimizer, loss)
        loss_sum += loss.detach()
    with torch.no_grad():
        accuracy = ((classifier(next_obs) > 0).float() == terminated).float().mean()
    return {"termination_loss": loss_sum / max(steps, 1), "termination_accuracy": accuracy}
