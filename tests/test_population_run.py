"""Several seeds in one process (``--seeds``): a run folder per seed, independence bit for bit, exact resume, a
population of one as the one-agent run, the refusals, and the tools on a seed's folder."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from tests_support import tiny_config_with_checkpoints

from mbpo_pl.cli import main, run_cli
from mbpo_pl.errors import NonFiniteError
from mbpo_pl.plot import plot_runs, seeds_band
from mbpo_pl.policy import load_policy
from mbpo_pl.population import seed_state_dict
from mbpo_pl.report import load_scalars, print_run
from mbpo_pl.run_curves import export, load_runs
from mbpo_pl.run_folders import read_agent_checkpoint

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def _fit(save_dir, *extra, total=300):
    return main(["fit", "--config", TINY, "--trainer.logger.init_args.save_dir", str(save_dir),
                 "--loop.total_env_steps", str(total), *extra])  # fmt: skip


def _run_dir(save_dir) -> Path:
    return Path(save_dir) / "tiny" / "version_0"


def _seed_scalars(save_dir, seed):
    """Every scalar a seed logged but the timings (``time/``: wall clock)."""
    scalars = load_scalars(_run_dir(save_dir) / f"seed_{seed}")
    return {tag: values for tag, values in scalars.items() if not tag.startswith("time/")}


def _seed_params(cli, index):
    """Seed ``index``'s slice of every population tensor (its own ensemble's tensors as they are)."""
    params = {}
    for name, value in cli.model.state_dict().items():
        if name.startswith("dynamics.model.seeds."):
            if name.startswith(f"dynamics.model.seeds.{index}."):
                params[name.split(".", 4)[-1]] = value
        else:
            params[name] = value[index]
    return params


def test_each_seed_gets_a_complete_run_folder(tmp_path):
    cli = _fit(tmp_path, "--seeds", "[0,1,2]")
    run = _run_dir(tmp_path)
    returns = []
    for seed in (0, 1, 2):
        folder = run / f"seed_{seed}"
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["seed_everything"] == seed and config["seeds"] is None  # the one-agent run it trains as
        assert (folder / "provenance.yaml").is_file()
        scalars = load_scalars(folder)
        assert [step for step, _ in scalars["eval/return"]] == [200, 300]
        assert {"train/critic_loss", "dynamics/holdout_mse_elites", "rollout/length"} <= scalars.keys()
        returns.append([value for _, value in scalars["eval/return"]])
    population = load_scalars(run)
    means = [value for _, value in population["eval/return"]]
    torch.testing.assert_close(torch.tensor(means), torch.tensor(returns).mean(0))
    assert [v for _, v in population["eval/return_seed_min"]] == pytest.approx(torch.tensor(returns).min(0).values)
    assert cli.model.run.last_eval_returns == pytest.approx([r[-1] for r in returns])
    assert not (run / "seed_0" / "checkpoints").exists()  # one checkpoint for the whole population
    band = seeds_band([load_scalars(run / f"seed_{seed}")["eval/return"] for seed in (0, 1, 2)])  # plot's view
    assert [step for step, _ in band] == [200, 300] and [stats.n for _, stats in band] == [3, 3]
    assert [stats.mean for _, stats in band] == pytest.approx(means)
    assert plot_runs([run], tmp_path / "population.png").is_file()


def test_a_seed_trains_bit_for_bit_as_if_the_others_were_not_there(tmp_path):
    """Seeds 0 and 1 beside seed 2 or beside seed 7: their losses, returns and weights agree to the last bit."""
    a = _fit(tmp_path / "a", "--seeds", "[0,1,2]")
    b = _fit(tmp_path / "b", "--seeds", "[0,1,7]")
    for index, seed in enumerate((0, 1)):
        scalars_a, scalars_b = _seed_scalars(tmp_path / "a", seed), _seed_scalars(tmp_path / "b", seed)
        assert scalars_a == scalars_b
        for name, value in _seed_params(a, index).items():
            assert torch.equal(value, _seed_params(b, index)[name]), name
    assert _seed_scalars(tmp_path / "a", 2) != _seed_scalars(tmp_path / "b", 7)


@pytest.fixture(scope="module")
def uninterrupted_population(tmp_path_factory):
    """``uninterrupted_population(storage)``: the CLI and save folder of the 300-step run of seeds 3 and 5 with that
    buffer storage (run once for all tests here)."""
    runs = {}

    def run(storage):
        if storage not in runs:
            folder = tmp_path_factory.mktemp(f"population_{storage}")
            runs[storage] = (_fit(folder, "--seeds", "[3,5]", "--data.buffer_storage", storage), folder)
        return runs[storage]

    return run


def _assert_same_population_run(resumed, resumed_dir, uninterrupted, uninterrupted_dir):
    for name, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for ours, theirs in zip(uninterrupted.datamodule.replay.seeds, resumed.datamodule.replay.seeds):
        for buffer in ("real", "model"):
            a, b = getattr(ours, buffer), getattr(theirs, buffer)
            assert len(a) == len(b)
            assert (a.storage[torch.arange(len(a))] == b.storage[torch.arange(len(b))]).all()
    for seed in (3, 5):  # the resumed halves log what the uninterrupted run logged, each metric once
        assert _seed_scalars(uninterrupted_dir, seed) == _seed_scalars(resumed_dir, seed)


@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_population_resume_continues_exactly(tmp_path, storage, uninterrupted_population):
    seeds = ["--seeds", "[3,5]", "--data.buffer_storage", storage]
    _fit(tmp_path / "b", *seeds, "--trainer.enable_checkpointing", "true", total=200)
    checkpoint = _run_dir(tmp_path / "b") / "checkpoints" / "epoch=1-step=100.ckpt"
    resumed = _fit(tmp_path / "b", *seeds, "--ckpt_path", str(checkpoint))
    _assert_same_population_run(resumed, tmp_path / "b", *uninterrupted_population(storage))


def test_population_stopped_by_sigterm_resumes_exactly_from_where_it_stopped(tmp_path, uninterrupted_population):
    seeds = ["--seeds", "[3,5]", "--data.buffer_storage", "memory"]
    with pytest.raises(SystemExit) as stopped:  # SIGTERM inside an epoch (callbacks.SigtermCheckpoint)
        run_cli(["fit", "--config", TINY, "--trainer.logger.init_args.save_dir", str(tmp_path / "b"),
                 "--loop.total_env_steps", "300", *seeds, "--trainer.enable_checkpointing", "true",
                 "--trainer.callbacks+=tests_support.SigtermAt", "--trainer.callbacks.at=231"])  # fmt: skip
    assert stopped.value.code == 143
    resumed = _fit(tmp_path / "b", *seeds, "--ckpt_path", str(_run_dir(tmp_path / "b")))  # its last.ckpt
    _assert_same_population_run(resumed, tmp_path / "b", *uninterrupted_population("memory"))


def test_a_population_of_one_is_the_one_agent_run(tmp_path):
    lone = main(["--config", TINY, "--seed_everything", "4"], run=False).model
    one = main(["--config", TINY, "--seed_everything", "0", "--seeds", "[4]"], run=False).model
    assert one.population == 1
    seed_view = seed_state_dict(one.state_dict(), 0, 1)  # the population's seed as a one-agent state dict
    assert seed_view.keys() == lone.state_dict().keys()
    for name, value in lone.state_dict().items():  # the same initial weights
        assert torch.equal(seed_view[name], value), name
    # the same training up to the batched kernels' rounding: the first model training and SAC epoch agree closely
    _fit(tmp_path / "lone", "--seed_everything", "4", total=150)
    _fit(tmp_path / "one", "--seeds", "[4]", total=150)
    lone_scalars = load_scalars(_run_dir(tmp_path / "lone"))
    one_scalars = _seed_scalars(tmp_path / "one", 4)
    for tag in ("dynamics/holdout_mse_elites", "dynamics/train_loss", "train/critic_loss", "train/q", "rollout/length"):
        torch.testing.assert_close(torch.tensor(one_scalars[tag]), torch.tensor(lone_scalars[tag]), rtol=1e-3,
                                   atol=1e-5, msg=tag)  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "[0,1,1]"], "repeats [1]"),
        (["--seeds", "[]"], "at least one seed"),
        (["--seeds", "[0,1,2]", "--trainer.devices", "2"], "3 seeds do not split evenly over 2 processes"),
        (["--seeds", "[0,1]", "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"], "leave --trainer.strategy"),
        (
            ["--seeds", "[0,1]", "--data.real_buffer_size", "100000000000", "--loop.total_env_steps", "100000000000"],
            "train at most 0 seeds per process",
        ),
        (["--seeds", "[0,1]", "--model.dynamics.learn_termination", "true"], "learn_termination"),
    ],
)
def test_what_a_population_cannot_train_is_refused_in_one_line(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", TINY, "--trainer.logger.init_args.save_dir", str(tmp_path), *extra])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1 and "Traceback" not in error


def test_tools_read_a_seed_folder_as_a_one_agent_run(tmp_path):
    config = tiny_config_with_checkpoints(tmp_path)  # save_last: the run folder's checkpoints/last.ckpt
    cli = main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path), "--seeds", "[0,1]",
                "--loop.total_env_steps", "200"])  # fmt: skip
    run = tmp_path / "InvertedPendulum-v5" / "version_0"
    policy = load_policy(run / "seed_1")
    obs = torch.randn(5, 4)
    expected = torch.tanh(cli.model.sac.actor.distribution_params(obs.expand(2, 5, 4))[0][1])
    torch.testing.assert_close(policy(obs), expected * policy.action_high)  # InvertedPendulum: [-3, 3]
    with pytest.raises(ValueError, match="give one seed's folder"):
        load_policy(run)
    export([run / "seed_1"], tmp_path / "results" / "x_seed1.csv")  # its curve, as any run's
    (exported,) = load_runs(tmp_path / "results")
    assert exported.meta["seed"] == 1 and exported.meta["population"] == [0, 1]
    assert exported.algorithm == "MBPO, 2 seeds in one process"  # its own rows beside the one-agent runs
    assert [step for step, _, _ in exported.curve] == [200]
    main(["test", "--config", config, "--ckpt_path", str(run / "seed_1"), "--eval.num_episodes", "1"])
    (record,) = (run / "seed_1" / "test").glob("last-env_steps=200.json")  # the seed's test, in its own folder
    assert json.loads(record.read_text())["env_steps"] == 200
    with pytest.raises(SystemExit) as exit_info:  # resuming one seed of a population is refused
        run_cli(["fit", "--config", config, "--ckpt_path", str(run / "seed_1")])
    assert exit_info.value.code == 2


def test_the_progress_bar_shows_the_seeds_mean_min_and_max_return():
    from types import SimpleNamespace

    from callbacks.progress import MBPOProgressBar
    from mbpo_pl.run_state import RunState

    run = RunState(seeds=[0, 1, 2], total_env_steps=1000, env_steps=500, last_eval_return=20.0,
                   last_eval_returns=[10.0, 20.0, 30.0])  # fmt: skip
    metrics = MBPOProgressBar().get_metrics(None, SimpleNamespace(run=run))
    assert metrics["eval"] == "20.0 [10.0, 30.0]" and metrics["env_steps"] == "500/1000" and "stopped" not in metrics
    run.stopped = {2: {}}
    assert MBPOProgressBar().get_metrics(None, SimpleNamespace(run=run))["stopped"] == "2"


def test_a_seed_whose_training_becomes_non_finite_stops_and_the_others_train_on_exactly(tmp_path, capsys):
    """Seed 2's SAC and seed 1's ensemble made NaN at env step 160: both stop (seed 2 at the epoch's SAC statistics,
    seed 1 at the next model training), each keeping its state at the stop, and seed 0 trains on bit for bit as in
    a clean run; the stops survive a resume."""
    config = tiny_config_with_checkpoints(tmp_path)
    seeds = ["--seeds", "[0,1,2]", "--loop.total_env_steps", "300"]
    clean = main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path / "clean"), *seeds])
    poison = ["--trainer.callbacks+=tests_support.PoisonSeeds", "--trainer.callbacks.at=160",
              "--trainer.callbacks.sac_seed=2", "--trainer.callbacks.dynamics_seed=1"]  # fmt: skip
    with pytest.warns(UserWarning, match=r"seed\(s\) 2 stopped at env step 200: SAC: .*non-finite") as warned:
        poisoned = main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path / "bad"),
                         *seeds, *poison])  # fmt: skip
    assert any("seed(s) 1 stopped at env step 200: the dynamics model" in str(w.message) for w in warned)
    clean_run, bad_run = (tmp_path / name / "InvertedPendulum-v5" / "version_0" for name in ("clean", "bad"))
    scalars = {tag: v for tag, v in load_scalars(bad_run / "seed_0").items() if not tag.startswith("time/")}
    assert scalars == {tag: v for tag, v in load_scalars(clean_run / "seed_0").items() if not tag.startswith("time/")}
    for name, value in _seed_params(clean, 0).items():
        assert torch.equal(value, _seed_params(poisoned, 0)[name]), name
    assert sorted(poisoned.model.run.stopped) == [1, 2]
    # Nothing logged after the stop: seed 2's statistics of the epoch it failed in are not written, and its stop
    # comes before the first evaluation; seed 1 stops after the evaluation at 200. The population's return is seed 0's.
    seed_1, seed_2 = (load_scalars(bad_run / f"seed_{seed}") for seed in (1, 2))
    assert [step for step, _ in seed_1["eval/return"]] == [200] and seed_1["train/critic_loss"][-1][0] == 200
    assert "eval/return" not in seed_2 and [step for step, _ in seed_2["train/critic_loss"]] == [150]
    assert seed_1["population/stopped"] == seed_2["population/stopped"] == [(200, 1.0)]
    capsys.readouterr()
    print_run(bad_run / "seed_2", 1000)
    print_run(bad_run, 1000)
    report = capsys.readouterr().out
    assert "stopped at env step 200: its training became non-finite" in report
    assert "seeds stopped by non-finite training: 2" in report
    population = load_scalars(bad_run)
    assert population["population/stopped_seeds"][-1] == (200, 2.0)
    assert population["eval/return"][-1][1] == pytest.approx(load_scalars(bad_run / "seed_0")["eval/return"][-1][1])
    checkpoint = torch.load(bad_run / "checkpoints" / "last.ckpt", weights_only=False)
    stopped = checkpoint["mbpo_population"]["stopped"]
    assert {index: record["env_steps"] for index, record in stopped.items()} == {1: 200, 2: 200}
    policy_weights = next(v for k, v in stopped[2]["state_dict"].items() if k.startswith("sac.actor."))
    assert policy_weights.isnan().all()  # seed 2's state at its stop: the poisoned actor
    assert torch.equal(read_agent_checkpoint(bad_run / "seed_1")[1]["state_dict"]["sac.actor.net.0.weight"],
                       stopped[1]["state_dict"]["sac.actor.net.0.weight"])  # fmt: skip
    resumed = main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path / "bad"),
                    "--seeds", "[0,1,2]", "--loop.total_env_steps", "400", "--ckpt_path", str(bad_run)])  # fmt: skip
    assert sorted(resumed.model.run.stopped) == [1, 2] and resumed.model.run.env_steps == 400
    assert max(step for step, _ in load_scalars(bad_run / "seed_0")["eval/return"]) == 400


def test_a_population_stops_when_no_seed_is_left_training(tmp_path):
    poison = ["--trainer.callbacks+=tests_support.PoisonSeeds", "--trainer.callbacks.at=160",
              "--trainer.callbacks.sac_seed=0", "--trainer.callbacks.dynamics_seed=1"]  # fmt: skip
    message = r"seed\(s\) 6 at env step 200: the dynamics .*non-finite. No seed of the population is left training"
    with pytest.raises(NonFiniteError, match=message):
        _fit(tmp_path, "--seeds", "[5,6]", *poison)
