"""The learned termination predictor, for envs with no hand-written termination function."""

from pathlib import Path

import pytest
from tests_support import real_transitions

from mbpo_pl.cli import main
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.termination import get_termination_fn

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def _agreement(env_id: str, episodes: int, steps: int) -> float:
    next_obs, terminated = real_transitions(env_id, episodes=episodes, seed=0)
    test_obs, _ = real_transitions(env_id, episodes=max(episodes // 4, 4), seed=10_000)
    module = DynamicsModule(next_obs.shape[1], 1, learn_termination=True, termination_steps=steps)
    module.fit_termination(next_obs, terminated)
    predicted = module.predict_termination(test_obs)
    return float((predicted == get_termination_fn(env_id)(test_obs)).float().mean())


def test_learned_termination_agrees_with_inverted_pendulum_rule():
    assert _agreement("InvertedPendulum-v5", episodes=200, steps=1000) >= 0.95  # measured 0.98


@pytest.mark.slow
def test_learned_termination_agrees_with_hopper_rule(capsys):
    agreement = _agreement("Hopper-v5", episodes=400, steps=3000)
    with capsys.disabled():
        print(f"\nHopper-v5 learned-termination agreement with the hand-written rule: {agreement:.4f}")
    assert agreement >= 0.95


def test_env_without_termination_fn_needs_the_learned_one(logdir):
    unregistered = ["fit", "--config", TINY, "--data.env_id", "MountainCarContinuous-v0"]  # terminates at the goal
    with pytest.raises(ConfigError, match="learn_termination: true"):
        main(unregistered)
    cli = main([*unregistered, "--model.dynamics.learn_termination", "true"])
    assert cli.model.dynamics.learn_termination
    assert len(cli.datamodule.model_buffer) > 0
