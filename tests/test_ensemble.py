import copy
import math

import pytest
import torch

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.nets.ensemble import EnsembleLinear, GaussianEnsemble, gaussian_nll, soft_clamp_logvar


def test_ensemble_linear_is_one_affine_map_per_member():
    layer = EnsembleLinear(3, 4, 5)
    x = torch.randn(3, 7, 4)
    out = layer(x)
    for e in range(3):
        torch.testing.assert_close(out[e], x[e] @ layer.weight[e] + layer.bias[e])
    members = torch.tensor([2, 0])
    torch.testing.assert_close(layer.forward_members(x[[2, 0]], members), out[[2, 0]])


def test_forward_members_matches_full_forward():
    model = GaussianEnsemble(6, 4, ensemble_size=5, hidden_size=16)
    model.normalizer.fit(torch.randn(50, 6) * 3 + 1)
    x = torch.randn(5, 9, 6)
    mean, logvar = model(x)
    members = torch.tensor([4, 1, 3])
    sub_mean, sub_logvar = model.forward_members(x[members], members)
    torch.testing.assert_close(sub_mean, mean[members])
    torch.testing.assert_close(sub_logvar, logvar[members])


def test_gaussian_nll_matches_closed_form():
    mean, logvar, target = torch.randn(3, 10, 4), torch.randn(3, 10, 4), torch.randn(3, 10, 4)
    nll = gaussian_nll(mean, logvar, target)
    # Closed form: -log N(y; mu, sigma^2) per element = 0.5 * (log 2pi + logvar + (y - mu)^2 / sigma^2)
    exact = -torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(target)
    expected = (2 * exact - math.log(2 * math.pi)).mean(dim=(1, 2))
    torch.testing.assert_close(nll, expected)


def test_soft_clamp_stays_within_bounds_and_is_near_identity_inside():
    lo, hi = torch.tensor(-10.0), torch.tensor(0.5)
    values = torch.tensor([-100.0, -5.0, 0.0, 100.0])
    clamped = soft_clamp_logvar(values, lo, hi)
    assert (clamped > lo - 1e-3).all() and (clamped < hi + 1e-3).all()  # soft bounds
    assert clamped[0] < -9.9 and clamped[3] > 0.49
    assert abs(clamped[1] - (-5.0)) < 0.01


def test_normalizer_is_a_buffer_and_standardises():
    model = GaussianEnsemble(3, 2, ensemble_size=2, hidden_size=8)
    data = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.0]) + 2.0
    model.normalizer.fit(data)
    z = model.normalizer(data)
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    assert model.normalizer.std[2] == 1.0  # constant feature keeps std 1
    assert {"normalizer.mean", "normalizer.std"} <= set(model.state_dict())


def test_optimizer_weight_decay_equals_official_l2_term():
    """Adam's per-layer ``weight_decay`` takes the same step as adding ``sum_l c_l ||W_l||^2 / 2`` to the loss."""
    coeffs = [0.1, 0.2, 0.3]
    torch.manual_seed(0)
    module = DynamicsModule(3, 1, ensemble_size=2, num_elites=1, hidden_size=8, num_hidden_layers=2,
                            weight_decay=coeffs)  # fmt: skip
    reference = copy.deepcopy(module.model)
    inputs, targets = torch.randn(2, 16, 4), torch.randn(2, 16, 4)

    optimizer = module.configure_optimizers()[0]
    loss, _ = module.loss(inputs, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=module.lr)
    mean, logvar = reference(inputs)
    l2 = sum(c * (layer.weight**2).sum() / 2 for c, layer in zip(coeffs, reference.layers))
    ref_loss = gaussian_nll(mean, logvar, targets).sum() + module.logvar_bound_weight * reference.logvar_bound_loss()
    ref_optimizer.zero_grad()
    (ref_loss + l2).backward()
    ref_optimizer.step()
    for (name, got), want in zip(module.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, msg=name)
    # Biases and the log-variance bounds are not decayed.
    assert [g["weight_decay"] for g in optimizer.param_groups] == [*coeffs, 0.0]


def _linear_data(n=600, obs_dim=3, act_dim=1):
    obs, act = torch.randn(n, obs_dim), torch.randn(n, act_dim)
    next_obs = obs + 0.1 * act + 0.01 * torch.randn(n, obs_dim)
    reward = obs.sum(-1)
    return DynamicsModule.make_dataset(obs, act, reward, next_obs)


def test_fit_restores_each_members_best_holdout_weights_and_picks_elites(monkeypatch):
    torch.manual_seed(0)
    module = DynamicsModule(
        3,
        1,
        ensemble_size=4,
        num_elites=2,
        hidden_size=32,
        num_hidden_layers=2,
        weight_decay=[0.0, 0.0, 0.0],
        lr=3e-2,
        batch_size=32,
        patience=3,
    )
    inputs, targets = _linear_data()
    seen = []
    original = DynamicsModule.holdout_mse

    def spy(self, x, y):
        mse = original(self, x, y)
        seen.append(mse.clone())
        return mse

    monkeypatch.setattr(DynamicsModule, "holdout_mse", spy)
    stats = module.fit_ensemble(inputs, targets)
    per_epoch, final = torch.stack(seen[:-1]), seen[-1]
    assert stats["epochs"] == len(per_epoch)
    # Replay the 1% rule: each member's restored weights must give the MSE of its last improving epoch.
    best = torch.full((4,), float("inf"))
    for mse in per_epoch:
        improved = best.isinf() | ((best - mse) / best > 0.01)
        best = torch.where(improved, mse, best)
    torch.testing.assert_close(final, best)
    # The run must have had epochs worse than the restored best (otherwise this test checks nothing).
    assert (per_epoch[-1] > best * 1.0001).any()
    assert set(module.elites.tolist()) == set(final.argsort()[:2].tolist())


def test_fit_learns_the_dynamics_and_warm_starts():
    torch.manual_seed(1)
    module = DynamicsModule(
        3, 1, ensemble_size=3, num_elites=2, hidden_size=64, num_hidden_layers=2, weight_decay=[0.0, 0.0, 0.0]
    )
    inputs, targets = _linear_data(2000)
    first = module.fit_ensemble(inputs, targets)
    assert first["holdout_mse"].max() < 0.05 * targets.var(0).mean()
    weights = module.model.head.weight.detach().clone()
    second = module.fit_ensemble(inputs, targets)
    # Warm start: the second call begins from trained weights, so it finishes at least as well.
    assert second["holdout_mse"].min() <= first["holdout_mse"].min() * 1.5
    assert not torch.equal(weights, module.model.head.weight)


def test_holdout_is_capped():
    module = DynamicsModule(
        3,
        1,
        ensemble_size=2,
        num_elites=1,
        hidden_size=8,
        num_hidden_layers=1,
        weight_decay=[0.0, 0.0],
        max_holdout=50,
        max_epochs_per_train=1,
    )
    stats = module.fit_ensemble(*_linear_data(1000))
    assert stats["num_holdout"] == 50 and stats["num_train"] == 950


def test_bad_dynamics_settings_are_refused():
    with pytest.raises(ValueError, match="num_elites"):
        DynamicsModule(3, 1, ensemble_size=3, num_elites=5)
    with pytest.raises(ValueError, match="weight_decay needs 5"):
        DynamicsModule(3, 1, weight_decay=[1e-4])


def test_split_holdout_is_a_random_partition_capped():
    from mbpo_pl.holdout import split_holdout

    inputs = torch.arange(100, dtype=torch.float32)[:, None]
    train_in, train_tg, hold_in, hold_tg = split_holdout(inputs, inputs + 0.5, 0.2, 15)
    assert hold_in.shape[0] == 15 and train_in.shape[0] == 85  # 20 % capped at 15
    together = torch.cat([train_in, hold_in]).flatten().sort().values
    torch.testing.assert_close(together, inputs.flatten())  # every row exactly once
    torch.testing.assert_close(train_tg, train_in + 0.5)  # targets follow their inputs
    assert split_holdout(inputs[:2], inputs[:2], 0.2, 5000)[2].shape[0] == 1  # at least one held out
    with pytest.raises(ValueError, match="at least 2 transitions"):
        split_holdout(inputs[:1], inputs[:1], 0.2, 5000)


def test_improved_members_needs_more_than_the_relative_threshold():
    from mbpo_pl.holdout import improved_members

    best = torch.tensor([float("inf"), 1.0, 1.0, 1.0])
    mse = torch.tensor([5.0, 0.985, 0.995, 1.2])
    assert improved_members(best, mse, 0.01).tolist() == [True, True, False, False]


def test_best_members_keeps_each_members_best_weights_and_stops_after_patience():
    from mbpo_pl.holdout import BestMembers

    weight = torch.zeros(2, 3)  # 2 members
    best = BestMembers([weight], patience=1, threshold=0.01)
    assert best.update(torch.tensor([1.0, 1.0])) is False  # first epoch: both members improve
    weight.copy_(torch.ones(2, 3))
    assert best.update(torch.tensor([0.5, 0.999])) is False  # member 0 improves, member 1 only by 0.1 %
    weight.copy_(torch.full((2, 3), 2.0))
    assert best.update(torch.tensor([0.6, 0.5])) is False  # member 1 improves: the counter restarts
    assert best.update(torch.tensor([0.6, 0.6])) is False  # one epoch without improvement: tolerated
    assert best.update(torch.tensor([0.6, 0.6])) is True  # the second one exceeds patience=1
    best.restore()
    assert weight[0].tolist() == [1.0] * 3 and weight[1].tolist() == [2.0] * 3
    assert best.best_mse.tolist() == [0.5, 0.5]
