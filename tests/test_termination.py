"""Every registered termination function against the real Gymnasium env's own ``terminated`` flag."""

import pytest
import torch
from tests_support import real_transitions

from mbpo_pl.errors import ConfigError
from mbpo_pl.termination import (
    NEVER_TERMINATE,
    choose_termination_fn,
    get_termination_fn,
    registered_env_ids,
)


@pytest.mark.parametrize("env_id", registered_env_ids())
def test_termination_fn_agrees_with_the_env(env_id):
    next_obs, terminated = real_transitions(env_id)
    predicted = get_termination_fn(env_id)(next_obs)
    assert predicted.dtype == torch.bool and predicted.shape == terminated.shape
    mismatches = (predicted != terminated).nonzero().flatten().tolist()
    assert not mismatches, f"{env_id}: {len(mismatches)} disagreements, first at {mismatches[:5]}"
    if env_id not in NEVER_TERMINATE:  # the test must have seen terminations to check anything
        assert terminated.sum() >= 3


def test_unregistered_env_gets_a_clear_error():
    with pytest.raises(ConfigError, match="register_termination_fn"):
        get_termination_fn("BipedalWalker-v3")


def test_a_learned_termination_is_used_where_asked_for_and_the_error_names_both_ways_out():
    def learned(next_obs):
        return next_obs[:, 0] > 0

    assert choose_termination_fn("Hopper-v5", learned) is learned
    assert choose_termination_fn("Hopper-v5", None) is get_termination_fn("Hopper-v5")
    with pytest.raises(ConfigError, match="register_termination_fn.*learn_termination: true"):
        choose_termination_fn("NoSuchEnv-v0", None)
