"""Every registered termination function against the real Gymnasium env's own ``terminated`` flag."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from mbpo_pl.termination import get_termination_fn, registered_env_ids

ENV_KWARGS = {
    "Ant-v5": {"include_cfrc_ext_in_observation": False},
    "Humanoid-v5": {
        "include_cinert_in_observation": False,
        "include_cvel_in_observation": False,
        "include_qfrc_actuator_in_observation": False,
        "include_cfrc_ext_in_observation": False,
    },
}


def _real_transitions(env_id: str, episodes: int = 12, max_steps: int = 200):
    """Next observations and terminated flags from random and perturbed-state episodes."""
    env = gym.make(env_id, **ENV_KWARGS.get(env_id, {}))
    rng = np.random.default_rng(0)
    next_obs, terminated = [], []
    for episode in range(episodes):
        env.reset(seed=episode)
        if episode % 2:  # perturbed start state: push the joints away from the nominal pose
            base = env.unwrapped
            qpos = base.init_qpos + rng.normal(0, 0.3, base.model.nq)
            qvel = base.init_qvel + rng.normal(0, 1.0, base.model.nv)
            base.set_state(qpos, qvel)
        for _ in range(max_steps):
            action = rng.uniform(env.action_space.low, env.action_space.high)
            obs, _, term, trunc, _ = env.step(action)
            next_obs.append(obs)
            terminated.append(term)
            if term or trunc:
                break
    env.close()
    return torch.as_tensor(np.array(next_obs), dtype=torch.float32), torch.as_tensor(terminated)


@pytest.mark.parametrize("env_id", registered_env_ids())
def test_termination_fn_agrees_with_the_env(env_id):
    next_obs, terminated = _real_transitions(env_id)
    predicted = get_termination_fn(env_id)(next_obs)
    assert predicted.dtype == torch.bool and predicted.shape == terminated.shape
    mismatches = (predicted != terminated).nonzero().flatten().tolist()
    assert not mismatches, f"{env_id}: {len(mismatches)} disagreements, first at {mismatches[:5]}"
    if env_id != "HalfCheetah-v5":  # the test must have seen terminations to check anything
        assert terminated.sum() >= 3


def test_unregistered_env_gets_a_clear_error():
    with pytest.raises(KeyError, match="register_termination_fn"):
        get_termination_fn("Pusher-v5")
