"""A trained agent's policy, loaded from a checkpoint without the rest of the training state.

    from mbpo_pl import load_policy
    policy = load_policy("logs/Hopper-v5/version_0")      # a run folder (its last.ckpt) or a checkpoint file
    env = policy.make_env()                                 # gymnasium.make(policy.env_id, **policy.env_kwargs)
    obs, _ = env.reset(seed=0)
    action = policy(obs)                                    # deterministic action in the env's own bounds

Only the actor's weights, the env description and the loop's env-step count are read: the checkpoint's tensors
are memory-mapped (:func:`~mbpo_pl.run_folders.read_checkpoint`), so the replay buffers stored beside them (GBs for
Ant and Humanoid with in-memory storage) are never read into memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from mbpo_pl.envs import EnvSpec
from mbpo_pl.errors import ConfigError
from mbpo_pl.nets.sac import LOG_STD_MAX, LOG_STD_MIN, mlp
from mbpo_pl.run_folders import read_agent_checkpoint

ACTOR_PREFIX = "sac.actor.net."


class Policy(nn.Module):
    """SAC's actor as a policy in the env's own action bounds.

    ``policy(obs)``: the deterministic action ``tanh(mean(obs))`` rescaled from ``[-1, 1]`` to ``[low, high]``, for
    one observation ``[O] -> [A]`` or a batch ``[N, O] -> [N, A]``; a NumPy observation gives a NumPy ``float32``
    action (what ``env.step`` takes), a tensor a tensor. ``policy.sample(obs)`` draws from the stochastic policy.

    Attributes:
        env_id, env_kwargs: the env the policy was trained on (``gymnasium.make(env_id, **env_kwargs)``).
        env_steps: real env steps of training behind the checkpoint (``None`` when it does not say).
        source: the checkpoint file it was loaded from (``None`` when built directly).
    """

    def __init__(self, net: nn.Sequential, action_low: Tensor, action_high: Tensor, env_id: str,
                 env_kwargs: dict[str, Any] | None = None, env_steps: int | None = None,
                 source: Path | None = None) -> None:  # fmt: skip
        super().__init__()
        self.net = net
        self.register_buffer("action_low", torch.as_tensor(action_low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(action_high, dtype=torch.float32))
        self.obs_dim = net[0].in_features
        self.act_dim = self.action_low.numel()
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        self.env_steps, self.source = env_steps, source

    def _squashed_mean_and_log_std(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        if obs.dim() not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"{self.env_id} policy: observations must have shape [{self.obs_dim}] or [N, {self.obs_dim}], got "
                f"{list(obs.shape)}. Pass what env.reset()/env.step() return for gymnasium.make({self.env_id!r}, "
                f"**policy.env_kwargs)."
            )
        mean, log_std = self.net(obs.to(self.action_low.dtype)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def _to_env_bounds(self, squashed: Tensor) -> Tensor:
        return self.action_low + (squashed + 1.0) * 0.5 * (self.action_high - self.action_low)

    def forward(self, obs: Tensor | np.ndarray) -> Tensor | np.ndarray:
        if isinstance(obs, np.ndarray):
            with torch.no_grad():
                return self(torch.as_tensor(obs, device=self.action_low.device)).cpu().numpy()
        mean, _ = self._squashed_mean_and_log_std(obs)
        return self._to_env_bounds(torch.tanh(mean))

    @torch.no_grad()
    def sample(self, obs: Tensor | np.ndarray, generator: torch.Generator | None = None) -> Tensor | np.ndarray:
        """An action drawn from the stochastic policy ``tanh(N(mean, std))``, in the env's bounds."""
        if isinstance(obs, np.ndarray):
            return self.sample(torch.as_tensor(obs, device=self.action_low.device), generator).cpu().numpy()
        mean, log_std = self._squashed_mean_and_log_std(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self._to_env_bounds(torch.tanh(mean + log_std.exp() * noise))

    def make_env(self, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
        """The env the policy was trained on, ``gymnasium.make(env_id, render_mode, **env_kwargs, **kwargs)``."""
        return gym.make(self.env_id, render_mode=render_mode, **{**self.env_kwargs, **kwargs})

    @property
    def env_spec(self) -> EnvSpec:
        """The env description the checkpoint stored (:class:`~mbpo_pl.envs.EnvSpec`; no env is made)."""
        return EnvSpec(self.env_id, dict(self.env_kwargs), self.obs_dim, self.act_dim)


def actor_from_state_dict(state_dict: dict[str, Tensor], what: str) -> nn.Sequential:
    """The actor MLP of an ``MBPO`` checkpoint, its sizes read off the weights."""
    weights = {key[len(ACTOR_PREFIX) :]: value for key, value in state_dict.items() if key.startswith(ACTOR_PREFIX)}
    layers = sorted({int(m.group(1)) for key in weights if (m := re.fullmatch(r"(\d+)\.weight", key))})
    if not layers:
        raise ConfigError(f"{what} holds no mbpo_pl SAC actor (no {ACTOR_PREFIX}* weights).")
    first, last = weights[f"{layers[0]}.weight"], weights[f"{layers[-1]}.weight"]
    net = mlp(first.shape[1], first.shape[0], last.shape[0], len(layers) - 1)
    net.load_state_dict({key: value.float() for key, value in weights.items()})  # copies: the mmap is let go
    return net


def _env_steps(checkpoint: dict) -> int | None:
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("MBPOLoop") and "env_steps" in state:
            return int(state["env_steps"])
    return None


def load_policy(source: str | Path, map_location: str | torch.device = "cpu", option: str = "load_policy") -> Policy:
    """The deterministic policy of a run folder (``<run>/checkpoints/last.ckpt``), a checkpoint file or a population
    seed's folder (``<run>/seed_<s>``).

    Raises ``FileNotFoundError`` when there is no checkpoint there and ``ValueError`` (both as
    :class:`~mbpo_pl.errors.ConfigError`) when the file is truncated, corrupt or not an mbpo_pl checkpoint;
    ``option`` is how the messages name the source (e.g. a command's ``--ckpt_path``).
    """
    path, checkpoint = read_agent_checkpoint(source, option=option)
    if "state_dict" not in checkpoint or "mbpo_env" not in checkpoint:
        raise ConfigError(f"{option}: {path} is not an mbpo_pl checkpoint (no state_dict or env description).")
    env = EnvSpec.from_signature(checkpoint["mbpo_env"])
    net = actor_from_state_dict(checkpoint["state_dict"], f"{option}: {path}")
    if (net[0].in_features, net[-1].out_features // 2) != (env.obs_dim, env.act_dim):
        raise ConfigError(f"{option}: {path}: the actor's sizes do not match its env description {env}.")
    low, high = env.action_low, env.action_high
    if low is None:  # a checkpoint written before the env description held the bounds: ask the env
        try:
            probe = gym.make(env.env_id, **env.env_kwargs)
        except (gym.error.Error, TypeError, ImportError) as err:
            raise ConfigError(
                f"{option}: {path} was trained on {env.env_id!r}, which cannot be made here: {err}"
            ) from err
        low, high = probe.action_space.low, probe.action_space.high
        probe.close()
    policy = Policy(net, torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32),
                    env.env_id, env.env_kwargs, _env_steps(checkpoint), path)  # fmt: skip
    return policy.to(map_location).eval()
