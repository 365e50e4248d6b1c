"""Termination functions ``done(next_obs [..., O]) -> bool [...]`` for model rollouts, batched in torch (every leading
dimension is batch).

Each one mirrors the Gymnasium env's own ``terminated`` rule, expressed on the *observation* (the model predicts
observations, not MuJoCo states); ``tests/test_termination.py`` checks every registered id against the real env.
Registered: the MuJoCo envs in their v4 and v5 versions (v2/v3 need the retired mujoco-py) and the envs that never
terminate (Pendulum-v1, HalfCheetah, Swimmer, Reacher, Pusher-v5, HumanoidStandup). Register your own with
:func:`register_termination_fn`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbpo_pl.errors import ConfigError

TerminationFn = Callable[[Tensor], Tensor]

_REGISTRY: dict[str, TerminationFn] = {}


def register_termination_fn(*env_ids: str) -> Callable[[TerminationFn], TerminationFn]:
    """Decorator: ``@register_termination_fn("MyEnv-v0")`` over ``def fn(next_obs: Tensor) -> Tensor`` (``bool [...]``
    from ``next_obs [..., O]``: index the last dimension, ``next_obs[..., i]``)."""

    def decorator(fn: TerminationFn) -> TerminationFn:
        for env_id in env_ids:
            _REGISTRY[env_id] = fn
        return fn

    return decorator


def get_termination_fn(env_id: str) -> TerminationFn:
    try:
        return _REGISTRY[env_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(
            f"No termination function is registered for {env_id!r} (known: {known}). MBPO needs one to stop model "
            "rollouts: write `def done(next_obs: Tensor) -> Tensor` (bool [...] from next_obs [..., obs_dim]) that "
            f"mirrors the env's `terminated` rule and decorate it with "
            f"`@mbpo_pl.termination.register_termination_fn({env_id!r})` in a module imported before training."
        ) from None


def choose_termination_fn(env_id: str, learned: TerminationFn | None) -> TerminationFn:
    """What stops model rollouts: the ``learned`` classifier where the user asked for one, else the registered
    function of ``env_id`` (a clear error naming both ways out where there is none)."""
    if learned is not None:
        return learned
    try:
        return get_termination_fn(env_id)
    except ConfigError as err:
        raise ConfigError(
            f"{err.args[0]} Or learn one from the real data: set model.dynamics.learn_termination: true."
        ) from None


def registered_env_ids() -> list[str]:
    return sorted(_REGISTRY)


def _all_finite(obs: Tensor) -> Tensor:
    return torch.isfinite(obs).all(dim=-1)


@register_termination_fn("Hopper-v4", "Hopper-v5")
def hopper(next_obs: Tensor) -> Tensor:
    # v5: healthy = 0.7 < z, -0.2 < angle < 0.2, |state[2:]| < 100. The official MBPO code applies `abs` to a
    # boolean here (a known bug); this is the corrected form.
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (
        _all_finite(next_obs) & (next_obs[..., 1:].abs() < 100).all(dim=-1) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)
    )
    return ~healthy


@register_termination_fn("Walker2d-v4", "Walker2d-v5")
def walker2d(next_obs: Tensor) -> Tensor:
    z, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


@register_termination_fn("Ant-v4", "Ant-v5")
def ant(next_obs: Tensor) -> Tensor:
    z = next_obs[..., 0]
    return ~(_all_finite(next_obs) & (z >= 0.2) & (z <= 1.0))


@register_termination_fn("Humanoid-v4", "Humanoid-v5")
def humanoid(next_obs: Tensor) -> Tensor:
    z = next_obs[..., 0]
    return ~((z > 1.0) & (z < 2.0))


NEVER_TERMINATE = (
    "Pendulum-v1",
    "Pusher-v5",  # Pusher-v4 needs mujoco<3
    *(f"{name}-{v}" for name in ("HalfCheetah", "Swimmer", "Reacher", "HumanoidStandup") for v in ("v4", "v5")),
)


@register_termination_fn(*NEVER_TERMINATE)
def never(next_obs: Tensor) -> Tensor:
    """Envs whose episodes end only by their time limit (truncation, which SAC bootstraps through)."""
    return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)


@register_termination_fn("InvertedPendulum-v4", "InvertedPendulum-v5")
def inverted_pendulum(next_obs: Tensor) -> Tensor:
    return ~(_all_finite(next_obs) & (next_obs[..., 1].abs() <= 0.2))


@register_termination_fn("InvertedDoublePendulum-v4", "InvertedDoublePendulum-v5")
def inverted_double_pendulum(next_obs: Tensor) -> Tensor:
    # obs[1:3] = sin(theta1, theta2), obs[3:5] = cos(theta1, theta2); poles of length 0.6 on a cart (v4 appends
    # constraint forces after these entries, v5 drops them).
    sin1, sin2, cos1, cos2 = next_obs[..., 1], next_obs[..., 2], next_obs[..., 3], next_obs[..., 4]
    tip_y = 0.6 * cos1 + 0.6 * (cos1 * cos2 - sin1 * sin2)
    return tip_y <= 1.0
