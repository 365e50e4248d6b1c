"""Small helpers shared by the LightningModules."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from torch import Tensor


def own_optimizers(module: LightningModule) -> list:
    """The optimizers of ``module``'s own parameters, in its ``configure_optimizers`` order.

    Attached to a Trainer: the Trainer's (Lightning-wrapped) optimizers whose parameters all belong to ``module``,
    so a child LightningModule composed by the root ``MBPO`` system steps only its own while the Trainer's
    strategy owns all of them (checkpointing, precision, DDP). Detached (unit tests, scripts): the module's own
    ``configure_optimizers()``, created once.
    """
    trainer = module._trainer
    cache = module.__dict__.get("_own_optimizers")
    if cache is not None and cache[0] is trainer:
        return cache[1]
    if trainer is None:
        created = module.configure_optimizers()
        mine = list(created) if isinstance(created, (list, tuple)) else [created]
    else:
        own = {id(p) for p in module.parameters()}
        optimizers = module.optimizers(use_pl_optimizer=True)
        if not isinstance(optimizers, list):
            optimizers = [optimizers]
        mine = [opt for opt in optimizers if all(id(p) in own for g in opt.param_groups for p in g["params"])]
    module.__dict__["_own_optimizers"] = (trainer, mine)
    return mine


def backward(module: LightningModule, loss: Tensor) -> None:
    """``manual_backward`` under a Trainer (precision, strategy), plain ``backward`` when detached."""
    if module._trainer is None:
        loss.backward()
    else:
        module.manual_backward(loss)


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
