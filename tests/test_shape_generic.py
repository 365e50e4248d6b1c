"""Shape-generic maths: every leading dimension is batch. Each piece, given an extra leading dimension (e.g. one per
seed of a population), computes what a loop over that dimension computes."""

import pytest
import torch

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.holdout import BestMembers
from mbpo_pl.losses import alpha_loss, soft_q_target
from mbpo_pl.model_io import apply_prediction, model_input, model_target
from mbpo_pl.nets.ensemble import EnsembleLinear, GaussianEnsemble, InputNormalizer, gaussian_nll
from mbpo_pl.nets.sac import TanhGaussianActor, TwinQCritic
from mbpo_pl.termination import get_termination_fn, registered_env_ids

S = 3  # the extra leading dimension


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_ensemble_linear_with_a_leading_dim_is_a_stack_of_independent_layers():
    stacked = EnsembleLinear((S, 4), 5, 6)
    torch.nn.init.normal_(stacked.bias)
    assert stacked.weight.shape == (S, 4, 5, 6) and stacked.ensemble_size == 4
    assert not torch.equal(stacked.weight[0], stacked.weight[1])  # each map initialised on its own
    x = torch.randn(S, 4, 7, 5)
    members = torch.tensor([[3, 1], [0, 0], [2, 3]])  # [S, M]: other members per leading index
    out, chosen = stacked(x), stacked.forward_members(x[:, :2], members)
    for s in range(S):
        single = EnsembleLinear(4, 5, 6)
        single.load_state_dict({"weight": stacked.weight[s], "bias": stacked.bias[s]})
        _close(out[s], single(x[s]))
        _close(chosen[s], single.forward_members(x[s, :2], members[s]))
    shared = EnsembleLinear(4, 5, 6)  # one layer's weights broadcast over the inputs' leading dimension
    _close(shared(x), torch.stack([shared(x[s]) for s in range(S)]))


def test_gaussian_ensemble_with_a_leading_dim_has_a_normalizer_and_bounds_per_index():
    stacked = GaussianEnsemble(6, 4, ensemble_size=(S, 5), hidden_size=8)
    data = torch.randn(S, 50, 6) * torch.tensor([1.0, 3.0, 0.5]).view(S, 1, 1) + 2
    stacked.normalizer.fit(data)
    with torch.no_grad():
        stacked.max_logvar.add_(torch.randn_like(stacked.max_logvar) * 0.1)
    x = torch.randn(S, 5, 9, 6)
    mean, logvar = stacked(x)
    members = torch.tensor([[4, 1], [0, 2], [3, 3]])
    sub_mean, sub_logvar = stacked.forward_members(x[:, :2], members)
    for s in range(S):
        single = GaussianEnsemble(6, 4, ensemble_size=5, hidden_size=8)
        single.load_state_dict({key: value[s] for key, value in stacked.state_dict().items()})
        _close(single.normalizer.mean, data[s].mean(0))
        for got, want in zip((mean[s], logvar[s]), single(x[s])):
            _close(got, want)
        for got, want in zip((sub_mean[s], sub_logvar[s]), single.forward_members(x[s, :2], members[s])):
            _close(got, want)
    loss = stacked.logvar_bound_loss()
    _close(loss, sum(stacked.max_logvar[s].sum() - stacked.min_logvar[s].sum() for s in range(S)))


def test_input_normalizer_fit_per_leading_index():
    normalizer = InputNormalizer(4, batch_shape=(S,))
    data = torch.randn(S, 30, 4) * torch.arange(1.0, S + 1).view(S, 1, 1)
    normalizer.fit(data)
    for s in range(S):
        single = InputNormalizer(4)
        single.fit(data[s])
        _close(normalizer.mean[s], single.mean)
        _close(normalizer.std[s], single.std)
        _close(normalizer(data)[s], single(data[s]))


def test_gaussian_nll_and_dynamics_holdout_mse_with_a_leading_dim():
    mean, logvar, target = (torch.randn(S, 4, 10, 3) for _ in range(3))
    _close(
        gaussian_nll(mean, logvar, target), torch.stack([gaussian_nll(mean[s], logvar[s], target[s]) for s in range(S)])
    )
    dynamics = DynamicsModule(3, 2, ensemble_size=4, num_elites=2, hidden_size=8)
    inputs, targets = torch.randn(S, 20, 5), torch.randn(S, 20, 4)
    mse = dynamics.holdout_mse(inputs, targets)
    assert mse.shape == (S, 4)
    _close(mse, torch.stack([dynamics.holdout_mse(inputs[s], targets[s]) for s in range(S)]))


def test_model_input_and_target_conventions_with_leading_dims():
    obs, action, reward, next_obs = torch.randn(S, 5, 3), torch.randn(S, 5, 2), torch.randn(S, 5), torch.randn(S, 5, 3)
    target = model_target(obs, reward, next_obs)
    for s in range(S):
        _close(model_input(obs, action)[s], model_input(obs[s], action[s]))
        _close(target[s], model_target(obs[s], reward[s], next_obs[s]))
    got_reward, got_next = apply_prediction(obs, target)
    _close(got_reward, reward)
    _close(got_next, next_obs)


def test_twin_critic_and_actor_treat_leading_dims_as_batch():
    critic, actor = TwinQCritic(3, 2, hidden_size=16), TanhGaussianActor(3, 2, hidden_size=16)
    obs, action = torch.randn(S, 7, 3), torch.rand(S, 7, 2) * 2 - 1
    q = critic(obs, action)
    assert q.shape == (S, 2, 7)
    _close(q, torch.stack([critic(obs[s], action[s]) for s in range(S)]))
    _close(actor.act(obs, deterministic=True), torch.stack([actor.act(obs[s], deterministic=True) for s in range(S)]))


def test_sac_losses_with_a_leading_dim_sum_independent_losses():
    reward, next_log_prob = torch.randn(S, 6), torch.randn(S, 6)
    terminated = torch.rand(S, 6) < 0.3
    next_q, log_alpha = torch.randn(S, 2, 6), torch.randn(S)
    alpha = log_alpha.exp().unsqueeze(-1)
    target = soft_q_target(reward, terminated, next_q, next_log_prob, alpha, 0.99)
    for s in range(S):
        _close(target[s], soft_q_target(reward[s], terminated[s], next_q[s], next_log_prob[s], alpha[s], 0.99))
    log_alpha.requires_grad_(True)
    alpha_loss(log_alpha, next_log_prob, -2.0).sum().backward()
    for s in range(S):
        single = log_alpha[s].detach().clone().requires_grad_(True)
        alpha_loss(single, next_log_prob[s], -2.0).backward()
        _close(log_alpha.grad[s], single.grad)  # each temperature moves as it would alone


@pytest.mark.parametrize("env_id", registered_env_ids())
def test_termination_functions_treat_leading_dims_as_batch(env_id):
    done = get_termination_fn(env_id)
    obs_dim = 400  # more than any registered env's observation
    next_obs = torch.randn(S, 11, obs_dim) * torch.tensor([0.1, 1.0, 3.0]).view(S, 1, 1) + 1.0
    result = done(next_obs)
    assert result.shape == (S, 11) and result.dtype == torch.bool
    assert torch.equal(result, torch.stack([done(next_obs[s]) for s in range(S)]))


def test_best_members_keeps_one_stopping_counter_per_leading_index():
    params = [torch.zeros(S, 2, 3)]
    stacked = BestMembers(params, patience=1, threshold=0.01)
    singles = [BestMembers([torch.zeros(2, 3)], patience=1, threshold=0.01) for _ in range(S)]
    # index 0 keeps improving, index 1 stops improving at once, index 2 improves on one member only
    epochs = [torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),
              torch.tensor([[0.5, 0.9], [1.0, 1.0], [0.5, 1.0]]),
              torch.tensor([[0.2, 0.5], [1.0, 1.0], [0.5, 1.0]]),
              torch.tensor([[0.1, 0.2], [1.0, 1.0], [0.5, 1.0]])]  # fmt: skip
    for epoch, mse in enumerate(epochs):
        params[0].fill_(epoch)
        stop = stacked.update(mse)
        single_stops = []
        for s, single in enumerate(singles):
            single.params[0].fill_(epoch)
            single_stops.append(single.update(mse[s]))
        assert stop == all(single_stops)  # the whole stack stops once every index would have stopped
        for s, single in enumerate(singles):
            _close(stacked.best_mse[s], single.best_mse)
            assert int(stacked.epochs_since_update[s]) == int(single.epochs_since_update)
            _close(stacked.best[0][s], single.best[0])
    assert stacked.epochs_since_update.tolist() == [0, 3, 2]
