"""The model-free SAC baseline on the same code: ``loop.use_model false`` (``conf/sac.yaml``) trains SAC on real data
only, with no ensemble training, rollouts or model diagnostics."""

from pathlib import Path

import pytest

from callbacks import MBPOLoop
from mbpo_pl.cli import main
from mbpo_pl.errors import ConfigError

CONF = Path(__file__).parents[1] / "conf"
TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")
PAPER_ENVS = ["hopper", "walker2d", "halfcheetah", "ant", "humanoid"]


def test_sac_run_trains_no_model_and_samples_real_data_only(logdir):
    cli = main(["fit", "--config", TINY, "--loop.use_model", "false", "--data.real_ratio", "1.0",
                "--data.updates_per_step", "1", "--loop.total_env_steps", "250"])  # fmt: skip
    loop = next(c for c in cli.trainer.callbacks if isinstance(c, MBPOLoop))
    sac_optimizer, dynamics_optimizer = cli.trainer.optimizers[0], cli.trainer.optimizers[1]
    assert loop.env_steps == 250 and loop.model_trainings == 0 and loop.rollout_length == 0
    assert cli.datamodule.model_buffer is None
    assert dynamics_optimizer.state == {}  # the ensemble never took a step
    steps = {int(state["step"]) for state in sac_optimizer.state.values()}
    assert steps == {150}  # one SAC update per env step after the 100 random ones
    from mbpo_pl.report import load_scalars

    scalars = load_scalars(next(Path(logdir).rglob("events.out.tfevents.*")).parent)
    assert "eval/return" in scalars and not any(key.startswith(("dynamics/", "rollout/")) for key in scalars)


def test_sac_run_with_model_data_in_its_batches_is_refused(logdir):
    with pytest.raises(ConfigError, match="real_ratio 1.0"):
        main(["fit", "--config", TINY, "--loop.use_model", "false"])


@pytest.mark.parametrize("env", PAPER_ENVS)
def test_sac_overlay_changes_only_what_mbpo_adds(env, logdir):
    mbpo = main(["--config", str(CONF / f"{env}.yaml")], run=False)
    sac = main(["--config", str(CONF / f"{env}.yaml"), "--config", str(CONF / "sac.yaml")], run=False)
    loop = next(c for c in sac.trainer.callbacks if isinstance(c, MBPOLoop))
    assert not loop.use_model
    assert (sac.datamodule.updates_per_step, sac.datamodule.real_ratio, sac.datamodule.batch_size) == (1, 1.0, 256)
    assert sac.model.sac.target_entropy == -sac.datamodule.act_dim  # SAC's -dim(A), not MBPO's per-env value
    assert sac.trainer.logger.name == f"{sac.datamodule.env_id}-SAC"  # its own run folders
    # Everything else as the MBPO config: env, network sizes, evaluation, budget.
    assert (sac.datamodule.env_id, sac.datamodule.env_kwargs) == (mbpo.datamodule.env_id, mbpo.datamodule.env_kwargs)
    assert str(sac.model.sac.actor) == str(mbpo.model.sac.actor) and str(sac.model.sac.critic) == str(
        mbpo.model.sac.critic
    )
    mbpo_loop = next(c for c in mbpo.trainer.callbacks if isinstance(c, MBPOLoop))
    assert (loop.total_env_steps, loop.schedule.init_random_steps) == (
        mbpo_loop.total_env_steps,
        mbpo_loop.schedule.init_random_steps,
    )
