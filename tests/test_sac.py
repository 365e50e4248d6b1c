import copy
import math

import torch
from tensordict import TensorDict

from mbpo_pl.losses import alpha_loss, polyak_update, soft_q_target
from mbpo_pl.nets.sac import TanhGaussianActor, TwinQCritic, tanh_log_prob_correction
from mbpo_pl.sac import SACModule


def test_soft_q_target_on_a_hand_made_batch():
    reward = torch.tensor([1.0, 2.0, -1.0])
    terminated = torch.tensor([False, True, False])
    next_q = torch.tensor([[10.0, 5.0, 3.0], [8.0, 7.0, 4.0]])  # min over critics: 8, 5, 3
    next_log_prob = torch.tensor([-1.0, 0.5, 2.0])
    y = soft_q_target(reward, terminated, next_q, next_log_prob, alpha=torch.tensor(0.2), gamma=0.9)
    expected = torch.tensor([1.0 + 0.9 * (8.0 + 0.2), 2.0, -1.0 + 0.9 * (3.0 - 0.4)])
    torch.testing.assert_close(y, expected)


def test_polyak_update():
    target, online = [torch.zeros(3), torch.ones(2)], [torch.ones(3) * 2, torch.zeros(2)]
    polyak_update(target, online, tau=0.1)
    torch.testing.assert_close(target[0], torch.full((3,), 0.2))
    torch.testing.assert_close(target[1], torch.full((2,), 0.9))


def test_alpha_loss_gradient_sign():
    log_alpha = torch.zeros((), requires_grad=True)
    # Entropy below target (log_prob high) -> alpha must grow -> gradient negative.
    alpha_loss(log_alpha, torch.tensor([5.0, 5.0]), target_entropy=-1.0).backward()
    assert log_alpha.grad < 0


def test_tanh_log_prob_matches_numerical_change_of_variables():
    torch.manual_seed(0)
    actor = TanhGaussianActor(4, 2, hidden_size=16)
    obs = torch.randn(64, 4)
    torch.manual_seed(1)
    action, log_prob = actor(obs)
    # Recompute: u = atanh(a); log p(a) = log N(u) - sum log |d tanh(u)/du|, the derivative by finite differences.
    mean, log_std = actor.distribution_params(obs)
    u = torch.atanh(action.double().clamp(-1 + 1e-12, 1 - 1e-12))
    h = 1e-6
    derivative = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    gauss = torch.distributions.Normal(mean.double(), log_std.double().exp()).log_prob(u).sum(-1)
    expected = gauss - derivative.log().sum(-1)
    torch.testing.assert_close(log_prob.double(), expected, atol=2e-3, rtol=1e-4)
    assert action.abs().max() < 1


def test_tanh_correction_is_stable_for_large_inputs():
    u = torch.tensor([[30.0, -30.0]])
    value = tanh_log_prob_correction(u)
    assert torch.isfinite(value).all()
    torch.testing.assert_close(value, torch.tensor([2 * (2 * math.log(2) - 60.0)]))


def test_twin_critic_members_are_independent_networks():
    critic = TwinQCritic(3, 2, hidden_size=8)
    q = critic(torch.randn(5, 3), torch.randn(5, 2))
    assert q.shape == (2, 5)
    assert not torch.allclose(q[0], q[1])


def _batch(n=32, obs_dim=3, act_dim=2):
    return TensorDict(
        {
            "observation": torch.randn(n, obs_dim),
            "action": torch.rand(n, act_dim) * 2 - 1,
            "next": {
                "observation": torch.randn(n, obs_dim),
                "reward": torch.randn(n, 1),
                "terminated": torch.rand(n, 1) < 0.1,
            },
        },
        batch_size=[n],
    )


def test_sac_update_moves_every_network_and_the_targets_by_polyak():
    torch.manual_seed(0)
    sac = SACModule(3, 2, hidden_size=16, tau=0.5)
    actor0 = [p.detach().clone() for p in sac.actor.parameters()]
    target0 = [p.detach().clone() for p in sac.critic_target.parameters()]
    alpha0 = sac.log_alpha.detach().clone()
    stats = sac.update(_batch())
    assert all(torch.isfinite(v).all() for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(actor0, sac.actor.parameters()))
    assert not torch.equal(alpha0, sac.log_alpha)
    for t0, t1, online in zip(target0, sac.critic_target.parameters(), sac.critic.parameters()):
        torch.testing.assert_close(t1, 0.5 * t0 + 0.5 * online.detach())


def test_target_entropy_default_is_minus_action_dim():
    assert SACModule(3, 4).target_entropy == -4.0
    assert SACModule(3, 4, target_entropy=-0.05).target_entropy == -0.05


def test_update_equals_three_separate_steps_from_the_same_parameters():
    """Critic, actor and temperature each take their own Adam step on their own loss, all computed from the
    pre-update parameters (the official code's simultaneous update); the module's single backward of the summed
    losses through one (fused) optimizer must give the same parameters."""
    torch.manual_seed(0)
    sac = SACModule(3, 2, hidden_size=16, tau=0.1)
    ref = copy.deepcopy(sac)
    batch = _batch()
    critic_opt, actor_opt, alpha_opt = (torch.optim.Adam(params, lr=ref.lr) for params in
                                        (ref.critic.parameters(), ref.actor.parameters(), [ref.log_alpha]))  # fmt: skip

    torch.manual_seed(1)
    sac.update(batch)

    torch.manual_seed(1)
    obs, action, next_obs = batch["observation"], batch["action"], batch["next", "observation"]
    alpha = ref.log_alpha.exp().detach()
    with torch.no_grad():
        next_action, next_log_prob = ref.actor(next_obs)
        y = soft_q_target(batch["next", "reward"].squeeze(-1), batch["next", "terminated"].squeeze(-1),
                          ref.critic_target(next_obs, next_action), next_log_prob, alpha, ref.gamma)  # fmt: skip
    critic_loss = 0.5 * (ref.critic(obs, action) - y).square().mean(dim=1).sum()
    new_action, log_prob = ref.actor(obs)
    actor_loss = (alpha * log_prob - ref.critic(obs, new_action).min(dim=0).values).mean()
    temperature_loss = alpha_loss(ref.log_alpha, log_prob, ref.target_entropy)
    critic_grads = torch.autograd.grad(critic_loss, list(ref.critic.parameters()))
    actor_grads = torch.autograd.grad(actor_loss, list(ref.actor.parameters()))
    (alpha_grad,) = torch.autograd.grad(temperature_loss, [ref.log_alpha])
    for optimizer, module_params, grads in ((critic_opt, list(ref.critic.parameters()), critic_grads),
                                            (actor_opt, list(ref.actor.parameters()), actor_grads),
                                            (alpha_opt, [ref.log_alpha], [alpha_grad])):  # fmt: skip
        for param, grad in zip(module_params, grads):
            param.grad = grad
        optimizer.step()
    polyak_update(ref.critic_target.parameters(), ref.critic.parameters(), ref.tau)

    for (name, got), want in zip(sac.named_parameters(), ref.parameters()):
        torch.testing.assert_close(got, want, msg=name)
    for got, want in zip(sac.critic_target.parameters(), ref.critic_target.parameters()):
        torch.testing.assert_close(got, want)


def test_frozen_critic_pass_gives_action_gradients_only():
    critic = TwinQCritic(3, 2, hidden_size=8)
    action = torch.randn(4, 2, requires_grad=True)
    critic(torch.randn(4, 3), action, frozen=True).sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_update_many_is_g_updates_in_a_row_with_summed_statistics():
    torch.manual_seed(0)
    sac = SACModule(3, 2, hidden_size=16)
    ref = copy.deepcopy(sac)
    batches = torch.stack([_batch() for _ in range(3)])  # [G=3, 32]
    torch.manual_seed(1)
    sums = sac.update_many(batches)
    torch.manual_seed(1)
    stats = [ref.update(minibatch) for minibatch in batches.unbind(0)]
    for key, total in sums.items():
        torch.testing.assert_close(total, sum(s[key] for s in stats), msg=key)
    for (name, got), want in zip(sac.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(got, want, msg=name)
