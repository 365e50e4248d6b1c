"""SAC networks: a tanh-squashed Gaussian actor and a fused twin Q critic.

Actions live in ``[-1, 1]^A``; the environment wrapper rescales them to the env's own bounds. ``population=(S,)``
builds ``S`` independent networks in one (every weight with a leading seed dimension, each initialised as a single
network is), which take inputs ``[S, ..., D]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbpo_pl.nets.ensemble import EnsembleLinear, batched_affine, float32_output

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the usual SAC bounds (Haarnoja et al. 2018, softlearning)


def mlp(in_size: int, hidden_size: int, out_size: int, num_hidden_layers: int = 2,
        population: tuple[int, ...] = ()) -> nn.Sequential:  # fmt: skip
    """ReLU MLP; with ``population``, one per leading index (batched layers, ``nn.Linear``'s initialisation)."""
    sizes = [in_size] + [hidden_size] * num_hidden_layers + [out_size]

    def linear(i: int, o: int) -> nn.Module:
        return EnsembleLinear(population, i, o, init="linear") if population else nn.Linear(i, o)

    layers: list[nn.Module] = []
    for i, o in zip(sizes[:-2], sizes[1:-1]):
        layers += [linear(i, o), nn.ReLU()]
    layers.append(linear(sizes[-2], out_size))
    return nn.Sequential(*layers)


Generators = torch.Generator | list[torch.Generator] | None


def standard_normal(like: Tensor, generators: Generators = None) -> Tensor:
    """``N(0, 1)`` noise shaped as ``like``: from the global stream (``None``), one generator, or ``like[i]``'s from
    ``generators[i]`` (each leading index its own stream, so what one draws never depends on another)."""
    if generators is None:
        return torch.randn_like(like)
    if isinstance(generators, torch.Generator):
        return torch.randn(like.shape, generator=generators, dtype=like.dtype, device=like.device)
    if len(generators) != like.shape[0]:
        raise ValueError(f"{len(generators)} generators for {like.shape[0]} leading indices")
    return torch.stack([torch.randn(like.shape[1:], generator=g, dtype=like.dtype, device=like.device)
                        for g in generators])  # fmt: skip


def tanh_log_prob_correction(pre_tanh: Tensor) -> Tensor:
    """``sum_a log(1 - tanh(u_a)^2)`` computed stably as ``2 * (log 2 - u - softplus(-2u))``; ``[..., A] -> [...]``."""
    return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)


class TanhGaussianActor(nn.Module):
    """``pi(a|s) = tanh(N(mu(s), sigma(s)))``.

    ``forward(obs [..., B, O]) -> (action [..., B, A], log_prob [..., B])`` with a reparameterised sample;
    ``act(obs, deterministic)`` for acting without gradients. With ``population=(S,)``, ``obs`` is ``[S, ..., O]``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int = 256, num_hidden_layers: int = 2,
                 population: tuple[int, ...] = ()) -> None:  # fmt: skip
        super().__init__()
        self.net = mlp(obs_dim, hidden_size, 2 * act_dim, num_hidden_layers, population)

    def distribution_params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        *hidden, head = self.net  # the head in float32 (hidden layers in bf16 under bf16-mixed)
        h = obs
        for layer in hidden:
            h = layer(h)
        mean, log_std = float32_output(head, h).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: Tensor, generators: Generators = None) -> tuple[Tensor, Tensor]:
        """``generators``: where the noise comes from (:func:`standard_normal`: the global stream, one generator, or
        one per leading index of ``obs``, e.g. a population's seeds)."""
        mean, log_std = self.distribution_params(obs)
        std = log_std.exp()
        noise = standard_normal(mean, generators)
        pre_tanh = mean + std * noise
        # log N(u; mean, std) summed over action dims, then the change of variables a = tanh(u).
        gaussian_log_prob = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.tanh(pre_tanh), gaussian_log_prob - tanh_log_prob_correction(pre_tanh)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False, generators: Generators = None) -> Tensor:
        if deterministic:
            return torch.tanh(self.distribution_params(obs)[0])
        return self(obs, generators)[0]


class TwinQCritic(nn.Module):
    """Two Q networks fused into one ensemble of 2 (one batched matmul per layer).

    ``forward(obs [..., B, O], action [..., B, A], frozen=False) -> q [..., 2, B]``; ``frozen=True`` evaluates with
    detached weights (gradients flow to the action only: the actor's pass). With ``population=(S,)``, a twin critic
    per seed (weights ``[S, 2, ...]``) on ``obs [S, ..., B, O]``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int = 256, num_hidden_layers: int = 2,
                 population: tuple[int, ...] = ()) -> None:  # fmt: skip
        super().__init__()
        sizes = [obs_dim + act_dim] + [hidden_size] * num_hidden_layers + [1]
        self.layers = nn.ModuleList(EnsembleLinear((*population, 2), i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:  # then PyTorch's nn.Linear default init, per member
            layer.reset_parameters("linear")

    def forward(self, obs: Tensor, action: Tensor, frozen: bool = False) -> Tensor:
        h = torch.cat([obs, action], dim=-1).unsqueeze(-3)
        h = h.expand(*h.shape[:-3], 2, *h.shape[-2:])
        *hidden, last = self.layers  # (slicing a ModuleList would build a new one on every call)
        for layer in hidden:
            h = F.relu(layer(h, frozen))
        return float32_output(last, h, frozen).squeeze(-1)  # Q values keep float32's resolution under bf16


class SeedSlice(nn.Module):
    """One seed's map of a layer with a leading seed dimension (``weight [S, in, out]``): ``x [..., B, in] ->
    [..., B, out]`` through ``weight[seed]``, the layer's own tensors (no copy)."""

    def __init__(self, layer: EnsembleLinear, seed: int) -> None:
        super().__init__()
        self.layer, self.seed = layer, seed

    def forward(self, x: Tensor) -> Tensor:
        return batched_affine(x, self.layer.weight[self.seed], self.layer.bias[self.seed])


def seed_actor(actor: TanhGaussianActor, seed: int) -> TanhGaussianActor:
    """Seed ``seed`` of a population's actor as an actor of its own (``obs [..., O]``), computing with the
    population's weights: for one seed's rollouts, whose batch sizes differ from the other seeds'."""
    view = TanhGaussianActor.__new__(TanhGaussianActor)
    nn.Module.__init__(view)
    view.net = nn.Sequential(*(SeedSlice(m, seed) if isinstance(m, EnsembleLinear) else m for m in actor.net))
    return view
