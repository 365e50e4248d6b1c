"""A population of SAC agents in one module: each seed trains exactly as it would alone."""

import pytest
import torch
from tensordict import TensorDict

from mbpo_pl.cli import main
from mbpo_pl.manual_optimization import own_optimizers
from mbpo_pl.sac import SACModule

OBS, ACT = 3, 2


def _batches(steps: int, seeds: tuple[int, ...], n: int = 32, generator_seed: int = 0) -> TensorDict:
    """``[steps, S, n]`` transitions (``seeds``: the data seed of each population member)."""
    members = []
    for seed in seeds:
        g = torch.Generator().manual_seed(generator_seed * 1000 + seed)
        flags = torch.rand(steps, n, 1, generator=g) < 0.1
        members.append(TensorDict({
            "observation": torch.randn(steps, n, OBS, generator=g),
            "action": torch.rand(steps, n, ACT, generator=g) * 2 - 1,
            "next": {"observation": torch.randn(steps, n, OBS, generator=g),
                     "reward": torch.randn(steps, n, 1, generator=g), "terminated": flags},
        }, batch_size=[steps, n]))  # fmt: skip
    return torch.stack(members, dim=1)


def _agent(population: int | None) -> SACModule:
    torch.manual_seed(0)
    return SACModule(OBS, ACT, hidden_size=16, target_entropy=-1.0, population=population)


def _train(batches: TensorDict, population: int | None) -> tuple[SACModule, list[dict]]:
    sac = _agent(population)
    torch.manual_seed(1)  # the policy noise
    return sac, [sac.update(batch) for batch in batches.unbind(0)]


def test_a_population_of_one_is_the_single_agent():
    # initialised with the same draws in the same order
    single, population = _agent(None), _agent(1)
    for linear, batched in zip(single.actor.net[::2], population.actor.net[::2]):
        assert torch.equal(batched.weight[0], linear.weight.T) and torch.equal(batched.bias[0, 0], linear.bias)
    batches = _batches(3, (0,))
    single, single_stats = _train(batches[:, 0], None)
    population, population_stats = _train(batches, 1)
    # three updates on the same data and noise: the same up to the batched kernels' rounding
    for name, value in single.state_dict().items():
        batched = population.state_dict()[name]
        if name.startswith("actor.net") and name.endswith("weight"):
            value = value.T
        torch.testing.assert_close(batched.reshape(value.shape), value, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(single_stats, population_stats):
        for key in a:
            torch.testing.assert_close(b[key].reshape(()), a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_population_seeds_are_independent_bit_for_bit():
    base, changed = _batches(4, (0, 1, 2)), _batches(4, (0, 1, 2))
    changed[:, 2] = _batches(4, (0, 1, 2), generator_seed=7)[:, 2]  # seed 2 sees other data
    a, a_stats = _train(base, 3)
    b, b_stats = _train(changed, 3)
    for name, value in a.state_dict().items():
        other = b.state_dict()[name]
        assert torch.equal(value[:2], other[:2]), name  # seeds 0 and 1: unchanged to the last bit
    assert not torch.equal(a.critic.layers[0].weight[2], b.critic.layers[0].weight[2])
    (adam_a,), (adam_b,) = own_optimizers(a), own_optimizers(b)  # the optimizer each module stepped
    params_a, params_b = (adam.param_groups[0]["params"] for adam in (adam_a, adam_b))
    assert len(params_a) == 13  # critic layers, actor layers, temperature
    for pa, pb in zip(params_a, params_b):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(adam_a.state[pa][key][:2], adam_b.state[pb][key][:2]), key
    for sa, sb in zip(a_stats, b_stats):
        for key in sa:
            assert torch.equal(sa[key][:2], sb[key][:2]), key
            assert sa[key].shape == (3,)


def test_population_statistics_and_temperatures_are_per_seed():
    sac, stats = _train(_batches(2, (0, 1)), 2)
    assert sac.log_alpha.shape == (2,) and sac.critic.layers[0].weight.shape[:2] == (2, 2)
    assert not torch.equal(sac.log_alpha[0], sac.log_alpha[1])  # each temperature follows its own seed's entropy


def test_a_population_set_on_one_child_alone_is_refused(logdir):
    from pathlib import Path

    tiny = str(Path(__file__).parent / "conf" / "tiny.yaml")
    with pytest.raises(ValueError, match="model.sac.population=2 but the dynamics model is for None seed"):
        main(["--config", tiny, "--model.sac.population", "2"], run=False)


# ---------------------------------------------------------------- dynamics ensembles


def _transitions(seed: int, n: int = 400, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs [n, O+A], targets [n, 1+O])`` of a smooth system, its noise drawn from ``seed``."""
    from mbpo_pl.dynamics import DynamicsModule

    g = torch.Generator().manual_seed(seed)
    obs, action = torch.randn(n, OBS, generator=g), torch.rand(n, ACT, generator=g) * 2 - 1
    next_obs = (
        obs
        + 0.1 * torch.tanh(obs @ torch.ones(OBS, OBS))
        + 0.2 * action[:, :1]
        + noise * torch.randn(n, OBS, generator=g)
    )
    reward = obs[:, 0] - action.square().sum(-1)
    return DynamicsModule.make_dataset(obs, action, reward, next_obs)


def _dynamics(population: int | None, **kwargs):
    from mbpo_pl.dynamics import DynamicsModule
    from mbpo_pl.population_dynamics import PopulationDynamicsModule

    settings = dict(ensemble_size=3, num_elites=2, hidden_size=16, num_hidden_layers=2,
                    weight_decay=[2.5e-5, 5e-5, 1e-4], batch_size=64, patience=2, max_epochs_per_train=25,
                    **kwargs)  # fmt: skip
    torch.manual_seed(0)
    if population is None:
        return DynamicsModule(OBS, ACT, **settings)
    return PopulationDynamicsModule(OBS, ACT, population, **settings)


def _fit_population(module, data: list, seeds: list[int], calls: int = 2):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    inputs, targets = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])
    return [module.fit_ensemble(inputs, targets, generators) for _ in range(calls)]


def test_a_dynamics_population_of_one_trains_as_the_single_ensemble():
    single, population = _dynamics(None), _dynamics(1)
    population.model.seeds[0].load_state_dict(single.model.state_dict())  # the same initial weights
    inputs, targets = _transitions(0)
    torch.manual_seed(5)
    single_stats = [single.fit_ensemble(inputs, targets) for _ in range(2)]  # global stream seeded 5
    population_stats = _fit_population(population, [(inputs, targets)], [5])  # its generator seeded 5
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(population.model.seeds[0].state_dict()[name], value, rtol=1e-4, atol=1e-5)
    assert torch.equal(population.elites[0], single.elites)
    for a, b in zip(single_stats, population_stats):
        assert int(b["epochs"][0]) == int(a["epochs"])
        torch.testing.assert_close(b["holdout_mse"][0], a["holdout_mse"], rtol=1e-4, atol=1e-6)


def test_dynamics_seeds_are_independent_bit_for_bit_and_frozen_when_they_stop():
    data = [_transitions(s) for s in range(3)]
    other = list(data)
    other[2] = _transitions(11, noise=1.0)  # seed 2: other data, much noisier: it stops at another epoch
    a, b = _dynamics(3), _dynamics(3)
    a_stats, b_stats = _fit_population(a, data, [0, 1, 2]), _fit_population(b, other, [0, 1, 2])
    assert any(int(x["epochs"][2]) != int(y["epochs"][2]) for x, y in zip(a_stats, b_stats))
    for s in (0, 1):  # two training calls later, seeds 0 and 1 are untouched by what seed 2 saw and did
        for name, value in a.model.seeds[s].state_dict().items():
            assert torch.equal(value, b.model.seeds[s].state_dict()[name]), name
        assert torch.equal(a.elites[s], b.elites[s])
        for x, y in zip(a_stats, b_stats):
            for key in ("holdout_mse", "train_loss", "epochs"):
                assert torch.equal(x[key][s], y[key][s]), key
    (adam_a,), (adam_b,) = own_optimizers(a), own_optimizers(b)
    for s in (0, 1):
        for pa, pb in zip(a.model.seeds[s].parameters(), b.model.seeds[s].parameters()):
            for key in ("step", "exp_avg", "exp_avg_sq"):  # the frozen epochs changed no Adam state either
                assert torch.equal(adam_a.state[pa][key], adam_b.state[pb][key]), key
    # and each seed trained as that seed alone (a population of one) does, though in the second call seed 0 stops
    # 5 epochs before seed 1 (frozen meanwhile) and seed 2 at yet another epoch
    assert [x["epochs"].tolist() for x in a_stats][1][:2] == [20, 25]
    for s in (0, 1):
        alone = _dynamics(1)
        alone.model.seeds[0].load_state_dict(_dynamics(3).model.seeds[s].state_dict())
        _fit_population(alone, [data[s]], [s])
        for name, value in alone.model.seeds[0].state_dict().items():
            torch.testing.assert_close(a.model.seeds[s].state_dict()[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_policy_noise_and_rollouts_draw_from_the_generators_given():
    from mbpo_pl.nets.ensemble import GaussianEnsemble
    from mbpo_pl.nets.sac import TanhGaussianActor
    from mbpo_pl.rollout import branched_rollout

    actor = TanhGaussianActor(OBS, ACT, 16, population=(3,))
    obs = torch.randn(3, 5, OBS)

    def sampled(seeds):
        torch.manual_seed(len(seeds) * 100 + sum(seeds))  # the global stream differs every call: not used
        return actor(obs, [torch.Generator().manual_seed(s) for s in seeds])[0]

    a, b = sampled([0, 1, 2]), sampled([0, 1, 9])
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2], b[2])  # seed 2's stream changed, the others' not
    ensemble = GaussianEnsemble(OBS + ACT, 1 + OBS, ensemble_size=3, hidden_size=8)
    single = TanhGaussianActor(OBS, ACT, 16)

    def rollout():
        torch.manual_seed(int(torch.randint(1000, ())))
        start = torch.randn(50, OBS, generator=torch.Generator().manual_seed(4))
        return branched_rollout(ensemble, single, torch.arange(2), lambda o: o[:, 0] > 3, start, 3,
                                torch.Generator().manual_seed(5))  # fmt: skip

    first, second = rollout(), rollout()
    for key in ("observation", "action", ("next", "observation"), ("next", "reward")):
        assert torch.equal(first.transitions[key], second.transitions[key])


# ---------------------------------------------------------------- replay buffers


def _real(seed: int, n: int) -> TensorDict:
    from mbpo_pl.rollout import make_transitions

    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS, generator=g)
    flags = torch.zeros(n, dtype=torch.bool)
    return make_transitions(obs, torch.rand(n, ACT, generator=g), torch.randn(n, generator=g), obs + 1, flags, flags)


def test_population_replay_gives_each_seed_its_own_buffers_and_draws():
    from mbpo_pl.replay import PopulationReplay

    def filled(data_seeds):
        replay = PopulationReplay(500, torch.device("cpu"), seeds=[0, 1, 2])
        replay.add_real(torch.stack([_real(s, 200) for s in data_seeds]))
        for seed_replay, s in zip(replay.seeds, data_seeds):
            seed_replay.resize_model(300)
            seed_replay.add_model(_real(100 + s, 100 + 50 * s))  # every seed its own amount of model data
        return replay

    a, b = filled([0, 1, 2]), filled([0, 1, 7])  # seed 2 holds other data
    assert a.real_transitions().shape == (3, 200)
    batches_a, batches_b = a.sample_batches(4, 32, 8), b.sample_batches(4, 32, 8)
    assert batches_a.shape == (4, 3, 32)
    assert torch.equal(batches_a["observation"][:, :2], batches_b["observation"][:, :2])
    assert not torch.equal(batches_a["observation"][:, 2], batches_b["observation"][:, 2])
    starts = a.sample_start_states(10)
    assert starts.shape == (3, 10, OBS)


def test_population_rollouts_run_each_seed_through_its_own_model_and_policy():
    from mbpo_pl.nets.population import EnsemblePopulation
    from mbpo_pl.nets.sac import TanhGaussianActor
    from mbpo_pl.rollout import branched_rollout, population_rollouts

    torch.manual_seed(0)
    ensembles = EnsemblePopulation(3, OBS + ACT, 1 + OBS, ensemble_size=3, hidden_size=8)
    actor = TanhGaussianActor(OBS, ACT, 16, population=(3,))
    elites = torch.tensor([[0, 1], [2, 0], [1, 2]])
    start = torch.randn(3, 40, OBS)

    def done(next_obs):
        return next_obs[..., 0].abs() > 2

    def rollouts(seed_two_start):
        starts = start.clone()
        starts[2] = seed_two_start
        return population_rollouts(ensembles, actor, elites, done, starts, 4,
                                   [torch.Generator().manual_seed(s) for s in range(3)])  # fmt: skip

    a, b = rollouts(start[2]), rollouts(torch.randn(40, OBS) * 3)  # seed 2 starts elsewhere
    for s in (0, 1):
        for key in ("observation", "action", ("next", "observation"), ("next", "reward")):
            assert torch.equal(a[s].transitions[key], b[s].transitions[key])
    # seed 1 as a single ensemble and a single actor holding its weights
    single_actor = TanhGaussianActor(OBS, ACT, 16)
    with torch.no_grad():
        for linear, batched in zip(single_actor.net[::2], actor.net[::2]):
            linear.weight.copy_(batched.weight[1].T)
            linear.bias.copy_(batched.bias[1, 0])
    alone = branched_rollout(ensembles.seeds[1], single_actor, elites[1], done, start[1], 4,
                             torch.Generator().manual_seed(1))  # fmt: skip
    assert alone.steps_alive.tolist() == a[1].steps_alive.tolist()
    torch.testing.assert_close(alone.transitions["next", "observation"], a[1].transitions["next", "observation"])
