"""Small helpers shared by the LightningModules."""

from __future__ import annotations

from lightning.pytorch import LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer


def own_optimizers(module: LightningModule) -> list[LightningOptimizer]:
    """The Trainer's optimizers whose parameters all belong to ``module``, in ``configure_optimizers`` order.

    Lets a child LightningModule (composed by the root ``MBPO`` system) step only its own optimizers while the
    Trainer's strategy owns all of them (checkpointing, precision, DDP).
    """
    cache = module.__dict__.get("_own_optimizers")
    if cache is not None and cache[0] is module.trainer:
        return cache[1]
    own = {id(p) for p in module.parameters()}
    optimizers = module.optimizers(use_pl_optimizer=True)
    if not isinstance(optimizers, list):
        optimizers = [optimizers]
    mine = [
        opt for opt in optimizers if all(id(p) in own for group in opt.param_groups for p in group["params"])
    ]
    module.__dict__["_own_optimizers"] = (module.trainer, mine)
    return mine
