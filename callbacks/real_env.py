"""``RealEnvRunner``: the real environment the MBPO loop acts in, one step at a time, with an exact snapshot of the
running episode for bit-exact resume."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torch import Tensor

from mbpo_pl.rollout import make_transitions


class RealEnvRunner:
    """Steps one env copy; remembers the running episode's observation, return and length.

    Args:
        env: the (checked, action-rescaled) env; ``seed`` seeds its first reset and its action space.
    """

    def __init__(self, env: gym.Env, seed: int) -> None:
        self.env = env
        self.seed = seed
        self.env.action_space.seed(seed)
        self.obs: np.ndarray | None = None
        self.episodes = 0
        self.episode_return = 0.0
        self.episode_length = 0

    def step(self, policy: Callable[[Tensor], Tensor] | None, device: torch.device) -> tuple[TensorDict, dict | None]:
        """One env step with ``policy(obs [1, O]) -> action [1, A]`` (``None``: a uniform random action).

        Returns the transition (batch ``[1]``) and, if it ended the episode, ``{"return", "length"}`` of that episode.
        A time-limit truncation ends the episode but is stored with ``terminated=False`` (SAC bootstraps through it).
        """
        obs = self.observation(device)
        if policy is None:
            action = self.random_action(device)
        else:
            action = policy(obs.unsqueeze(0))[0]
        return self.advance(obs, action)

    def observation(self, device: torch.device) -> Tensor:
        """The running episode's observation ``[O]`` (the first call resets the env with the runner's seed)."""
        if self.obs is None:
            self.obs, _ = self.env.reset(seed=self.seed if self.episodes == 0 else None)
        return torch.as_tensor(self.obs, dtype=torch.float32, device=device)

    def random_action(self, device: torch.device) -> Tensor:
        """A uniform random action ``[A]`` from the env's seeded action space."""
        return torch.as_tensor(self.env.action_space.sample(), device=device)

    def advance(self, obs: Tensor, action: Tensor) -> tuple[TensorDict, dict | None]:
        """Step the env with ``action [A]`` from :meth:`observation`'s ``obs``; what :meth:`step` returns."""
        device = obs.device
        next_obs, reward, terminated, truncated, _ = self.env.step(action.cpu().numpy())
        transition = make_transitions(
            obs.unsqueeze(0),
            action.unsqueeze(0).float(),
            torch.tensor([reward], dtype=torch.float32, device=device),
            torch.as_tensor(next_obs, dtype=torch.float32, device=device).unsqueeze(0),
            torch.tensor([terminated], device=device),
            torch.tensor([truncated], device=device),
        )
        self.episode_return += float(reward)
        self.episode_length += 1
        ended = None
        if terminated or truncated:
            ended = {"return": self.episode_return, "length": self.episode_length}
            self.episodes += 1
            self.episode_return, self.episode_length = 0.0, 0
            self.obs, _ = self.env.reset()
        else:
            self.obs = next_obs
        return transition, ended

    def snapshot(self) -> dict[str, Any]:
        """The running episode: MuJoCo's full integration state, the time-limit counter and the env's RNG."""
        if self.obs is None:
            return {}
        base = self.env.unwrapped
        state: dict[str, Any] = {
            "obs": torch.as_tensor(self.obs),
            "elapsed_steps": self.env.get_wrapper_attr("_elapsed_steps"),
            "np_random": base.np_random.bit_generator.state,
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
        }
        if hasattr(base, "model") and hasattr(base, "data"):  # a MuJoCo env
            import mujoco

            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            physics = np.empty(mujoco.mj_stateSize(base.model, spec))
            mujoco.mj_getState(base.model, base.data, physics, spec)
            state["mujoco_state"] = torch.from_numpy(physics)
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Continue a snapshot's episode exactly (MuJoCo envs); other envs restart the episode with a fresh reset."""
        self.obs = None
        if not state or "mujoco_state" not in state:
            return
        import mujoco

        self.env.reset()  # arms the wrappers; everything it changed is overwritten below
        base = self.env.unwrapped
        mujoco.mj_setState(base.model, base.data, state["mujoco_state"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(base.model, base.data)
        self.env.set_wrapper_attr("_elapsed_steps", state["elapsed_steps"])
        base.np_random.bit_generator.state = state["np_random"]
        self.obs = state["obs"].numpy()
        self.episode_return = state["episode_return"]
        self.episode_length = state["episode_length"]

    def state_dict(self) -> dict[str, Any]:
        """Episodes so far, the running episode (:meth:`snapshot`) and the action space's RNG (random steps)."""
        return {
            "episodes": self.episodes,
            "env": self.snapshot(),
            "action_space_rng": self.env.action_space.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any], continue_episode: bool = True) -> None:
        """Restore :meth:`state_dict`; ``continue_episode=False`` starts a fresh episode instead (a process that
        did not run the snapshot's episode)."""
        self.episodes = state["episodes"]
        self.restore(state["env"] if continue_episode else {})
        self.env.action_space.np_random.bit_generator.state = state["action_space_rng"]

    def close(self) -> None:
        self.env.close()
