"""Batched ensemble layers and the probabilistic (Gaussian) dynamics ensemble.

Shape notation: ``E`` ensemble members, ``B`` batch, ``D`` features, ``...`` any further leading dimensions (e.g. one
per seed of a population). Every member's weights live in one ``[..., E, D_in, D_out]`` tensor so that all members
run in a single batched matmul (``torch.baddbmm``); every leading dimension of the inputs is batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def batched_affine(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight + bias`` per matrix of a batch: ``x [..., B, in]``, ``weight [..., in, out]``,
    ``bias [..., 1, out]`` with broadcastable leading dimensions -> ``[..., B, out]``, as one ``torch.baddbmm`` over
    the flattened leading dimensions (so a stack of independent maps gives each map what it gives alone)."""
    if x.dim() == weight.dim() == 3 and x.shape[0] == weight.shape[0]:
        return torch.baddbmm(bias, x, weight)
    lead = torch.broadcast_shapes(x.shape[:-2], weight.shape[:-2], bias.shape[:-2])
    flat = [t.expand(*lead, *t.shape[-2:]).reshape(-1, *t.shape[-2:]) for t in (bias, x, weight)]
    return torch.baddbmm(*flat).reshape(*lead, x.shape[-2], weight.shape[-1])


def select_members(tensor: Tensor, members: Tensor) -> Tensor:
    """``tensor [..., E, a, b]`` at ``members [..., M]`` (indices along ``E``, per leading index):
    ``[..., M, a, b]``."""
    if members.dim() == 1:
        return tensor[members]
    index = members[..., None, None].expand(*members.shape, *tensor.shape[-2:])
    return tensor.gather(-3, index)


class EnsembleLinear(nn.Module):
    """``E`` independent affine maps applied with one batched matmul; ``ensemble_size`` may also be a shape
    ``(..., E)`` (e.g. ``(S, E)``: ``E`` members for each of ``S`` seeds), each map initialised independently:
    ``init="trunc_normal"`` as the official MBPO code's FC layers, ``"linear"`` as PyTorch's ``nn.Linear``.

    Input ``[..., E, B, in_features]`` -> output ``[..., E, B, out_features]``.
    """

    def __init__(self, ensemble_size: int | tuple[int, ...], in_features: int, out_features: int,
                 init: str = "trunc_normal") -> None:  # fmt: skip
        super().__init__()
        self.batch_shape = (ensemble_size,) if isinstance(ensemble_size, int) else tuple(ensemble_size)
        self.ensemble_size = self.batch_shape[-1]
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(*self.batch_shape, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(*self.batch_shape, 1, out_features))
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: str = "trunc_normal") -> None:
        if init == "trunc_normal":
            # Truncated normal with std 1/(2*sqrt(fan_in)), as the official MBPO code initialises its FC layers.
            std = 1.0 / (2.0 * math.sqrt(self.in_features))
            nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(self.bias)
            return
        if init != "linear":
            raise ValueError(f"init must be 'trunc_normal' or 'linear', got {init!r}")
        # nn.Linear's default, map by map in the order nn.Linear draws it (a [out, in] weight, then the bias).
        bound = 1 / math.sqrt(self.in_features)
        weights = self.weight.view(-1, self.in_features, self.out_features)
        for weight, bias in zip(weights, self.bias.view(-1, self.out_features)):
            w = torch.empty(self.out_features, self.in_features)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            weight.copy_(w.T)
            bias.uniform_(-bound, bound)

    def forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        """``frozen``: use detached weights, so gradients reach ``x`` but not this layer's parameters."""
        if frozen:
            return batched_affine(x, self.weight.detach(), self.bias.detach())
        return batched_affine(x, self.weight, self.bias)

    def forward_members(self, x: Tensor, members: Tensor) -> Tensor:
        """Run only the chosen members: ``x`` is ``[..., M, B, in]``, ``members`` a ``[..., M]`` index tensor."""
        return batched_affine(x, select_members(self.weight, members), select_members(self.bias, members))

    def extra_repr(self) -> str:
        return f"ensemble_size={self.batch_shape}, in_features={self.in_features}, out_features={self.out_features}"


class InputNormalizer(nn.Module):
    """Standardises inputs with a mean/std held as buffers (so ``.to()``, checkpoints and DDP carry them).

    ``batch_shape`` (e.g. ``(S,)``: one normalizer per seed) leads the statistics, ``[*batch_shape, D]``, and the
    data they apply to, ``[*batch_shape, ..., D]``.
    """

    def __init__(self, size: int, batch_shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(*batch_shape, size))
        self.register_buffer("std", torch.ones(*batch_shape, size))

    @torch.no_grad()
    def fit(self, data: Tensor, average: Callable[[Tensor], Tensor] | None = None) -> None:
        """Refit on ``data`` ``[*batch_shape, N, D]``; a feature with (near) zero spread keeps std 1 (as the official
        scaler).

        ``average`` combines per-process moments (equal ``N`` on every process) into global ones under DDP.
        """
        moments = torch.stack([data.mean(-2), data.square().mean(-2)])
        if average is not None:
            moments = average(moments)
        mean, mean_square = moments
        std = (mean_square - mean.square()).clamp_min(0).sqrt()
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std < 1e-12, torch.ones_like(std), std))

    def forward(self, data: Tensor) -> Tensor:
        """``data [*batch_shape, ..., D]``, standardised."""
        middle = [1] * (data.dim() - self.mean.dim())
        mean = self.mean.view(*self.mean.shape[:-1], *middle, self.mean.shape[-1])
        std = self.std.view(*self.std.shape[:-1], *middle, self.std.shape[-1])
        return (data - mean) / std


def float32_output(layer: nn.Module, x: Tensor, *args) -> Tensor:
    """``layer(x, *args)`` computed in float32 even under bf16/fp16 autocast: for output layers, whose values must
    keep more than bf16's 8 significant bits (Q values near 1,000 would move in steps of 4-8; predicted rewards
    and state changes would be rounded before they compound over a rollout). The hidden layers that feed ``x``
    keep autocast's precision; the output layers are a few percent of the FLOPs."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return layer(x.float(), *args)


def soft_clamp_logvar(logvar: Tensor, min_logvar: Tensor, max_logvar: Tensor) -> Tensor:
    """Differentiable bounds on the log-variance (MBPO/PETS): ``min <= logvar <= max`` softly."""
    logvar = max_logvar - F.softplus(max_logvar - logvar)
    return min_logvar + F.softplus(logvar - min_logvar)


class GaussianEnsemble(nn.Module):
    """``E`` Gaussian MLPs predicting mean and log-variance of the model target (:mod:`mbpo_pl.model_io`).

    Args:
        input_size: ``model_io.input_size(obs_dim, act_dim)``.
        output_size: ``model_io.target_size(obs_dim)``.
        ensemble_size: number of members ``E``, or a shape ``(..., E)`` (e.g. ``(S, E)``: an ensemble per seed, each
            with its own normalizer and log-variance bounds).
        hidden_size: units per hidden layer.
        num_hidden_layers: hidden layers per member (SiLU activations).

    ``forward(inputs [..., E, B, input_size]) -> (mean, logvar)``, each ``[..., E, B, output_size]``; inputs are
    raw (the normalizer is applied inside).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        ensemble_size: int | tuple[int, ...] = 7,
        hidden_size: int = 200,
        num_hidden_layers: int = 4,
    ) -> None:
        super().__init__()
        shape = (ensemble_size,) if isinstance(ensemble_size, int) else tuple(ensemble_size)
        lead = shape[:-1]
        self.input_size = input_size
        self.output_size = output_size
        self.ensemble_size = shape[-1]
        self.normalizer = InputNormalizer(input_size, lead)
        sizes = [input_size] + [hidden_size] * num_hidden_layers
        self.hidden = nn.ModuleList(EnsembleLinear(shape, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.head = EnsembleLinear(shape, hidden_size, 2 * output_size)
        # Learned soft bounds on the log-variance (official init: max 0.5, min -10), shared by the members.
        self.max_logvar = nn.Parameter(torch.full((*lead, 1, 1, output_size), 0.5))
        self.min_logvar = nn.Parameter(torch.full((*lead, 1, 1, output_size), -10.0))

    @property
    def layers(self) -> list[EnsembleLinear]:
        """All affine layers in order (hidden..., head); one weight-decay coefficient each."""
        return [*self.hidden, self.head]

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        # ``out`` is float32 (the head runs outside autocast): the log-variance bounds, the loss and the sampled next
        # states keep full precision; only the hidden layers run in bf16 under bf16-mixed.
        mean, raw_logvar = out.split(self.output_size, dim=-1)
        return mean, soft_clamp_logvar(raw_logvar, self.min_logvar, self.max_logvar)

    def forward(self, inputs: Tensor, members: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Every member on ``inputs [..., E, B, input_size]``, or only ``members`` (:meth:`forward_members`)."""
        h = self.normalizer(inputs)
        if members is not None:
            for layer in self.hidden:
                h = F.silu(layer.forward_members(h, members))
            return self._split(float32_output(self.head.forward_members, h, members))
        for layer in self.hidden:
            h = F.silu(layer(h))
        return self._split(float32_output(self.head, h))

    def forward_members(self, inputs: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        """Run only ``members`` (``[..., M]`` indices) on ``inputs`` ``[..., M, B, input_size]``: the rollout path,
        which computes each sample through its own member instead of all ``E``."""
        return self(inputs, members)

    def logvar_bound_loss(self) -> Tensor:
        """``sum(max_logvar) - sum(min_logvar)``: keeps the learned bounds tight (weighted 0.01 in the loss; summed
        over every leading dimension, whose bounds are independent)."""
        return self.max_logvar.sum() - self.min_logvar.sum()


def gaussian_nll(mean: Tensor, logvar: Tensor, target: Tensor) -> Tensor:
    """Per-member Gaussian NLL without the constant, as in the official MBPO loss.

    ``mean, logvar, target`` ``[..., E, B, D]`` -> ``[..., E]``:
    ``mean_B mean_D ((mean - target)^2 * exp(-logvar) + logvar)`` (= 2 * NLL/D - log(2*pi)).
    """
    inv_var = torch.exp(-logvar)
    return ((mean - target).square() * inv_var + logvar).mean(dim=(-2, -1))


class TerminationClassifier(nn.Module):
    """``p(terminated | next_obs)``: a small MLP on standardised observations, for envs without a hand-written
    termination function. ``forward(next_obs [..., N, O]) -> logits [..., N]``."""

    def __init__(self, obs_dim: int, hidden_size: int = 64) -> None:
        super().__init__()
        self.normalizer = InputNormalizer(obs_dim)
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size), nn.SiLU(),
            nn.Linear(hidden_size, 1),
        )  # fmt: skip

    def forward(self, next_obs: Tensor) -> Tensor:
        return self.net(self.normalizer(next_obs)).float().squeeze(-1)
