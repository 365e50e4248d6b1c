"""Environment construction with the checks MBPO needs (continuous Box actions, flat Box observations).

Policies act in ``[-1, 1]^A``; :func:`make_env` rescales to the env's own action bounds with Gymnasium's
``RescaleAction`` wrapper, so buffers, the dynamics model and SAC all see normalised actions.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from mbpo_pl.errors import ConfigError
from mbpo_pl.termination import TerminationFn, choose_termination_fn


def _unknown_env_message(env_id: str) -> str:
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"Unknown environment id {env_id!r}.{hint} Set `data.env_id` to a registered Gymnasium id "
        "(`python -c 'import gymnasium; print(list(gymnasium.registry))'` lists them)."
    )


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, render_mode: str | None = None) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)`` checked for MBPO and rescaled to actions in ``[-1, 1]``."""
    if env_id not in gym.registry:
        raise ConfigError(_unknown_env_message(env_id))
    try:
        env = gym.make(env_id, render_mode=render_mode, **(env_kwargs or {}))
    except TypeError as err:  # a keyword the env does not take
        raise ConfigError(f"`data.env_kwargs` {env_kwargs} are not accepted by {env_id!r}: {err}") from err
    except (ImportError, gym.error.Error) as err:  # a missing dependency or an env retired in this install
        raise ConfigError(f"{env_id!r} cannot be made in this installation: {err}") from err
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise ConfigError(
            f"{env_id!r} has a {type(env.action_space).__name__} action space; MBPO (SAC with a Gaussian policy) "
            "needs continuous actions (gymnasium.spaces.Box). Pick a continuous-control env such as Hopper-v5."
        )
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise ConfigError(
            f"{env_id!r} has observation space {env.observation_space}; the dynamics model needs a flat Box "
            "observation. Wrap the env (e.g. gymnasium.wrappers.FlattenObservation) and register the wrapped id."
        )
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        env.close()
        raise ConfigError(f"{env_id!r} has unbounded actions {env.action_space}; a tanh policy needs finite bounds.")
    if not (np.all(low == -1.0) and np.all(high == 1.0)):
        ones = np.ones(env.action_space.shape, dtype=env.action_space.dtype)
        env = gym.wrappers.RescaleAction(env, min_action=-ones, max_action=ones)
    return env


@dataclass
class Episode:
    """One finished episode: its return, its length, the sum of each reward term the env reports and, when
    rendered, its frames ``[T + 1, H, W, C]`` and each step's reward ``[T]``.

    ``reward_terms`` holds the episode sums of the ``info["reward_<term>"]`` entries (Gymnasium's MuJoCo v5 envs
    report e.g. ``reward_forward``, ``reward_ctrl``, ``reward_contact``, ``reward_survive``; their sum is the
    reward). It tells a policy that moves from one that only survives: both can score ~1,000 on Ant.
    """

    total_return: float
    length: int
    frames: list[np.ndarray] = field(default_factory=list)
    reward_terms: dict[str, float] = field(default_factory=dict)
    step_rewards: list[float] = field(default_factory=list)


def run_episode(env: gym.Env, policy: Callable[[np.ndarray], np.ndarray], seed: int | None = None,
                render: bool = False) -> Episode:  # fmt: skip
    """Play one episode from ``env.reset(seed=seed)`` until it terminates or is truncated, acting with
    ``policy(obs) -> action``; with ``render``, keep ``env.render()`` of every state."""
    obs, _ = env.reset(seed=seed)
    episode = Episode(0.0, 0, [env.render()] if render else [])
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        episode.total_return += float(reward)
        for key, value in info.items():
            if key.startswith("reward_") and np.ndim(value) == 0:
                episode.reward_terms[key] = episode.reward_terms.get(key, 0.0) + float(value)
        episode.length += 1
        if render:
            episode.frames.append(env.render())
            episode.step_rewards.append(float(reward))
        done = terminated or truncated
    return episode


IDENTITY = ("env_id", "env_kwargs", "obs_dim", "act_dim")  # what makes two env descriptions the same env


@dataclass(frozen=True)
class EnvSpec:
    """The one description of a run's env: its id and ``gymnasium.make`` keyword arguments, the observation and
    action sizes of the checked env and its own action bounds (policies act in ``[-1, 1]``; :func:`make_env`
    rescales). Built once (:meth:`of`) and passed down; checkpoints store its :meth:`signature` once, and a resume or
    evaluation checks a checkpoint against it once (:meth:`check_checkpoint`). :meth:`termination_fn` is what stops
    model rollouts in it."""

    env_id: str
    env_kwargs: dict[str, Any]
    obs_dim: int
    act_dim: int
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None

    @classmethod
    def of(cls, env_id: str, env_kwargs: dict[str, Any] | None = None) -> EnvSpec:
        """Make and check the env once (a clear error for an unknown id, bad kwargs or unsupported spaces)."""
        env = make_env(env_id, env_kwargs)
        try:
            space = env.unwrapped.action_space  # the env's own bounds, before the rescaling to [-1, 1]
            return cls(env_id, dict(env_kwargs or {}), env.observation_space.shape[0], env.action_space.shape[0],
                       tuple(space.low.tolist()), tuple(space.high.tolist()))  # fmt: skip
        finally:
            env.close()

    @classmethod
    def from_signature(cls, saved: dict[str, Any]) -> EnvSpec:
        """The description a checkpoint stored (without bounds for checkpoints written before they were stored)."""
        low, high = saved.get("action_low"), saved.get("action_high")
        return cls(saved["env_id"], dict(saved["env_kwargs"]), saved["obs_dim"], saved["act_dim"],
                   None if low is None else tuple(low), None if high is None else tuple(high))  # fmt: skip

    def termination_fn(self, learned: TerminationFn | None = None) -> TerminationFn:
        """What stops model rollouts in this env (:func:`~mbpo_pl.termination.choose_termination_fn`)."""
        return choose_termination_fn(self.env_id, learned)

    def make(self, render_mode: str | None = None, **overrides: Any) -> gym.Env:
        """A fresh copy of the env (:func:`make_env`: actions in ``[-1, 1]``); ``overrides`` update its kwargs."""
        return make_env(self.env_id, {**self.env_kwargs, **overrides}, render_mode=render_mode)

    def signature(self) -> dict[str, Any]:
        """What a checkpoint stores of the env (plain types only)."""
        signature = {"env_id": self.env_id, "env_kwargs": dict(self.env_kwargs), "obs_dim": self.obs_dim,
                     "act_dim": self.act_dim}  # fmt: skip
        if self.action_low is not None:
            signature.update(action_low=list(self.action_low), action_high=list(self.action_high))
        return signature

    def check_checkpoint(self, saved: dict[str, Any], what: str = "This checkpoint", fix: str | None = None) -> None:
        """Raise a clear error when a checkpoint's :meth:`signature` is another env's or has other sizes (``fix``:
        the advice in the message; by default, how to resume)."""
        current = self.signature()
        if any(saved.get(key) != current[key] for key in IDENTITY):
            raise ConfigError(
                f"{what} was made for env {saved.get('env_id')!r} (kwargs {saved.get('env_kwargs')}, obs_dim "
                f"{saved.get('obs_dim')}, act_dim {saved.get('act_dim')}), but this run is configured for "
                f"{current['env_id']!r} (kwargs {current['env_kwargs']}, obs_dim {current['obs_dim']}, act_dim "
                f"{current['act_dim']}). "
                + (
                    fix
                    or "Resume with the config the checkpoint was trained with (its config.yaml beside the logs), "
                    "or start a new run without --ckpt_path."
                )
            )
