"""Shared helpers for the tests: real transitions from Gymnasium envs, the tiny config with checkpoints, whether
an offscreen renderer works here."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

ENV_KWARGS = {
    "Walker2d-v5": {"xml_file": "walker2d.xml"},  # the paper's (v2) feet friction, as conf/walker2d.yaml
    "Ant-v5": {"include_cfrc_ext_in_observation": False},
    "Humanoid-v5": {
        "include_cinert_in_observation": False,
        "include_cvel_in_observation": False,
        "include_qfrc_actuator_in_observation": False,
        "include_cfrc_ext_in_observation": False,
    },
}


def real_transitions(env_id: str, episodes: int = 12, max_steps: int = 200, seed: int = 0):
    """``(next_obs [N, O], terminated [N])`` from random-action episodes, every other one from a perturbed state."""
    env = gym.make(env_id, **ENV_KWARGS.get(env_id, {}))
    mujoco = hasattr(env.unwrapped, "init_qpos")
    rng = np.random.default_rng(seed)
    next_obs, terminated = [], []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        if episode % 2 and mujoco:  # perturbed start state: push the joints away from the nominal pose
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


TINY = Path(__file__).parent / "conf" / "tiny.yaml"


def tiny_config_with_checkpoints(folder: Path, source: Path = TINY, name: str = "tiny_env_named.yaml") -> str:
    """tiny.yaml (or ``source``, another version of it) with checkpoints on and the logger named after the env, as
    the shipped configs are; written into ``folder``."""
    text = source.read_text().replace("name: tiny", "name: ${data.env_id}")
    checkpoints = (
        "enable_checkpointing: true\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        "      init_args:\n        save_last: true"
    )
    text = text.replace("enable_checkpointing: false", checkpoints)
    path = folder / name
    path.write_text(text)
    return str(path)


def renderer_available() -> bool:
    """Whether MuJoCo renders offscreen here (EGL unless MUJOCO_GL says otherwise), probed in a subprocess."""
    probe = (
        "import gymnasium as g; e = g.make('InvertedPendulum-v5', render_mode='rgb_array', width=32, height=32); "
        "e.reset(seed=0); assert e.render().shape == (32, 32, 3)"
    )
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0


class PoisonSeeds(Callback):
    """A callback (``--trainer.callbacks+=tests_support.PoisonSeeds``) that, at env step ``at``, makes a population
    seed's SAC actor (index ``sac_seed`` of the process's seeds) and another's dynamics ensemble (``dynamics_seed``)
    NaN: the first fails in its next SAC statistics, the second in its next model training. ``rank``: only in that
    process (default: every process)."""

    def __init__(self, at: int, sac_seed: int | None = None, dynamics_seed: int | None = None,
                 rank: int | None = None) -> None:  # fmt: skip
        self.at, self.sac_seed, self.dynamics_seed, self.rank = at, sac_seed, dynamics_seed, rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.run.env_steps != self.at or self.rank not in (None, trainer.global_rank):
            return
        with torch.no_grad():
            if self.sac_seed is not None:
                for param in pl_module.sac.actor.parameters():
                    param[self.sac_seed] = float("nan")
            if self.dynamics_seed is not None:
                for param in pl_module.dynamics.model.seeds[self.dynamics_seed].parameters():
                    param.fill_(float("nan"))


class SigtermAt(Callback):
    """A callback (``--trainer.callbacks+=tests_support.SigtermAt``) that sends this process SIGTERM in the training
    step that reaches env step ``at``, as a scheduler would at any moment."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.run.env_steps == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
