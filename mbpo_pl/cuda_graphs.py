"""Replaying whole training steps as CUDA graphs.

MBPO's networks are small (hidden sizes 200-256, batch 256): on a GPU one SAC update is a few hundred tiny kernels
and its wall time is the host's launch cost, not the GPU's work. A CUDA graph records those kernels once and
replays them with one launch (``torch.cuda.CUDAGraph``), the whole-iteration capture recipe of PyTorch's CUDA-graph
notes: forward, backward and optimizer step of fixed-shape inputs, with the optimizer built ``capturable``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Trainer
from tensordict import TensorDictBase
from torch import Tensor

from mbpo_pl.errors import ConfigError
from mbpo_pl.manual_optimization import lightning_step_is_plain

StepInput = Tensor | TensorDictBase


def _signature(inputs: tuple[StepInput, ...]) -> tuple:
    """Shapes and dtypes of every input tensor: one graph is captured per signature."""
    signature = []
    for item in inputs:
        leaves = item.values(include_nested=True, leaves_only=True) if isinstance(item, TensorDictBase) else [item]
        signature.append(tuple((tuple(t.shape), t.dtype) for t in leaves))
    return tuple(signature)


class CudaGraphStep:
    """Runs ``step(*inputs) -> outputs`` eagerly, or as a replayed CUDA graph when ``enabled``.

    ``step`` must read only its inputs and state kept in fixed device memory (parameters, optimizer state, buffers
    updated in place) and return a dict of tensors; it must not synchronise with the host (no ``.item()``, no
    data-dependent Python branches). Per input signature (shapes, dtypes) the first call runs eagerly on a side
    stream (warm-up: optimizer state and library workspaces are created outside any capture), the second captures
    the graph and replays it, and later calls copy the inputs into the captured ones and replay. Each graph keeps a
    private memory pool; at most ``max_graphs`` are kept (least recently used dropped first). ``before_capture``
    runs just before a capture (PyTorch's recipe sets the gradients to ``None`` there).

    With graphs, the outputs returned are the graph's own tensors: read them before the next call. Python code
    inside ``step`` (Lightning hooks, counters) runs during warm-up and capture only.
    """

    def __init__(
        self,
        step: Callable[..., dict[str, Tensor]],
        enabled: bool,
        before_capture: Callable[[], None] | None = None,
        max_graphs: int = 3,
    ) -> None:
        self.step = step
        self.enabled = enabled
        self.before_capture = before_capture
        self.max_graphs = max_graphs
        self._warmed: set[tuple] = set()
        self._graphs: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, tuple[StepInput, ...], Any]] = OrderedDict()

    def __call__(self, *inputs: StepInput) -> dict[str, Tensor]:
        if not self.enabled:
            return self.step(*inputs)
        key = _signature(inputs)
        entry = self._graphs.get(key)
        if entry is not None:
            self._graphs.move_to_end(key)
            graph, static_inputs, static_outputs = entry
            for static, new in zip(static_inputs, inputs):
                static.copy_(new)
            graph.replay()
            return static_outputs
        if key not in self._warmed:
            return self._warm_up(key, inputs)
        return self._capture(key, inputs)

    def _warm_up(self, key: tuple, inputs: tuple[StepInput, ...]) -> dict[str, Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = self.step(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        self._warmed.add(key)
        return outputs

    def _capture(self, key: tuple, inputs: tuple[StepInput, ...]) -> dict[str, Tensor]:
        static_inputs = tuple(item.clone() for item in inputs)
        if self.before_capture is not None:
            self.before_capture()  # e.g. grads set to None, so backward allocates them from the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_outputs = self.step(*static_inputs)
        graph.replay()  # capturing only records the kernels: this call's step runs now
        self._graphs[key] = (graph, static_inputs, static_outputs)
        self._warmed.discard(key)
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return static_outputs

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)


def cuda_graphs_blocker(device: torch.device, world_size: int, has_grad_scaler: bool) -> str | None:
    """Why training steps cannot be replayed as CUDA graphs in this run, or ``None`` when they can."""
    if device.type != "cuda":
        return f"needs a CUDA device, but this run trains on {device}"
    if world_size > 1:
        return "runs in one process only (under DDP every update all-reduces its gradients outside the graph)"
    if has_grad_scaler:
        return "cannot run with a gradient scaler (16-mixed checks for inf on the host): use bf16-mixed or 32-true"
    return None


def resolve_cuda_graphs(setting: bool | None, blocker: str | None, name: str) -> bool:
    """``None`` (the default): graphs wherever they can run. ``True`` where they cannot: an error naming why."""
    if setting and blocker is not None:
        raise ConfigError(
            f"{name}=true {blocker}: set it to false, or leave it unset to use graphs where they can run."
        )
    return blocker is None if setting is None else setting


def step_switches(trainer: Trainer | None, cuda_graphs: bool | None, lightning_hooks_every_step: bool,
                  name: str) -> tuple[bool, bool]:  # fmt: skip
    """A child module's speed switches in ``trainer``'s run, read from the run itself (device, processes, precision
    plugin): whether its training step replays as a CUDA graph (``cuda_graphs`` resolved, :func:`resolve_cuda_graphs`,
    ``name`` in its errors), and whether steps after the first of a call may skip Lightning's hooks (where
    :func:`~mbpo_pl.manual_optimization.lightning_step_is_plain` holds and ``lightning_hooks_every_step`` is off).
    Detached (no Trainer): graphs only where asked for, every step through the module's own path."""
    if trainer is None:
        return bool(cuda_graphs), False
    scaler = getattr(trainer.precision_plugin, "scaler", None) is not None
    blocker = cuda_graphs_blocker(trainer.strategy.root_device, trainer.world_size, scaler)
    direct = lightning_step_is_plain(trainer) and not lightning_hooks_every_step
    return resolve_cuda_graphs(cuda_graphs, blocker, name), direct
