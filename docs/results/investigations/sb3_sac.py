"""Cross-check of our SAC baseline with another library: Stable-Baselines3's SAC on a Gymnasium env with the settings of
``conf/sac.yaml`` (5,000 uniform-random steps, batch 256, Adam 3e-4, 2 x 256, one update per env step, target entropy
-dim(A), temperature from 1.0), evaluated like ours (5 deterministic episodes on seeds 12345..12349, here every 5,000
env steps). Needs its own venv: ``pip install torch==2.13.0 stable-baselines3 "gymnasium[mujoco]"``.

    python docs/results/investigations/sb3_sac.py ENV_ID SEED > sb3_sac_ENV_seedSEED.csv   # env_steps,eval_return

e.g. ``sb3_sac.py Hopper-v5 0 > sb3_sac_hopper_seed0.csv``.
"""

import sys

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

env_id, seed = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
env, eval_env = gym.make(env_id), gym.make(env_id)


class Evaluate(BaseCallback):
    def _on_step(self) -> bool:
        if self.num_timesteps % 5000 == 0:
            returns = []
            for i in range(5):
                obs, _ = eval_env.reset(seed=12345 + i)
                done, total = False, 0.0
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = eval_env.step(action)
                    total, done = total + reward, terminated or truncated
                returns.append(total)
            print(f"{self.num_timesteps},{np.mean(returns):.1f}", flush=True)
        return True


model = SAC("MlpPolicy", env, learning_starts=5000, batch_size=256, learning_rate=3e-4, buffer_size=1_000_000,
            tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto_1.0", seed=seed, device="cpu",
            policy_kwargs={"net_arch": [256, 256]})  # fmt: skip
model.learn(100_000, callback=Evaluate())
