"""``Evaluation``: deterministic-policy returns on a separate copy of the env, logged as ``eval/return``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from callbacks.env_loop import find_loop
from mbpo_pl.envs import make_env


class Evaluation(Callback):
    """Runs ``num_episodes`` episodes with the mean action every ``every_n_env_steps`` real env steps (rank 0).

    Evaluation happens after the SAC updates that follow the env step reaching each multiple of the period.

    Args:
        every_n_env_steps: evaluation period in real env steps.
        num_episodes: episodes per evaluation.
        seed: base seed of the evaluation episodes (episode ``i`` resets with ``seed + i``, every time).
    """

    def __init__(self, every_n_env_steps: int = 1000, num_episodes: int = 5, seed: int = 12345) -> None:
        super().__init__()
        if every_n_env_steps < 1 or num_episodes < 1:
            raise ValueError("Evaluation.every_n_env_steps and num_episodes must be >= 1")
        self.every_n_env_steps = every_n_env_steps
        self.num_episodes = num_episodes
        self.seed = seed
        self.last_return: float | None = None
        self.history: list[tuple[int, float]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        data = trainer.datamodule
        self.env = make_env(data.env_id, data.env_kwargs)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if getattr(self, "env", None) is not None:
            self.env.close()

    @torch.no_grad()
    def evaluate(self, pl_module: LightningModule) -> tuple[np.ndarray, np.ndarray]:
        """Returns and lengths of ``num_episodes`` deterministic episodes."""
        returns, lengths = [], []
        actor = pl_module.sac.actor
        for episode in range(self.num_episodes):
            obs, _ = self.env.reset(seed=self.seed + episode)
            done, total, length = False, 0.0, 0
            while not done:
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=pl_module.device).unsqueeze(0)
                action = actor.act(obs_t, deterministic=True)[0].cpu().numpy()
                obs, reward, terminated, truncated, _ = self.env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
        return np.asarray(returns), np.asarray(lengths)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loop = find_loop(trainer)
        # The global count advances by world_size per step: evaluate at the step that reaches a multiple.
        if loop.env_steps % self.every_n_env_steps >= loop.world_size or not trainer.is_global_zero:
            return
        if self.history and self.history[-1][0] == loop.env_steps:
            return
        start = time.perf_counter()
        returns, lengths = self.evaluate(pl_module)
        self.last_return = float(returns.mean())
        self.history.append((loop.env_steps, self.last_return))
        pl_module.log_metrics(
            {
                "eval/return": self.last_return,
                "eval/return_std": float(returns.std()),
                "eval/return_min": float(returns.min()),
                "eval/return_max": float(returns.max()),
                "eval/episode_length": float(lengths.mean()),
            },
            loop.env_steps,
        )
        loop._timed("eval", start)
