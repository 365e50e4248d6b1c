"""``Evaluation``: deterministic-policy returns on a separate copy of the env, logged as ``eval/return``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from callbacks.env_loop import find_loop
from mbpo_pl.envs import Episode, make_env, run_episode
from mbpo_pl.errors import ConfigError, require_positive


class Evaluation(Callback):
    """Runs ``num_episodes`` episodes with the mean action every ``every_n_env_steps`` real env steps (rank 0).

    Logs ``eval/return`` (mean, with ``_std``, ``_min``, ``_max``), ``eval/episode_length`` and, for each reward
    term the env reports in its ``info`` (MuJoCo v5 envs: ``reward_forward``, ``reward_ctrl``, ...), the mean
    episode sum as ``eval/<term>``.

    Evaluation happens after the SAC updates that follow the env step reaching each multiple of the period.

    Args:
        every_n_env_steps: evaluation period in real env steps.
        num_episodes: episodes per evaluation.
        seed: base seed of the evaluation episodes (episode ``i`` resets with ``seed + i``, every time).
        video_every_n_env_steps: also record one deterministic episode as a video every this many env steps
            (``None``: no video). MuJoCo renders offscreen through EGL (``MUJOCO_GL=egl`` unless set otherwise);
            TensorBoard and W&B encode it with moviepy (``pip install 'mbpo_pl[video]'``).
        video_size: width and height of the video frames in pixels.
        video_fps: frames per second of the logged video.
    """

    def __init__(
        self,
        every_n_env_steps: int = 1000,
        num_episodes: int = 5,
        seed: int = 12345,
        video_every_n_env_steps: int | None = None,
        video_size: int = 256,
        video_fps: int = 30,
    ) -> None:
        super().__init__()
        require_positive("eval", every_n_env_steps=every_n_env_steps, num_episodes=num_episodes)
        if video_every_n_env_steps is not None and video_every_n_env_steps % every_n_env_steps:
            raise ConfigError(
                f"eval.video_every_n_env_steps={video_every_n_env_steps} must be a multiple of "
                f"every_n_env_steps={every_n_env_steps} (videos are recorded at evaluations)."
            )
        self.video_every_n_env_steps = video_every_n_env_steps
        self.video_size = video_size
        self.video_fps = video_fps
        self.every_n_env_steps = every_n_env_steps
        self.num_episodes = num_episodes
        self.seed = seed
        self.last_return: float | None = None
        self.history: list[tuple[int, float]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        data = trainer.datamodule
        self.env = make_env(data.env_id, data.env_kwargs)
        self.video_env = None
        if self.video_every_n_env_steps is not None and trainer.is_global_zero:
            try:
                from moviepy import editor  # noqa: F401  (TensorBoard's and W&B's video encoder)
            except ImportError as err:
                raise ConfigError("Evaluation videos need moviepy<2 and imageio: pip install 'mbpo_pl[video]'") from err
            os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering
            size = {"width": self.video_size, "height": self.video_size}
            self.video_env = make_env(data.env_id, {**data.env_kwargs, **size}, render_mode="rgb_array")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for env in (getattr(self, "env", None), getattr(self, "video_env", None)):
            if env is not None:
                env.close()

    def _policy(self, pl_module: LightningModule):  # noqa: ANN202 (obs -> action, numpy)
        actor = pl_module.sac.actor

        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=pl_module.device).unsqueeze(0)
            return actor.act(obs_t, deterministic=True)[0].cpu().numpy()

        return act

    def record_video(self, pl_module: LightningModule) -> np.ndarray:
        """One deterministic episode as frames ``[T, C, H, W]`` uint8."""
        episode = run_episode(self.video_env, self._policy(pl_module), seed=self.seed, render=True)
        return np.stack(episode.frames).transpose(0, 3, 1, 2)

    def log_video(self, trainer: Trainer, frames: np.ndarray, env_steps: int) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                video = torch.from_numpy(frames).unsqueeze(0)  # [1, T, C, H, W]
                logger.experiment.add_video("eval/video", video, global_step=env_steps, fps=self.video_fps)
            elif isinstance(logger, WandbLogger):
                logger.log_video("eval/video", [frames], step=env_steps, fps=[self.video_fps])

    def evaluate(self, pl_module: LightningModule) -> list[Episode]:
        """``num_episodes`` deterministic episodes."""
        policy = self._policy(pl_module)
        return [run_episode(self.env, policy, seed=self.seed + i) for i in range(self.num_episodes)]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loop = find_loop(trainer)
        # The global count advances by world_size per step: evaluate at the step that reaches a multiple.
        if loop.env_steps % self.every_n_env_steps >= loop.world_size or not trainer.is_global_zero:
            return
        if self.history and self.history[-1][0] == loop.env_steps:
            return
        with loop.clock.timed("eval"):
            episodes = self.evaluate(pl_module)
            returns, lengths = np.array([e.total_return for e in episodes]), np.array([e.length for e in episodes])
            terms = {f"eval/{term}": float(np.mean([e.reward_terms.get(term, 0.0) for e in episodes]))
                     for term in episodes[0].reward_terms}  # fmt: skip
            self.last_return = float(returns.mean())
            self.history.append((loop.env_steps, self.last_return))
            if self.video_env is not None and loop.env_steps % self.video_every_n_env_steps < loop.world_size:
                self.log_video(trainer, self.record_video(pl_module), loop.env_steps)
            pl_module.log_metrics(
                {
                    "eval/return": self.last_return,
                    "eval/return_std": float(returns.std()),
                    "eval/return_min": float(returns.min()),
                    "eval/return_max": float(returns.max()),
                    "eval/episode_length": float(lengths.mean()),
                    **terms,
                },
                loop.env_steps,
            )
