"""Manual optimization of a child LightningModule under the root's Trainer: its own optimizers, one visible update
(zero_grad, backward, gradient average over ranks, step), cross-rank means, and when Lightning's step adds nothing."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import ParallelStrategy, SingleDeviceStrategy
from torch import Tensor


def own_optimizers(module: LightningModule) -> list:
    """The optimizers of ``module``'s own parameters, in its ``configure_optimizers`` order.

    Attached to a Trainer: the Trainer's (Lightning-wrapped) optimizers whose parameters all belong to ``module``,
    so a child LightningModule composed by the root ``MBPO`` system steps only its own while the Trainer's
    strategy owns all of them (checkpointing, precision, DDP). Detached (unit tests, scripts): the module's own
    ``configure_optimizers()``, created once. Found once per Trainer and kept in the module's ``optimizer_cache``.
    """
    trainer = module._trainer  # None when detached (``module.trainer`` raises then)
    cache = getattr(module, "optimizer_cache", None)
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
    module.optimizer_cache = (trainer, mine)
    return mine


def backward(module: LightningModule, loss: Tensor) -> None:
    """``manual_backward`` under a Trainer (precision, strategy), plain ``backward`` when detached.

    Under DDP the backward runs inside the strategy's ``block_backward_sync`` (``DDP.no_sync``): one training step
    runs many backward passes, each touching only some parameters, which DDP's reducer does not support, so
    gradients are averaged explicitly before each optimizer step instead (:func:`average_gradients`).
    """
    if module._trainer is None:
        loss.backward()
        return
    strategy = module.trainer.strategy
    block = strategy.block_backward_sync() if isinstance(strategy, ParallelStrategy) else nullcontext()
    with block:
        module.manual_backward(loss)


def is_distributed(module: LightningModule) -> bool:
    """Whether ``module``'s processes train one model together (DDP), so that gradients are averaged over them; a
    population split over processes (:class:`~mbpo_pl.seed_split.SeedSplitStrategy`) shares nothing."""
    if module._trainer is None or module.trainer.world_size == 1:
        return False
    return not getattr(module.trainer.strategy, "independent_ranks", False)


def all_mean(module: LightningModule, tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over all processes through the Trainer's strategy (identity in one process)."""
    if not is_distributed(module):
        return tensor
    return module.trainer.strategy.reduce(tensor.clone(), reduce_op="mean")


def average_gradients(module: LightningModule, optimizer) -> None:  # noqa: ANN001 (torch or Lightning optimizer)
    """Average the gradients of ``optimizer``'s parameters over all processes, in one flat all-reduce.

    Under DDP every rank trains on its own data; averaging before each ``step`` keeps parameters identical.
    Explicit instead of DDP's backward hooks: see :func:`backward`.
    """
    if not is_distributed(module):
        return
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    flat = module.trainer.strategy.reduce(torch._utils._flatten_dense_tensors(grads), reduce_op="mean")
    for grad, averaged in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)


def clear_grads(module: LightningModule) -> None:
    """Set the gradients of ``module``'s first optimizer to ``None`` (before a CUDA-graph capture, so that backward
    allocates them from the graph's memory pool)."""
    own_optimizers(module)[0].zero_grad(set_to_none=True)


def optimizer_step(module: LightningModule, optimizer, loss: Tensor, through_lightning: bool = True,  # noqa: ANN001
                   skip: Iterable[Tensor] = ()) -> None:  # fmt: skip
    """One visible update: ``zero_grad -> backward -> average gradients over ranks -> step``. The parameters in
    ``skip`` get no gradient, so the optimizer leaves them and their state untouched (frozen members of a batch).

    ``through_lightning=False`` runs ``loss.backward()`` and the wrapped torch optimizer's ``step()`` directly,
    skipping Lightning's ``manual_backward`` / ``LightningOptimizer.step`` and so their hook dispatch. Only valid
    where :func:`lightning_step_is_plain` holds, where those two add nothing else.
    """
    optimizer.zero_grad(set_to_none=True)
    if not through_lightning:
        loss.backward()
        _drop_grads(skip)
        (optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer).step()
    else:
        backward(module, loss)
        _drop_grads(skip)
        average_gradients(module, optimizer)
        optimizer.step()
    weights_changed()


def weights_changed() -> None:
    """Call after changing weights in place. Inside one ``torch.autocast`` region with its cast cache on (torch's
    default; Lightning's precision plugins, which training runs under, turn it off) torch reuses the low-precision
    copy of a weight made at the weight's first use in the region: without this, a caller running several updates
    in one such region (G SAC updates, a model-training call) would have every later forward read the weights as
    they were at the first."""
    torch.clear_autocast_cache()


def _drop_grads(params: Iterable[Tensor]) -> None:
    for param in params:
        param.grad = None


def lightning_step_is_plain(trainer: Trainer) -> bool:
    """Whether Lightning's ``manual_backward`` + optimizer ``step`` amount to ``loss.backward()`` +
    ``optimizer.step()`` plus hook dispatch in this run: one device, or a population split over processes (neither
    syncs gradients; the split's strategy wraps no module), and full or mixed precision without a gradient scaler
    (``32-true``, ``bf16-mixed``). Any other strategy or precision plugin may scale, unscale, cast or synchronise in
    those calls."""
    plugin = trainer.precision_plugin
    strategy = trainer.strategy
    return (
        (isinstance(strategy, SingleDeviceStrategy) or getattr(strategy, "independent_ranks", False))
        and type(plugin) in (Precision, MixedPrecision)
        and getattr(plugin, "scaler", None) is None
    )
