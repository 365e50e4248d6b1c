"""``Evaluation``: deterministic-policy returns on a separate copy of the env, logged as ``eval/return``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from mbpo_pl.envs import run_episode
from mbpo_pl.errors import ConfigError, require_positive
from mbpo_pl.evaluate import PolicyEvaluation, evaluate_policy, offscreen_rendering
from mbpo_pl.nets.sac import seed_actor
from mbpo_pl.seed_split import gather_objects


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
        stochastic_episodes: ``python -m mbpo_pl test`` only: also this many episodes with actions sampled from the
            stochastic policy.
        video_path: ``python -m mbpo_pl test`` only: write the first ``video_episodes`` deterministic test episodes
            to this video file (``.mp4`` or ``.gif``), each frame captioned with the return so far.
        video_episodes: episodes in the ``video_path`` video.
    """

    def __init__(
        self,
        every_n_env_steps: int = 1000,
        num_episodes: int = 5,
        seed: int = 12345,
        video_every_n_env_steps: int | None = None,
        video_size: int = 256,
        video_fps: int = 30,
        stochastic_episodes: int = 0,
        video_path: str | None = None,
        video_episodes: int = 1,
    ) -> None:
        super().__init__()
        require_positive("eval", every_n_env_steps=every_n_env_steps, num_episodes=num_episodes,
                         video_episodes=video_episodes)  # fmt: skip
        if stochastic_episodes < 0:
            raise ConfigError(f"eval.stochastic_episodes={stochastic_episodes} must be >= 0.")
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
        self.stochastic_episodes = stochastic_episodes
        self.video_path = video_path
        self.video_episodes = video_episodes
        self.last_return: float | None = None
        self.history: list[tuple[int, float]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.video_path is not None or self.stochastic_episodes:
            raise ConfigError(
                "eval.video_path and eval.stochastic_episodes belong to `python -m mbpo_pl test` (evaluating a "
                "checkpoint); during training, record videos with eval.video_every_n_env_steps."
            )
        data = trainer.datamodule
        self.env = data.env_spec.make()
        self.video_env = None
        if self.video_every_n_env_steps is not None and trainer.is_global_zero:
            try:
                from moviepy import editor  # noqa: F401  (TensorBoard's and W&B's video encoder)
            except ImportError as err:
                raise ConfigError("Evaluation videos need moviepy<2 and imageio: pip install 'mbpo_pl[video]'") from err
            offscreen_rendering()
            size = {"width": self.video_size, "height": self.video_size}
            self.video_env = data.env_spec.make(render_mode="rgb_array", **size)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for env in (getattr(self, "env", None), getattr(self, "video_env", None)):
            if env is not None:
                env.close()

    def _policy(self, pl_module: LightningModule, seed_index: int | None = None):  # noqa: ANN202 (obs -> action)
        """The deterministic policy (``seed_index``: that seed's of a population)."""
        actor = pl_module.sac.actor if seed_index is None else seed_actor(pl_module.sac.actor, seed_index)

        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=pl_module.device).unsqueeze(0)
            return actor.act(obs_t, deterministic=True)[0].cpu().numpy()

        return act

    def record_video(self, pl_module: LightningModule) -> np.ndarray:
        """One deterministic episode as frames ``[T, C, H, W]`` uint8 (a population's: its first seed still
        training's)."""
        policy = self._policy(pl_module, None if pl_module.seeds is None else pl_module.run.training_seeds[0])
        episode = run_episode(self.video_env, policy, seed=self.seed, render=True)
        return np.stack(episode.frames).transpose(0, 3, 1, 2)

    def log_video(self, trainer: Trainer, frames: np.ndarray, env_steps: int) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                video = torch.from_numpy(frames).unsqueeze(0)  # [1, T, C, H, W]
                logger.experiment.add_video("eval/video", video, global_step=env_steps, fps=self.video_fps)
            elif isinstance(logger, WandbLogger):
                logger.log_video("eval/video", [frames], step=env_steps, fps=[self.video_fps])

    def evaluate(self, pl_module: LightningModule, seed_index: int | None = None) -> PolicyEvaluation:
        """``num_episodes`` deterministic episodes (``seed_index``: of that seed's policy in a population)."""
        return evaluate_policy(self._policy(pl_module, seed_index), self.env, self.num_episodes, self.seed)

    def _evaluate_run(self, pl_module: LightningModule) -> dict[str, float]:
        """Evaluate and log; returns the figures every rank's callbacks see (a population's: its mean over the
        seeds still training as ``eval/return``, with ``eval/return_seed_min`` and ``_max``)."""
        if pl_module.seeds is None:
            metrics = self.evaluate(pl_module).metrics("eval/")
            pl_module.log_metrics(metrics, pl_module.run.env_steps)
            return metrics
        # Each process evaluates its own seeds still training (a stopped seed is not evaluated again); every process
        # gets every seed's figures, so that all compute the same summary.
        offset, training = pl_module.seed_offset, pl_module.run.training_seeds
        rows = {offset + index: self.evaluate(pl_module, index).metrics("eval/") for index in training}
        rows = {index: row for part in gather_objects(pl_module.trainer, rows) for index, row in part.items()}
        pl_module.log_seed_rows({}, rows, pl_module.run.env_steps, gathered=True)  # each seed's into its own folder
        returns = torch.tensor([rows[index]["eval/return"] for index in sorted(rows)])
        summary = {"eval/return": float(returns.mean()), "eval/return_seed_min": float(returns.min()),
                   "eval/return_seed_max": float(returns.max())}  # fmt: skip
        pl_module.log_population_metrics(summary, pl_module.run.env_steps)
        pl_module.run.last_eval_returns = returns.tolist()
        return summary

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # An evaluation's figures stay in `trainer.callback_metrics` to the end of the epoch it happened in, so a
        # ModelCheckpoint or EarlyStopping monitoring `eval/return` compares evaluations, never a stale one again.
        for key in [key for key in trainer.callback_metrics if key.startswith("eval/")]:
            del trainer.callback_metrics[key]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        run = pl_module.run
        # The global count advances by world_size per step: evaluate at the step that reaches a multiple.
        if run.env_steps % self.every_n_env_steps >= run.world_size:
            return
        if self.history and self.history[-1][0] == run.env_steps:
            return
        metrics = None
        population = pl_module.seeds is not None  # every process evaluates its own seeds
        if trainer.is_global_zero or population:
            with run.clock.timed("eval"):
                metrics = self._evaluate_run(pl_module)
                video_due = self.video_env is not None and run.env_steps % self.video_every_n_env_steps < run.world_size
                if video_due and trainer.is_global_zero and (not population or pl_module.run.training_seeds):
                    self.log_video(trainer, self.record_video(pl_module), run.env_steps)
        if trainer.world_size > 1 and not population:  # rank 0 evaluates; every rank's callbacks see the result
            metrics = trainer.strategy.broadcast(metrics, src=0)
        self.last_return = run.last_eval_return = metrics["eval/return"]
        self.history.append((run.env_steps, self.last_return))
        # Into Lightning's callback metrics (the loggers already have them, at the env-step x-axis).
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, logger=False)
