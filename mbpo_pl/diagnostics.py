"""How far the dynamics model can be trusted: compounding error over a rollout horizon, and model data vs real data.

Pure functions on tensors; ``callbacks.ModelDiagnostics`` logs them during training and ``python -m mbpo_pl diagnose``
draws them from a checkpoint.

Errors are *standardised*: each state dimension's error is divided by that dimension's standard deviation in the
real data (and the reward's by the real rewards' std; by 1 where the rewards do not vary), squared and averaged, so
an error of 1 means "as far off as the data's own spread" whatever the units of each dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mbpo_pl.model_io import apply_prediction, model_input

# inputs [E, S, O + A] -> (mean, logvar) [E, S, 1 + O] of the model target (mbpo_pl.model_io)
Predictor = Callable[[Tensor], tuple[Tensor, Tensor]]


def segment_starts(obs: Tensor, next_obs: Tensor, done: Tensor, horizon: int) -> Tensor:
    """Start indices ``i`` of the windows ``[i, i + horizon)`` of consecutive transitions (in storage order) that
    stay inside one episode: for every ``j`` in ``[i, i + horizon - 1)``, transition ``j`` is not done and its
    next observation is transition ``j + 1``'s observation. The window's last transition may end the episode.

    ``obs, next_obs`` ``[N, O]``, ``done`` ``[N]`` bool -> ``[S]`` long.
    """
    n = obs.shape[0]
    if n < horizon:
        return torch.empty(0, dtype=torch.long, device=obs.device)
    linked = ~done[:-1] & (next_obs[:-1] == obs[1:]).all(-1)  # [N - 1]: transition j continues into j + 1
    broken = torch.cat([torch.zeros(1, dtype=torch.long, device=obs.device), (~linked).long().cumsum(0)])
    starts = torch.arange(n - horizon + 1, device=obs.device)
    return starts[broken[starts + horizon - 1] == broken[starts]]


@dataclass
class Segments:
    """``S`` real trajectory pieces of ``H`` steps: ``obs0`` ``[S, O]``, ``actions`` ``[S, H, A]``, ``next_obs``
    ``[S, H, O]``, ``rewards`` ``[S, H]``."""

    obs0: Tensor
    actions: Tensor
    next_obs: Tensor
    rewards: Tensor


def gather_segments(obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, starts: Tensor, horizon: int
                    ) -> Segments:  # fmt: skip
    """The windows beginning at ``starts`` (from :func:`segment_starts`) of transitions stored in order."""
    index = starts[:, None] + torch.arange(horizon, device=starts.device)  # [S, H]
    return Segments(obs[starts], action[index], next_obs[index], reward.reshape(-1)[index])


def evenly_spaced(starts: Tensor, count: int) -> Tensor:
    """At most ``count`` of ``starts``, spread evenly over them."""
    if starts.numel() <= count:
        return starts
    return starts[torch.linspace(0, starts.numel() - 1, count, device=starts.device).round().long()]


@dataclass
class HorizonErrors:
    """Standardised squared errors at each step ``h = 1..H`` (index ``h - 1``), averaged over segments (and over
    elites for the mean prediction): ``obs`` and ``reward``, each ``[H]``."""

    obs: Tensor
    reward: Tensor


@torch.no_grad()
def open_loop_errors(
    predict: Predictor,
    num_members: int,
    segments: Segments,
    obs_std: Tensor,
    reward_std: Tensor,
    sample: bool,
    generator: torch.Generator | None = None,
) -> HorizonErrors:
    """Start from each segment's real first state and feed its real actions open loop through the model.

    ``sample=False``: every member's mean prediction, each propagated on its own (the model's systematic error).
    ``sample=True``: as MBPO's rollouts, a random member per segment and step, next state and reward *sampled* from
    its Gaussian (``generator``, a CPU generator, draws the members and the noise, so the run's own random streams
    are untouched).
    """
    obs0, actions = segments.obs0, segments.actions
    num_segments, horizon = actions.shape[:2]
    rows = num_members if not sample else 1
    obs = obs0.expand(rows, *obs0.shape) if not sample else obs0[None]
    obs_errors, reward_errors = [], []
    for h in range(horizon):
        inputs = model_input(obs, actions[:, h].expand(rows, *actions[:, h].shape))
        if not sample:
            mean, _ = predict(inputs)
            prediction = mean
        else:
            mean, logvar = predict(inputs.expand(num_members, -1, -1))
            member = torch.randint(num_members, (num_segments,), generator=generator).to(obs.device)
            pick = torch.arange(num_segments, device=obs.device)
            noise = torch.randn(mean.shape[1:], generator=generator).to(obs.device)
            prediction = (mean[member, pick] + noise * (0.5 * logvar[member, pick]).exp())[None]
        reward, obs = apply_prediction(obs, prediction)
        obs_errors.append((((obs - segments.next_obs[:, h]) / obs_std) ** 2).mean())
        reward_errors.append((((reward - segments.rewards[:, h]) / reward_std) ** 2).mean())
    return HorizonErrors(torch.stack(obs_errors), torch.stack(reward_errors))


def trusted_horizon(errors: Tensor, threshold: float) -> int:
    """Steps before the error first exceeds ``threshold`` (``len(errors)`` if it never does)."""
    above = (errors > threshold).nonzero()
    return int(above[0, 0]) if above.numel() else errors.numel()


def safe_std(values: Tensor) -> Tensor:
    """Per-column std of ``[N, D]`` values, with 1 where a column does not vary (it cannot be standardised)."""
    std = values.std(0) if values.shape[0] > 1 else torch.ones(values.shape[1:], device=values.device)
    return torch.where(std > 1e-8, std, torch.ones_like(std))


@torch.no_grad()
def distribution_shift(model_obs: Tensor, model_reward: Tensor, model_terminated: Tensor, real_obs: Tensor,
                       real_reward: Tensor, real_terminated: Tensor, real_low: Tensor,
                       real_high: Tensor) -> dict[str, Tensor]:  # fmt: skip
    """How the model buffer's states, rewards and terminations differ from the real buffer's.

    ``*_obs`` ``[N, O]``, ``*_reward`` ``[N]``, ``*_terminated`` ``[N]`` bool (samples of each buffer);
    ``real_low, real_high`` ``[O]``: the range of every state dimension over the whole real buffer. Returns the
    per-dimension standardised mean shift ``|mean_model - mean_real| / std_real`` (mean and max over dimensions),
    the std ratio ``std_model / std_real`` (mean over dimensions), the fraction of model states outside the real
    range in any dimension, both reward distributions' mean and std, and the fraction of terminal transitions in
    each buffer (a model that never predicts a fall teaches the critic that falling costs nothing; with 1-step
    rollouts this is the only place a missing termination shows).
    """
    real_std = safe_std(real_obs)
    shift = (model_obs.mean(0) - real_obs.mean(0)).abs() / real_std
    ratio = model_obs.std(0) / real_std
    outside = ((model_obs < real_low) | (model_obs > real_high)).any(-1).float().mean()
    return {
        "state_mean_shift": shift.mean(),
        "state_mean_shift_max": shift.max(),
        "state_std_ratio": ratio.mean(),
        "outside_real_range": outside,
        "model_reward_mean": model_reward.mean(),
        "model_reward_std": model_reward.std(),
        "real_reward_mean": real_reward.mean(),
        "real_reward_std": real_reward.std(),
        "model_terminal_fraction": model_terminated.float().mean(),
        "real_terminal_fraction": real_terminated.float().mean(),
    }


@torch.no_grad()
def open_loop_means(predict: Predictor, num_members: int, segments: Segments) -> tuple[Tensor, Tensor]:
    """Every member's mean-prediction trajectory from each segment's first state under its real actions:
    ``(obs [E, S, H, O], reward [E, S, H])``."""
    obs = segments.obs0.expand(num_members, *segments.obs0.shape)
    states, rewards = [], []
    for h in range(segments.actions.shape[1]):
        action = segments.actions[:, h].expand(num_members, *segments.actions[:, h].shape)
        mean, _ = predict(model_input(obs, action))
        reward, obs = apply_prediction(obs, mean)
        states.append(obs)
        rewards.append(reward)
    return torch.stack(states, dim=2), torch.stack(rewards, dim=2)
