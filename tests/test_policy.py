"""Using a trained agent: ``load_policy``, ``evaluate_policy``, the ``test`` command, videos and ``export``, and the
one-line errors of every command that takes a checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests_support import renderer_available, tiny_config_with_checkpoints

from callbacks import Evaluation
from mbpo_pl import Policy, evaluate_policy, load_policy
from mbpo_pl.checkpoint_eval import TEST_SEED_OFFSET
from mbpo_pl.cli import main

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 300-step InvertedPendulum run with checkpoints: ``(config, run folder, cli)``."""
    folder = tmp_path_factory.mktemp("trained")
    config = tiny_config_with_checkpoints(folder)
    cli = main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(folder / "logs")])
    run = folder / "logs" / "InvertedPendulum-v5" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return config, run, cli


def _cli_error(args, capsys):
    """Run the command line; return its exit status and stderr."""
    from mbpo_pl.cli import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    return exit_info.value.code, capsys.readouterr().err


def test_load_policy_acts_as_the_trained_actor_in_the_env_bounds(trained):
    _, run, cli = trained
    policy = load_policy(run)
    assert isinstance(policy, Policy) and isinstance(policy, torch.nn.Module)
    assert (policy.env_id, policy.env_kwargs, policy.env_steps) == ("InvertedPendulum-v5", {}, 300)
    observations = torch.randn(64, 4)
    # The actor acts in [-1, 1]; InvertedPendulum's bounds are [-3, 3].
    expected = 3.0 * cli.model.sac.actor.act(observations, deterministic=True)
    torch.testing.assert_close(policy(observations), expected)
    single = policy(observations[0].numpy().astype(np.float64))  # what env.reset() returns
    assert isinstance(single, np.ndarray) and single.shape == (1,) and single.dtype == np.float32
    np.testing.assert_allclose(single, expected[0].numpy(), rtol=1e-5)
    far = policy(1e3 * torch.randn(256, 4))
    assert far.abs().max() <= 3.0 and far.abs().max() > 2.5  # saturated, still within the bounds


def test_load_policy_takes_the_action_bounds_from_the_checkpoint(trained, tmp_path, monkeypatch):
    _, run, _ = trained
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["mbpo_env"]["action_low"] == [-3.0] and checkpoint["mbpo_env"]["action_high"] == [3.0]
    older = {key: value for key, value in checkpoint["mbpo_env"].items() if not key.startswith("action_")}
    torch.save({**checkpoint, "mbpo_env": older}, tmp_path / "older.ckpt")  # as written before bounds were stored
    expected = load_policy(tmp_path / "older.ckpt").action_high  # read off the env
    import mbpo_pl.policy

    def no_env(*args, **kwargs):
        raise AssertionError("the env was made")

    monkeypatch.setattr(mbpo_pl.policy.gym, "make", no_env)
    policy = load_policy(run)  # the bounds from the checkpoint: no env is made
    assert torch.equal(policy.action_high, expected) and torch.equal(policy.action_low, -expected)


def test_policy_refuses_observations_of_the_wrong_shape(trained):
    policy = load_policy(trained[1])
    for bad in (np.zeros(5), torch.zeros(2, 3), torch.zeros(2, 2, 4)):
        with pytest.raises(ValueError, match=r"InvertedPendulum-v5 policy: observations must have shape \[4\]"):
            policy(bad)


def test_evaluate_policy_reproduces_the_training_evaluation(trained):
    """The loaded policy on the raw env with training's evaluation seeds plays the same episodes as training did."""
    _, run, cli = trained
    evaluation = next(c for c in cli.trainer.callbacks if isinstance(c, Evaluation))
    policy = load_policy(run)
    result = evaluate_policy(policy, policy.make_env(), evaluation.num_episodes, seed=evaluation.seed)
    assert result.seeds == [evaluation.seed, evaluation.seed + 1]
    assert result.mean == pytest.approx(evaluation.history[-1][1], abs=1e-6)
    again = evaluate_policy(policy, policy.make_env(), evaluation.num_episodes, seed=evaluation.seed)
    np.testing.assert_array_equal(again.returns, result.returns)
    sampled = evaluate_policy(policy, policy.make_env(), 3, seed=7, deterministic=False)
    resampled = evaluate_policy(policy, policy.make_env(), 3, seed=7, deterministic=False)
    np.testing.assert_array_equal(sampled.returns, resampled.returns)  # its own generator, seeded


def test_loading_a_policy_does_not_read_the_replay_buffers(trained, tmp_path):
    """A checkpoint with 512 MiB of buffer data beside the weights: loading the policy reads a few MiB of it."""
    checkpoint = torch.load(trained[1] / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["MBPODataModule"]["real"]["data"]["padding"] = torch.ones(128 * 2**20)  # 512 MiB of float32
    big = tmp_path / "big.ckpt"
    torch.save(checkpoint, big)
    del checkpoint
    probe = (
        "import resource, sys; from mbpo_pl import load_policy; "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; policy = load_policy(sys.argv[1]); "
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)"
    )
    grown_mib = float(subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True,
                                     check=True).stdout.split()[-1])  # fmt: skip
    assert big.stat().st_size > 512 * 2**20
    assert grown_mib < 64, f"peak RSS grew {grown_mib:.0f} MiB while loading the policy"


def test_test_command_evaluates_the_checkpoint_and_writes_a_record(trained, capsys):
    config, run, _ = trained
    checkpoint = run / "checkpoints" / "last.ckpt"
    before = checkpoint.stat().st_mtime_ns
    args = ["test", "--config", config, "--ckpt_path", str(run), "--eval.num_episodes", "4",
            "--eval.stochastic_episodes", "2"]  # fmt: skip
    main(args)
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines()
            if line.count("│") == 4}  # fmt: skip
    assert rows["episodes"] == ["4", "2"] and "return (mean ± std)" in rows
    record_path = run / "test" / "last-env_steps=300.json"
    record = json.loads(record_path.read_text())
    assert record["env_id"] == "InvertedPendulum-v5" and record["env_steps"] == 300
    seeds = [e["seed"] for e in record["deterministic"]["episodes"]]
    assert seeds == [12345 + TEST_SEED_OFFSET + i for i in range(4)]  # fresh: not training's evaluation seeds
    policy = load_policy(run)
    direct = evaluate_policy(policy, policy.make_env(), 4, seed=12345 + TEST_SEED_OFFSET)
    assert record["deterministic"]["summary"]["return"] == pytest.approx(direct.mean)
    assert len(record["stochastic"]["episodes"]) == 2
    # Nothing trained or written over: the checkpoint is untouched, no new run folder; a second test keeps the first.
    main(args)
    assert checkpoint.stat().st_mtime_ns == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    assert (run / "test" / "last-env_steps=300-2.json").is_file() and record_path.read_text() == json.dumps(
        record, indent=1
    )


def test_test_command_refuses_a_checkpoint_of_another_env(trained, tmp_path, capsys):
    config = Path(trained[0]).read_text().replace("env_id: InvertedPendulum-v5", "env_id: Pendulum-v1")
    other = tmp_path / "pendulum.yaml"
    other.write_text(config)
    status, err = _cli_error(["test", "--config", str(other), "--ckpt_path", str(trained[1])], capsys)
    assert status == 2
    assert err.startswith("error: --ckpt_path") and "'InvertedPendulum-v5'" in err and "'Pendulum-v1'" in err
    assert "Test it with the config it was trained with" in err and "new run" not in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("subcommand", ["validate", "predict"])
def test_validate_and_predict_are_refused_naming_test_and_diagnose(trained, subcommand, capsys):
    status, err = _cli_error([subcommand, "--config", trained[0], "--ckpt_path", str(trained[1])], capsys)
    assert status == 2 and "python -m mbpo_pl test" in err and "diagnose" in err
    assert len(err.strip().splitlines()) == 1


def test_test_without_a_checkpoint_says_what_to_give(trained, capsys):
    status, err = _cli_error(["test", "--config", trained[0]], capsys)
    assert status == 2 and "--ckpt_path last" in err


@pytest.fixture
def truncated(trained, tmp_path):
    checkpoint = (trained[1] / "checkpoints" / "last.ckpt").read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(checkpoint[: len(checkpoint) // 2])
    return path


@pytest.mark.parametrize("kind", ["missing", "truncated"])
def test_every_command_taking_a_checkpoint_refuses_a_bad_one_in_one_line(trained, truncated, kind, capsys):
    from mbpo_pl.diagnose import main as diagnose
    from mbpo_pl.export import main as export

    path = str(truncated.parent / "missing.ckpt" if kind == "missing" else truncated)
    reason = "no checkpoint file at" if kind == "missing" else "is truncated or corrupt"
    config = trained[0]
    commands = {
        "fit": lambda: _cli_error(["fit", "--config", config, "--ckpt_path", path], capsys),
        "test": lambda: _cli_error(["test", "--config", config, "--ckpt_path", path], capsys),
        "diagnose": lambda: _exit(diagnose, [path], capsys),
        "export": lambda: _exit(export, [path, "-o", str(truncated.parent / "p.pt2")], capsys),
    }
    for name, command in commands.items():
        status, err = command()
        assert status == 2, name
        assert reason in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        wording = "start a new run without --ckpt_path" in err
        assert wording == (name == "fit"), (name, err)  # only fit offers a new run as the fix
    error = FileNotFoundError if kind == "missing" else ValueError
    with pytest.raises(error, match=reason):
        load_policy(path)


def _exit(tool, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_export_runs_with_torch_alone_and_matches_the_policy(trained, tmp_path, capsys):
    from mbpo_pl.export import main as export

    output = tmp_path / "policy.pt2"
    export([str(trained[1]), "-o", str(output)])
    assert str(output) in capsys.readouterr().out
    observations = torch.randn(37, 4)
    torch.save(observations, tmp_path / "obs.pt")
    script = (
        "import json, sys, torch\n"
        "sys.modules['mbpo_pl'] = sys.modules['callbacks'] = None  # importing either would fail\n"
        "extra = {'mbpo_pl.json': ''}\n"
        "policy = torch.export.load(sys.argv[1], extra_files=extra).module()\n"
        "info = json.loads(extra['mbpo_pl.json'])\n"
        "actions = policy(torch.load(sys.argv[2]))\n"
        "torch.save(actions.detach(), sys.argv[3])\n"
        "print(info['env_id'], info['obs_dim'], info['act_dim'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(output), str(tmp_path / "obs.pt"),
                             str(tmp_path / "actions.pt")], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["InvertedPendulum-v5", "4", "1"]
    torch.testing.assert_close(torch.load(tmp_path / "actions.pt"), load_policy(trained[1])(observations))


def test_onnx_export_runs_in_onnx_runtime_and_matches_the_policy(trained, tmp_path, capsys):
    import onnxruntime

    from mbpo_pl.export import main as export

    onnx_path = tmp_path / "policy.onnx"
    export([str(trained[1]), "-o", str(tmp_path / "policy.pt2"), "--onnx", str(onnx_path)])
    session = onnxruntime.InferenceSession(str(onnx_path))
    observations = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    (actions,) = session.run(["action"], {"observation": observations})
    expected = load_policy(trained[1])(torch.as_tensor(observations)).detach().numpy()
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)


def test_export_to_an_unwritable_path_is_one_line(trained, tmp_path, capsys):
    from mbpo_pl.export import main as export

    blocker = tmp_path / "file"
    blocker.write_text("")
    status, err = _exit(export, [str(trained[1]), "-o", str(blocker / "policy.pt2")], capsys)
    assert status == 2 and err.startswith("error: export: cannot write") and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not renderer_available(), reason="no offscreen OpenGL (EGL) renderer on this machine")
def test_test_command_writes_a_captioned_video(trained, tmp_path):
    import imageio.v2 as imageio

    video = tmp_path / "episodes.mp4"
    main(["test", "--config", trained[0], "--ckpt_path", str(trained[1]), "--eval.num_episodes", "2",
          "--eval.video_path", str(video), "--eval.video_episodes", "2", "--eval.video_size", "64"])  # fmt: skip
    records = [json.loads(path.read_text()) for path in (trained[1] / "test").glob("*.json")]
    (record,) = [r for r in records if r["video"] == str(video)]
    lengths = [e["length"] for e in record["deterministic"]["episodes"]]
    frames = imageio.mimread(video, memtest=False)
    assert len(frames) == sum(lengths) + 2  # every episode's first state and each step
    assert frames[0].shape == (64, 64, 3)


def test_video_frames_are_captioned_with_the_return_so_far():
    from mbpo_pl.evaluate import _caption

    grey = np.full((64, 96, 3), 128, dtype=np.uint8)
    captioned = _caption(grey, "return 12.5")
    strip = captioned[:8, :40]
    assert (strip == 0).any() and (strip > 200).any()  # dark strip with light text
    np.testing.assert_array_equal(captioned[20:], grey[20:])  # the rest of the frame untouched
