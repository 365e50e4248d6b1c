import torch

from mbpo_pl.nets.ensemble import GaussianEnsemble
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.rollout import branched_rollout
from mbpo_pl.schedule import rollout_length


def test_rollout_length_schedule_truncated_linear():
    schedule = [20, 100, 1, 15]
    assert rollout_length(0, *schedule) == 1
    assert rollout_length(20, *schedule) == 1
    assert rollout_length(21, *schedule) == 1  # 1.175 truncated
    assert rollout_length(60, *schedule) == 8
    assert rollout_length(100, *schedule) == 15
    assert rollout_length(500, *schedule) == 15
    assert rollout_length(5, 1, 15, 1, 1) == 1


def _models(obs_dim=2, act_dim=1, ensemble_size=4):
    ensemble = GaussianEnsemble(obs_dim + act_dim, 1 + obs_dim, ensemble_size, hidden_size=8, num_hidden_layers=1)
    return ensemble, TanhGaussianActor(obs_dim, act_dim, hidden_size=8)


def test_rollout_stops_terminated_samples_and_keeps_their_last_transition():
    torch.manual_seed(0)
    ensemble, actor = _models()
    start = torch.randn(1000, 2)

    def done(next_obs):  # terminates roughly half of the samples at every step
        return next_obs[:, 0] > 0

    result = branched_rollout(ensemble, actor, torch.tensor([0, 2]), done, start, length=4)
    td = result.transitions
    alive = result.steps_alive.tolist()
    assert alive[0] == 1000 and all(a > b for a, b in zip(alive, alive[1:]))
    assert td.shape[0] == sum(alive)
    # Every stored transition's terminated flag agrees with the termination function.
    torch.testing.assert_close(td["next", "terminated"].squeeze(-1), done(td["next", "observation"]))
    # Rollouts continue only from non-terminated states: step t+1 starts = step t non-terminal next states.
    first = td[: alive[0]]
    assert alive[1] == int((~first["next", "terminated"]).sum())
    assert not td["next", "truncated"].any()


def test_rollout_samples_from_the_gaussian_not_the_mean():
    torch.manual_seed(0)
    ensemble, actor = _models(ensemble_size=1)
    with torch.no_grad():
        ensemble.head.weight.zero_()
        ensemble.head.bias.zero_()  # mean 0, logvar = soft-clamped 0 for every output
        logvar = ensemble.forward(torch.zeros(1, 1, 3))[1][0, 0]
    start = torch.zeros(20000, 2)
    td = branched_rollout(ensemble, actor, torch.tensor([0]), lambda o: o[:, 0] > 1e9, start, 1).transitions
    delta = td["next", "observation"] - td["observation"]
    torch.testing.assert_close(delta.var(0), logvar[1:].exp(), rtol=0.05, atol=0)
    torch.testing.assert_close(td["next", "reward"].var(), logvar[0].exp(), rtol=0.05, atol=0)


def test_rollout_uses_each_elite_for_an_even_share_and_only_elites():
    torch.manual_seed(0)
    ensemble, actor = _models(ensemble_size=3)
    with torch.no_grad():  # member m predicts reward = m exactly (tiny variance)
        ensemble.head.weight.zero_()
        for m in range(3):
            ensemble.head.bias[m, 0, 0] = float(m)
            ensemble.head.bias[m, 0, 3:] = -50.0
    td = branched_rollout(ensemble, actor, torch.tensor([0, 2]), lambda o: o[:, 0] > 1e9, torch.randn(1000, 2), 1)
    rewards = td.transitions["next", "reward"].round()
    assert set(rewards.unique().tolist()) == {0.0, 2.0}
    assert int((rewards == 0).sum()) == 500


def test_nonfinite_predictions_are_dropped_and_counted():
    ensemble, actor = _models(ensemble_size=1)
    with torch.no_grad():
        ensemble.head.bias[0, 0, 1] = float("nan")
    result = branched_rollout(ensemble, actor, torch.tensor([0]), lambda o: o[:, 0] > 1e9, torch.randn(10, 2), 2)
    assert result.transitions.shape[0] == 0 and int(result.dropped_nonfinite) == 10


def test_rollout_with_fewer_alive_states_than_elites():
    """When only a few rollouts survive (fewer than half the elites), every survivor still gets one prediction."""
    torch.manual_seed(0)
    ensemble, actor = _models(ensemble_size=7)
    for n in (1, 2, 3, 6):
        result = branched_rollout(ensemble, actor, torch.arange(5), lambda o: o[:, 0] > 1e9, torch.randn(n, 2), 3)
        assert result.steps_alive.tolist() == [n, n, n]
        assert result.transitions.shape[0] == 3 * n
        assert torch.isfinite(result.transitions["next", "observation"]).all()


def test_model_buffer_capacity_keeps_retain_epochs_of_rollout_batches():
    from mbpo_pl.schedule import model_buffer_capacity

    # Hopper: k = 15, 100k states, a rollout every 250 steps in 1000-step epochs: 4 batches per epoch
    assert model_buffer_capacity(15, 100_000, 1000, 1, 250) == 15 * 100_000 * 4
    assert model_buffer_capacity(25, 100_000, 1000, 5, 1000) == 5 * 25 * 100_000  # Humanoid: one batch per epoch
    assert model_buffer_capacity(1, 100_000, 1000, 1, 2 * 250) == 2 * 100_000  # 2 processes: half the batches each
    assert model_buffer_capacity(1, 200, 50, 1, 250) == 200  # epochs shorter than a period: still one batch
