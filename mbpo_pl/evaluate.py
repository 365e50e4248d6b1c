"""Evaluating a policy on fresh episodes, and writing them as a video.

    from mbpo_pl import evaluate_policy, load_policy
    policy = load_policy("logs/Hopper-v5/version_0")
    result = evaluate_policy(policy, policy.make_env(), n_episodes=20)
    print(result.mean, result.std)

:func:`evaluate_policy` is what training's ``eval/`` figures (``callbacks.Evaluation``) and ``python -m mbpo_pl test``
both use: episode ``i`` resets with ``seed + i``, so two evaluations with the same seed play the same episodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from mbpo_pl.envs import Episode, run_episode
from mbpo_pl.errors import ConfigError


@dataclass
class PolicyEvaluation:
    """The episodes of one evaluation and their summary (standard deviations over episodes, ``ddof=0``)."""

    episodes: list[Episode]
    seeds: list[int]
    deterministic: bool = True

    @property
    def returns(self) -> np.ndarray:
        return np.array([e.total_return for e in self.episodes])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([e.length for e in self.episodes])

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())

    def reward_terms(self) -> dict[str, np.ndarray]:
        """Each reward term the env reports (``info["reward_<term>"]``): its episode sums ``[episodes]``."""
        names = dict.fromkeys(term for e in self.episodes for term in e.reward_terms)
        return {term: np.array([e.reward_terms.get(term, 0.0) for e in self.episodes]) for term in names}

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """``return`` (mean), ``return_std``, ``return_min``, ``return_max``, ``episode_length`` and each reward
        term's mean episode sum, under ``prefix``."""
        returns = self.returns
        return {
            f"{prefix}return": float(returns.mean()),
            f"{prefix}return_std": float(returns.std()),
            f"{prefix}return_min": float(returns.min()),
            f"{prefix}return_max": float(returns.max()),
            f"{prefix}episode_length": float(self.lengths.mean()),
            **{f"{prefix}{term}": float(sums.mean()) for term, sums in self.reward_terms().items()},
        }


def evaluate_policy(policy: Callable[[np.ndarray], np.ndarray], env: gym.Env, n_episodes: int = 10, seed: int = 0,
                    deterministic: bool = True, render: bool = False) -> PolicyEvaluation:  # fmt: skip
    """Play ``n_episodes`` episodes of ``env`` (episode ``i`` from ``env.reset(seed=seed + i)``) with ``policy``.

    ``policy`` maps an observation to an action in ``env``'s action space: a :class:`~mbpo_pl.policy.Policy` (its
    deterministic action, or with ``deterministic=False`` a sample, drawn from a generator seeded with ``seed``) or
    any callable. ``render`` keeps every frame of every episode (``env`` made with ``render_mode="rgb_array"``).
    """
    if n_episodes < 1:
        raise ConfigError(f"evaluate_policy: n_episodes={n_episodes} must be >= 1.")
    act = policy
    if not deterministic:
        if not hasattr(policy, "sample"):
            raise ConfigError("evaluate_policy(deterministic=False) needs a policy with .sample(obs) (load_policy's)")
        generator = torch.Generator(device=policy.action_low.device).manual_seed(seed)

        def act(obs: np.ndarray) -> np.ndarray:
            return policy.sample(obs, generator)

    seeds = [seed + i for i in range(n_episodes)]
    episodes = [run_episode(env, act, seed=s, render=render) for s in seeds]
    return PolicyEvaluation(episodes, seeds, deterministic)


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame [H, W, 3]`` with ``text`` written in its top-left corner on a dark strip."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((4, 2), text)
    draw.rectangle((0, 0, right + 4, bottom + 2), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(image)


def write_video(episodes: Sequence[Episode], seeds: Sequence[int], path: Path, fps: int = 30) -> Path:
    """Write the frames of ``episodes`` one after the other to ``path`` (``.mp4`` through imageio's ffmpeg,
    ``.gif`` through Pillow), each frame captioned with its episode, seed, step and return so far."""
    try:
        import imageio.v2 as imageio
    except ImportError as err:
        raise ConfigError("Videos need imageio (and imageio-ffmpeg for .mp4): pip install 'mbpo_pl[video]'") from err
    frames = []
    for number, (episode, seed) in enumerate(zip(episodes, seeds)):
        rewards = np.concatenate([[0.0], np.cumsum(episode.step_rewards)])
        for step, frame in enumerate(episode.frames):
            caption = f"episode {number} (seed {seed})  step {step}  return {rewards[step]:,.1f}"
            frames.append(_caption(frame, caption))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        imageio.mimwrite(path, frames, fps=fps) if path.suffix != ".gif" else imageio.mimwrite(
            path, frames, duration=1000 / fps, loop=0
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot write the video to {path}: {err}") from err
    return path


def offscreen_rendering() -> None:
    """Render MuJoCo offscreen through EGL unless ``MUJOCO_GL`` says otherwise (headless machines)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
