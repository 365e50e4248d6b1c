"""Config tests: every shipped config instantiates, a tiny CLI fit runs end to end, bad configs fail clearly."""

from pathlib import Path

import pytest
import torch

from callbacks import Evaluation, MBPOLoop, MBPOProgressBar
from mbpo_pl.cli import main, share_cpu_threads

OVERLAYS = {"sac"}  # configs layered over an env config (conf/sac.yaml: the model-free baseline)
CONFIGS = sorted(c for c in Path(__file__).parents[1].joinpath("conf").glob("*.yaml") if c.stem not in OVERLAYS)
TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")

EXPECTED_DIMS = {
    "hopper": (11, 3),
    "walker2d": (17, 6),
    "halfcheetah": (17, 6),
    "ant": (27, 8),
    "humanoid": (45, 17),
    "inverted_pendulum": (4, 1),
    "inverted_double_pendulum": (9, 1),
    "pendulum": (3, 1),
}


def test_every_config_ships():
    assert {c.stem for c in CONFIGS} == set(EXPECTED_DIMS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates_with_linked_env_sizes(config, logdir):
    cli = main(["--config", str(config), "--trainer.logger.init_args.save_dir", str(logdir)], run=False)
    obs_dim, act_dim = EXPECTED_DIMS[config.stem]
    assert (cli.datamodule.obs_dim, cli.datamodule.act_dim) == (obs_dim, act_dim)
    assert cli.model.dynamics.model.input_size == obs_dim + act_dim
    assert cli.model.sac.actor.net[0].in_features == obs_dim
    assert any(isinstance(c, MBPOLoop) for c in cli.trainer.callbacks)
    assert any(isinstance(c, Evaluation) for c in cli.trainer.callbacks)
    assert any(isinstance(c, MBPOProgressBar) for c in cli.trainer.callbacks)


def test_progress_bar_can_be_disabled(logdir):
    cli = main(["--config", TINY, "--trainer.enable_progress_bar", "false"], run=False)
    assert not any(isinstance(c, MBPOProgressBar) for c in cli.trainer.callbacks)
    cli = main(["--config", TINY, "--trainer.enable_progress_bar", "true"], run=False)
    assert any(isinstance(c, MBPOProgressBar) for c in cli.trainer.callbacks)


def test_denormals_are_flushed_unless_asked_not_to(logdir):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormal numbers")
    tiny_value = torch.tensor([1e-39])  # a float32 denormal
    main(["--config", TINY], run=False)
    assert tiny_value.mul(2.0).item() == 0.0  # computed as zero
    main(["--config", TINY, "--flush_denormal", "false"], run=False)
    assert tiny_value.mul(2.0).item() == pytest.approx(2e-39, rel=1e-3)


def test_tiny_fit_runs_end_to_end_and_logs(logdir):
    import signal

    tstp_before = signal.getsignal(signal.SIGTSTP)
    cli = main(["fit", "--config", TINY])
    assert signal.getsignal(signal.SIGTSTP) == tstp_before  # the run's SIGTSTP handler is gone with the run
    loop = next(c for c in cli.trainer.callbacks if isinstance(c, MBPOLoop))
    evaluation = next(c for c in cli.trainer.callbacks if isinstance(c, Evaluation))
    assert loop.env_steps == 300 and loop.model_trainings == 4
    assert len(cli.datamodule.real_buffer) == 300
    assert len(cli.datamodule.model_buffer) > 0
    assert [step for step, _ in evaluation.history] == [200, 300]
    events = list(Path(logdir).rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file written"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "eval/return",
        "train/critic_loss",
        "train/alpha",
        "dynamics/holdout_mse/0",
        "rollout/length",
        "rollout/model_buffer_size",
        "time/env_steps_per_s",
        "time/sac_updates_per_s",
        "time/between_epochs_s",  # what no epoch claims: the checkpoint at an epoch's end, Lightning's bookkeeping
    ):
        assert tag in tags, tag
    assert acc.Scalars("eval/return")[-1].step == 300  # x-axis is env steps
    shown = MBPOProgressBar().get_metrics(cli.trainer, cli.model)
    assert shown["env_steps"] == "300/300"
    assert shown["eval"] == f"{evaluation.last_return:.1f}"
    assert float(shown["steps/s"]) > 0


def test_same_seed_gives_the_same_run(logdir):
    params = []
    for _ in range(2):
        cli = main(["fit", "--config", TINY])
        params.append(torch.cat([p.detach().flatten() for p in cli.model.parameters()]))
    torch.testing.assert_close(params[0], params[1])


def test_bf16_mixed_precision_covers_sac_model_training_and_rollouts(logdir, monkeypatch):
    """`--trainer.precision bf16-mixed` runs every network pass of the run under bf16 autocast."""
    import callbacks.model_data as model_data
    from mbpo_pl.dynamics import DynamicsModule
    from mbpo_pl.sac import SACModule

    seen: dict[str, list[bool]] = {"fit": [], "rollout": [], "sac": []}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen[name].append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(DynamicsModule, "fit_ensemble", spy("fit", DynamicsModule.fit_ensemble))
    monkeypatch.setattr(model_data, "branched_rollout", spy("rollout", model_data.branched_rollout))
    monkeypatch.setattr(SACModule, "update", spy("sac", SACModule.update))
    cli = main(["fit", "--config", TINY, "--trainer.precision", "bf16-mixed"])
    assert seen["fit"] and seen["rollout"] and seen["sac"]
    assert all(seen["fit"]) and all(seen["rollout"]) and all(seen["sac"]), seen
    # Parameters stay float32 (mixed precision); the run finished with finite weights.
    params = torch.cat([p.detach().flatten() for p in cli.model.parameters()])
    assert params.dtype == torch.float32 and torch.isfinite(params).all()


def test_cpu_threads_are_shared_among_ddp_processes():
    from lightning.pytorch import Trainer

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert share_cpu_threads(Trainer(accelerator="cpu", devices=1, logger=False)) == 4
        assert share_cpu_threads(Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)) == 2
        torch.set_num_threads(1)
        assert share_cpu_threads(Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)) == 1
    finally:
        torch.set_num_threads(before)


def test_mistyped_key_fails(logdir, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", TINY, "--model.sac.learning_rate", "0.1"])
    assert "learning_rate" in capsys.readouterr().err


def test_missing_config_file_fails(logdir, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", "conf/does_not_exist.yaml"])
    assert "does_not_exist.yaml" in capsys.readouterr().err


def test_help_names_the_command_and_its_tools(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m mbpo_pl ")
    for tool in ("report", "plot", "diagnose", "results"):
        assert f"{tool} " in out  # the run tools are found from the top-level help


def test_print_config_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", TINY, "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "env_id: InvertedPendulum-v5" in out
    # the loop and the evaluation are sections of their own, overridable as --loop.X / --eval.X
    assert "\nloop:\n" in out and "  total_env_steps: 300\n" in out
    assert "\neval:\n" in out and "  every_n_env_steps: 100\n" in out


def test_plot_and_report_commands(logdir, tmp_path, capsys):
    from mbpo_pl.plot import main as plot_main
    from mbpo_pl.report import main as report_main

    main(["fit", "--config", TINY])
    run_dir = next(Path(logdir).rglob("events.out.tfevents.*")).parent
    output = tmp_path / "curve.png"
    plot_main([str(run_dir), "-o", str(output)])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.stat().st_size > 5000
    report_main([str(run_dir), "--block", "100"])
    out = capsys.readouterr().out
    assert "eval/return" in out and "wall seconds per 1000 env steps" in out
    assert "reward_survive" in out  # InvertedPendulum-v5 reports its one reward term; the report shows it
    with pytest.raises(SystemExit, match="no eval/return"):
        plot_main([str(tmp_path), "-o", str(output)])


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--loop.rollout_schedule", "[1, 3, 0, 3]"], "rollout lengths must be >= 1"),
        (["--model.dynamics.num_elites", "9"], "num_elites=9 must be in [1, ensemble_size=3]"),
        (["--data.real_ratio", "1.5"], "real_ratio=1.5 must be in [0, 1]"),
        (["--data.env_id", "CartPole-v1"], "needs continuous actions"),
        (["--data.env_id", "Hoper-v5"], "Did you mean: Hopper-v5"),
        (["--data.real_buffer_size", "16"], "real_buffer_size=16 is smaller than one batch"),
        (["--loop.init_random_steps", "5"], "Raise init_random_steps to at least 8"),
        (["--loop.rollout_batch_size", "10"], "rollout_batch_size=10 model transitions"),
        (["--data.model_train_freq", "50"], "data.model_train_freq belongs to the loop: section"),
        (["--model.sac.cuda_graphs", "true"], "model.sac.cuda_graphs=true needs a CUDA device, but this run trains"),
    ],
)
def test_bad_values_fail_with_the_reason(args, reason, logdir, capsys):
    with pytest.raises((ValueError, SystemExit)) as info:
        main(["fit", "--config", TINY, *args])
    assert reason in str(info.value) + capsys.readouterr().err


def test_time_limit_truncation_is_not_stored_as_termination(logdir):
    """A time-limit end of episode must keep bootstrapping: truncated=True, terminated=False in the real buffer."""
    cli = main(["fit", "--config", TINY, "--data.env_kwargs", "{max_episode_steps: 3}"])
    data = cli.datamodule
    real = data.real_buffer.storage[torch.arange(len(data.real_buffer))]
    truncated, terminated = real["next", "truncated"].squeeze(-1), real["next", "terminated"].squeeze(-1)
    assert (truncated & ~terminated).sum() >= 50  # many 3-step episodes ended by the time limit alone
    # terminated is the env's own rule (pole angle beyond 0.2), whatever the time limit did
    torch.testing.assert_close(terminated, real["next", "observation"][:, 1].abs() > 0.2)
    torch.testing.assert_close(real["next", "done"].squeeze(-1), truncated | terminated)


def test_lightning_hooks_once_per_call_by_default_every_step_on_request_same_result(logdir, monkeypatch):
    """Default: Lightning's backward/step hooks for the first SAC update of each env step and the first ensemble
    step of each training call; ``lightning_hooks_every_step`` for every step. Both train exactly alike."""
    from mbpo_pl.dynamics import DynamicsModule
    from mbpo_pl.system import MBPO

    counts: dict[str, int] = {}

    def counting(name, fn=None):
        def wrapped(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return fn(*args, **kwargs) if fn is not None else None

        return wrapped

    monkeypatch.setattr(Evaluation, "on_before_optimizer_step", counting("hooks"))
    monkeypatch.setattr(Evaluation, "on_after_backward", counting("after_backward"))
    monkeypatch.setattr(MBPO, "training_step", counting("training_steps", MBPO.training_step))
    monkeypatch.setattr(DynamicsModule, "_train_step", counting("ensemble_steps", DynamicsModule._train_step))
    monkeypatch.setattr(DynamicsModule, "fit_ensemble", counting("fits", DynamicsModule.fit_ensemble))
    params, runs = [], {}
    for every_step in (False, True):
        counts.clear()
        flag = str(every_step).lower()
        cli = main(
            ["fit", "--config", TINY, "--model.sac.lightning_hooks_every_step", flag]
            + ["--model.dynamics.lightning_hooks_every_step", flag]
        )
        assert cli.model.sac.direct_steps is not every_step and cli.model.dynamics.direct_steps is not every_step
        params.append(torch.cat([p.detach().flatten() for p in cli.model.parameters()]))
        runs[every_step] = dict(counts)
    updates_per_step = 2  # tiny.yaml
    default, every = runs[False], runs[True]
    assert default["training_steps"] == every["training_steps"] > 0 and default["fits"] == every["fits"] == 4
    assert default["hooks"] == default["after_backward"] == default["training_steps"] + default["fits"]
    assert (
        every["hooks"]
        == every["after_backward"]
        == every["training_steps"] * updates_per_step + every["ensemble_steps"]
    )
    assert every["ensemble_steps"] > every["fits"]
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "plain"),
    [
        ({}, True),
        ({"precision": "bf16-mixed"}, True),
        ({"precision": "64-true"}, False),
        ({"strategy": "ddp", "devices": 2}, False),
        ({"gradient_scaler": True}, False),
    ],
)
def test_lightning_steps_are_skipped_only_where_they_add_nothing_but_hooks(kwargs, plain):
    from lightning.pytorch import Trainer
    from lightning.pytorch.plugins.precision import MixedPrecision

    from mbpo_pl.manual_optimization import lightning_step_is_plain

    if kwargs.pop("gradient_scaler", False):  # 16-mixed: on CPU Lightning itself would switch to bf16
        kwargs["plugins"] = [MixedPrecision("16-mixed", "cpu")]
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **kwargs)
    assert lightning_step_is_plain(trainer) is plain


def test_report_health_table_combines_each_block():
    from mbpo_pl.report import health

    scalars = {
        "eval/return": [(1000, 10.0), (2000, 30.0), (3000, 50.0)],
        "train/q": [(500, 1.0), (1500, 3.0), (2000, 5.0)],
        "rollout/length": [(250, 1), (1750, 2), (2000, 3)],
        "rollout/kept_fraction": [(1250, 0.8), (2000, 0.6)],
        "rollout/dropped_nonfinite": [(1250, 2.0), (2000, 3.0)],
    }
    first, second, third = health(scalars, block=1000)[:3]
    assert (first["from"], first["to"], first["eval"], first["q"], first["k"]) == (0, 1000, 10.0, 1.0, 1)
    assert first["terminated"] is None and first["holdout_mse"] is None  # nothing logged in that block
    assert second["eval"] == 30.0 and second["q"] == 4.0 and second["k"] == 3  # mean; last
    assert second["terminated"] == pytest.approx(0.3) and second["nonfinite"] == 5.0  # 1 - mean kept; sum
    assert third["eval"] == 50.0 and third["q"] is None


def test_report_compare_puts_runs_side_by_side(monkeypatch, tmp_path, capsys):
    from mbpo_pl import report

    runs = {
        "bf16": {"train/q": [(1000, 100.0), (2000, 120.0)], "rollout/model_terminal_fraction": [(2000, 0.007)]},
        "fp32": {"train/q": [(1000, 90.0)], "rollout/model_terminal_fraction": [(1000, 0.01), (2000, 0.02)]},
    }
    for name in runs:
        (tmp_path / name).mkdir()
    monkeypatch.setattr(report, "load_scalars", lambda run_dir: runs[Path(run_dir).name])
    report.main([str(tmp_path / "bf16"), str(tmp_path / "fp32"), "--block", "1000", "--compare"])
    out = capsys.readouterr().out
    assert f"run 1: {tmp_path / 'fp32'}" in out
    q_table = out.split("\nq (train/q, mean per 1000 env steps)\n")[1].split("\n\n")[0].splitlines()
    assert q_table[1].split() == ["0-1000", "100", "90"] and q_table[2].split() == ["1000-2000", "120", "-"]
    term_table = out.split("\nmodel_term (rollout/model_terminal_fraction")[1].split("\n\n")[0].splitlines()
    assert term_table[2].split() == ["0-1000", "-", "0.01"] and term_table[3].split() == ["1000-2000", "0.007", "0.02"]
    assert "\nalpha (" not in out  # neither run logged it: no empty table
    with pytest.raises(SystemExit, match="--block 0: must be a positive"):
        report.main([str(tmp_path / "bf16"), "--block", "0"])
