"""Under bf16 autocast (``--trainer.precision bf16-mixed``) the output layers keep float32 resolution.

bf16 has 8 significant bits: a Q value near 1,000 rounded to bf16 moves in steps of 4, a predicted reward near
100 in steps of 0.5. Each test puts the output near such a value (a bias off the bf16 grid, small head weights)
and compares the autocast pass with a float32 pass of the same network: with the head in float32 they agree to
the hidden layers' rounding (about 1e-4 here); with a bf16 head they differ by up to half a bf16 step.
"""

import pytest
import torch

from mbpo_pl.nets.ensemble import GaussianEnsemble
from mbpo_pl.nets.sac import TanhGaussianActor, TwinQCritic


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)


def _set_head(weight: torch.Tensor, bias: torch.Tensor, bias_value: float) -> None:
    with torch.no_grad():
        weight.normal_(0.0, 1e-3)
        bias.fill_(bias_value)


@pytest.mark.parametrize("frozen", [False, True])
def test_critic_q_values_keep_float32_resolution_under_bf16(frozen):
    torch.manual_seed(0)
    critic = TwinQCritic(obs_dim=11, act_dim=3)
    head = critic.layers[-1]
    _set_head(head.weight, head.bias, 1000.37)  # bf16 neighbours: 1000 and 1004
    obs, action = torch.randn(64, 11), torch.rand(64, 3) * 2 - 1
    reference = critic(obs, action, frozen)
    with _bf16():
        q = critic(obs, action, frozen)
    assert q.dtype == torch.float32 and q.shape == (2, 64)
    assert (q - reference).abs().max() < 0.01, "the Q head was rounded to bf16"


def test_ensemble_predictions_keep_float32_resolution_under_bf16():
    torch.manual_seed(0)
    model = GaussianEnsemble(input_size=14, output_size=12, ensemble_size=3, hidden_size=32)
    _set_head(model.head.weight, model.head.bias, 100.37)  # bf16 neighbours: 100 and 100.5
    inputs = torch.randn(3, 64, 14)
    reference_mean, reference_logvar = model(inputs)
    members = torch.tensor([2, 0])
    reference_members = model.forward_members(inputs[:2], members)[0]
    with _bf16():
        mean, logvar = model(inputs)
        member_mean = model.forward_members(inputs[:2], members)[0]
    assert mean.dtype == logvar.dtype == member_mean.dtype == torch.float32
    assert (mean - reference_mean).abs().max() < 1e-3, "the ensemble head was rounded to bf16"
    assert (logvar - reference_logvar).abs().max() < 1e-3
    assert (member_mean - reference_members).abs().max() < 1e-3, "the rollout path's head was rounded to bf16"


def test_actor_mean_keeps_float32_resolution_under_bf16():
    torch.manual_seed(0)
    actor = TanhGaussianActor(obs_dim=11, act_dim=3)
    head = actor.net[-1]
    _set_head(head.weight, head.bias, 1.2345)  # bf16 step near 1 is 1/128
    obs = torch.randn(64, 11)
    reference = actor.distribution_params(obs)[0]
    with _bf16():
        mean = actor.distribution_params(obs)[0]
    assert mean.dtype == torch.float32
    assert (mean - reference).abs().max() < 1e-4, "the actor head was rounded to bf16"


def test_hidden_layers_still_run_in_bf16():
    """The fix keeps the fast path: the hidden matmuls still run in bf16 under autocast."""
    critic = TwinQCritic(obs_dim=4, act_dim=1)
    seen = []
    critic.layers[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with _bf16():
        critic(torch.randn(8, 4), torch.rand(8, 1))
    assert seen == [torch.bfloat16]


def _learnable(n: int = 3000):
    from mbpo_pl.dynamics import DynamicsModule

    g = torch.Generator().manual_seed(0)
    obs, action = torch.randn(n, 5, generator=g), torch.rand(n, 2, generator=g) * 2 - 1
    next_obs = obs + 0.3 * torch.tanh(obs @ torch.ones(5, 5)) + 0.2 * action[:, :1]
    return DynamicsModule.make_dataset(obs, action, obs[:, 0] - action.square().sum(-1), next_obs)


def test_model_training_in_one_autocast_region_sees_its_own_updates():
    """A whole training call in one bf16 autocast region with torch's cast cache on (its default; Lightning's plugins
    turn it off): every update must drop that cache, or all later forwards (and the early stopping) read the first
    step's weights."""
    from mbpo_pl.dynamics import DynamicsModule

    inputs, targets = _learnable()
    fits = {}
    for name, region in (("fp32", torch.autocast("cpu", enabled=False)),
                         ("bf16", torch.autocast("cpu", dtype=torch.bfloat16))):  # fmt: skip
        torch.manual_seed(0)
        module = DynamicsModule(5, 2, hidden_size=64, patience=5)
        with region:
            fits[name] = module.fit_ensemble(inputs, targets)
    assert int(fits["bf16"]["epochs"]) == int(fits["fp32"]["epochs"])  # 159 against 10 with stale weights
    torch.testing.assert_close(fits["bf16"]["holdout_mse"], fits["fp32"]["holdout_mse"], rtol=0.02, atol=1e-3)


def test_sac_updates_in_one_autocast_region_see_each_others_updates():
    """The G SAC updates of an env step in one autocast region with torch's cast cache on: each must use the weights
    the one before left, as G updates in regions of their own do."""
    from tensordict import TensorDict

    from mbpo_pl.sac import SACModule

    g = torch.Generator().manual_seed(0)
    flags = torch.rand(4, 32, 1, generator=g) < 0.1
    batches = TensorDict({
        "observation": torch.randn(4, 32, 3, generator=g), "action": torch.rand(4, 32, 2, generator=g) * 2 - 1,
        "next": {"observation": torch.randn(4, 32, 3, generator=g), "reward": torch.randn(4, 32, 1, generator=g),
                 "terminated": flags},
    }, batch_size=[4, 32])  # fmt: skip
    results = []
    for one_region in (True, False):
        torch.manual_seed(0)
        sac = SACModule(3, 2, hidden_size=16, target_entropy=-1.0)
        if one_region:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                sac.update_many(batches)
        else:
            for batch in batches.unbind(0):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    sac.update(batch)
        results.append(sac.state_dict())
    for name, value in results[0].items():
        assert torch.equal(value, results[1][name]), name
