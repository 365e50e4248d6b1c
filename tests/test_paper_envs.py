"""The shipped configs build the paper's robots, not only envs with the paper's names."""

from pathlib import Path

import pytest

from mbpo_pl.cli import main
from mbpo_pl.envs import make_env

CONF = Path(__file__).parents[1] / "conf"


def _configured_env(name: str, logdir):
    cli = main(["--config", str(CONF / f"{name}.yaml"), "--trainer.logger.init_args.save_dir", str(logdir)], run=False)
    return make_env(cli.datamodule.env_id, cli.datamodule.env_kwargs)


def _geom_friction(env, geom: str) -> float:
    model = env.unwrapped.model
    return float(model.geom(geom).friction[0])


def test_walker2d_config_has_the_v2_feet_friction(logdir):
    """Walker2d v2-v4 (the paper's): right foot 0.9, left foot 1.9; the v5 default model has 1.9 on both."""
    env = _configured_env("walker2d", logdir)
    assert _geom_friction(env, "foot_geom") == pytest.approx(0.9)
    assert _geom_friction(env, "foot_left_geom") == pytest.approx(1.9)
    env.close()


@pytest.mark.parametrize("name", ["hopper", "walker2d", "halfcheetah", "ant", "humanoid"])
def test_configs_whose_model_buffer_reaches_gigabytes_keep_it_memory_mapped(name, logdir):
    """Ant (10M model transitions at k = 25) and Humanoid (12.5M) would copy GBs into every checkpoint and hold
    them in RAM twice while saving; their configs store the buffers as memory-mapped files instead."""
    from callbacks.env_loop import MBPOLoop

    cli = main(["--config", str(CONF / f"{name}.yaml"), "--trainer.logger.init_args.save_dir", str(logdir)], run=False)
    data, loop = cli.datamodule, next(c for c in cli.trainer.callbacks if isinstance(c, MBPOLoop))
    capacity = loop.schedule.model_buffer_capacity(loop.schedule.max_rollout_length)
    row_bytes = 4 * (2 * data.obs_dim + data.act_dim + 1) + 2  # obs, action, next obs, reward; two flags
    gigabytes = capacity * row_bytes / 2**30
    assert (data.buffer_storage == "memmap") == (gigabytes > 2), f"{name}: model buffer {gigabytes:.1f} GiB"


def test_episode_reward_terms_add_up_to_the_return():
    import numpy as np

    from mbpo_pl.envs import run_episode

    env = make_env("Hopper-v5")
    rng = np.random.default_rng(0)
    episode = run_episode(env, lambda obs: rng.uniform(-1, 1, env.action_space.shape), seed=0)
    assert set(episode.reward_terms) == {"reward_forward", "reward_ctrl", "reward_survive"}
    assert sum(episode.reward_terms.values()) == pytest.approx(episode.total_return, rel=1e-5, abs=1e-6)
    assert episode.reward_terms["reward_survive"] in (episode.length - 1, episode.length)  # 1 per healthy step
    assert run_episode(make_env("Pendulum-v1"), lambda obs: np.zeros(1), seed=0).reward_terms == {}
