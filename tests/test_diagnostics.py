"""Model diagnostics: the compounding-error curve on a system with a known model error, segments that respect
episode ends, the model-vs-real statistics, the logged metrics of a real run and the ``diagnose`` figure."""

from pathlib import Path

import pytest
import torch

from mbpo_pl.cli import main
from mbpo_pl.diagnose import diagnose
from mbpo_pl.diagnostics import (
    distribution_shift,
    gather_segments,
    open_loop_errors,
    segment_starts,
    trusted_horizon,
)

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def _integrator_segments(num_segments=4, horizon=6, obs_dim=2, seed=0):
    """Real system s' = s + a, reward = 0: ``num_segments`` segments of ``horizon`` steps."""
    g = torch.Generator().manual_seed(seed)
    obs0 = torch.randn(num_segments, obs_dim, generator=g)
    actions = torch.randn(num_segments, horizon, obs_dim, generator=g)
    next_obs = obs0[:, None] + actions.cumsum(1)
    from mbpo_pl.diagnostics import Segments

    return Segments(obs0, actions, next_obs, torch.zeros(num_segments, horizon))


def test_open_loop_error_grows_as_the_known_model_bias_compounds():
    """Model s' = s + a + c (a constant bias c per step, both members alike, reward predicted as r_bias): the
    open-loop state error at step h is exactly (h c / std)^2 per dimension, and the reward error (r_bias / std)^2."""
    segments = _integrator_segments()
    bias, reward_bias = torch.tensor([0.1, -0.2]), 0.3
    obs_std, reward_std = torch.tensor([0.5, 2.0]), torch.tensor(1.5)

    def predict(inputs):
        obs_dim = 2
        action = inputs[..., obs_dim:]
        delta = action + bias
        mean = torch.cat([torch.full_like(delta[..., :1], reward_bias), delta], dim=-1)
        return mean, torch.full_like(mean, -30.0)  # (near) zero variance: sampled == mean

    errors = open_loop_errors(predict, 2, segments, obs_std, reward_std, sample=False)
    h = torch.arange(1, 7, dtype=torch.float32)
    expected = ((h[:, None] * bias / obs_std) ** 2).mean(-1)
    torch.testing.assert_close(errors.obs, expected)
    torch.testing.assert_close(errors.reward, torch.full((6,), (reward_bias / 1.5) ** 2))
    sampled = open_loop_errors(predict, 2, segments, obs_std, reward_std, True, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled.obs, expected, rtol=1e-4, atol=1e-5)
    # error at h: ((0.1 / 0.5)^2 + (0.2 / 2)^2) / 2 h^2 = 0.025 h^2: 0.4 at h = 4, 0.625 at h = 5
    assert trusted_horizon(errors.obs, 0.5) == 4
    assert trusted_horizon(errors.obs, 1.0) == 6  # never crosses within the horizon


def test_a_perfect_model_has_zero_error_and_trusts_the_whole_horizon():
    segments = _integrator_segments()

    def predict(inputs):
        mean = torch.cat([torch.zeros_like(inputs[..., :1]), inputs[..., 2:]], dim=-1)
        return mean, torch.full_like(mean, -30.0)

    errors = open_loop_errors(predict, 3, segments, torch.ones(2), torch.tensor(1.0), sample=False)
    assert errors.obs.abs().max() < 1e-10 and trusted_horizon(errors.obs, 1.0) == 6


def test_segments_never_cross_episode_ends_or_terminations():
    """Two episodes stored back to back: 0..4 (terminated at 4), 5..9 (time limit at 9); transition 7 -> 8 broken
    by a wrap-around of the buffer (8's observation is not 7's next)."""
    obs = torch.arange(10, dtype=torch.float32)[:, None]
    next_obs = obs + 1
    next_obs[7] = 100.0  # discontinuity without a done flag
    done = torch.zeros(10, dtype=torch.bool)
    done[4] = done[9] = True
    starts = segment_starts(obs, next_obs, done, horizon=3)
    assert starts.tolist() == [0, 1, 2, 5]  # 3..5 crosses the termination at 4; 6..8 and 7..9 cross 7 -> 8
    assert segment_starts(obs, next_obs, done, horizon=1).tolist() == list(range(10))
    segments = gather_segments(obs, obs, torch.zeros(10), next_obs, starts, 3)
    assert segments.next_obs[:, :, 0].tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5], [6, 7, 100]]


def test_a_quantity_that_does_not_vary_is_not_standardised():
    """InvertedPendulum pays 1 per step: dividing a reward error by that std (0) would explode; the scale is 1."""
    from mbpo_pl.diagnostics import safe_std

    torch.testing.assert_close(safe_std(torch.ones(100, 1)), torch.ones(1))
    torch.testing.assert_close(safe_std(torch.tensor([[0.0], [2.0]])), torch.tensor([2.0**0.5]))


def test_distribution_shift_statistics():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(20000, 3, generator=g)
    model = real * torch.tensor([1.0, 2.0, 1.0]) + torch.tensor([0.5, 0.0, 0.0])
    model_terminated = torch.arange(20000) % 100 == 0  # 1 % of the model's transitions end an episode
    stats = distribution_shift(model, torch.zeros(20000), model_terminated, real, torch.ones(20000),
                               torch.zeros(20000, dtype=torch.bool), real.min(0).values,
                               real.max(0).values)  # fmt: skip
    assert stats["state_mean_shift_max"] == pytest.approx(0.5, abs=0.03)
    assert stats["state_std_ratio"] == pytest.approx((1 + 2 + 1) / 3, abs=0.03)
    assert 0.0 < stats["outside_real_range"] < 0.05  # dimension 1 (twice as wide) leaves the real range sometimes
    assert stats["model_reward_mean"] == 0 and stats["real_reward_mean"] == 1
    assert stats["model_terminal_fraction"] == pytest.approx(0.01) and stats["real_terminal_fraction"] == 0


def test_a_run_logs_the_diagnostics_without_changing_its_training(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for every in ("1", "1000"):
        cli = main(["fit", "--config", TINY, "--diagnostics.every_n_model_trainings", every,
                    "--diagnostics.figure_every_n_model_trainings", "2",
                    "--trainer.logger.init_args.name", f"every{every}"])  # fmt: skip
        runs[every] = torch.cat([p.detach().flatten() for p in cli.model.parameters()])
    torch.testing.assert_close(runs["1"], runs["1000"], rtol=0, atol=0)
    events = next((Path(logdir) / "every1").rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events.parent), size_guidance={"images": 0})
    accumulator.Reload()
    assert [image.step for image in accumulator.Images("dynamics/error_vs_horizon")] == [200, 300]  # trainings 2, 4
    tags = set(accumulator.Tags()["scalars"])
    for tag in ("dynamics/error_at_h/1", "dynamics/error_at_h/5", "dynamics/error_at_h/k", "dynamics/error_at_h/H",
                "dynamics/sampled_error_at_h/H", "dynamics/reward_error_at_h/1", "dynamics/trusted_horizon",
                "rollout/state_mean_shift", "rollout/outside_real_range", "rollout/model_reward_mean",
                "rollout/model_terminal_fraction", "rollout/real_terminal_fraction", "time/diagnostics_s"):  # fmt: skip
        assert tag in tags, tag
    errors = [e.value for e in accumulator.Scalars("dynamics/error_at_h/1")]
    assert all(value >= 0 for value in errors)


def test_diagnose_writes_a_figure_from_a_checkpoint(logdir, tmp_path, capsys):
    from mbpo_pl.diagnose import main as diagnose_main

    main(["fit", "--config", TINY, "--trainer.enable_checkpointing", "true"])
    checkpoint = next(Path(logdir).rglob("*.ckpt"))
    output = tmp_path / "report.png"
    summary = diagnose(checkpoint, output, horizon=3, episodes=2)
    assert output.read_bytes()[:4] == b"\x89PNG" and output.stat().st_size > 10_000
    assert summary["segments"] >= 2 and summary["error_at_h1"] >= 0
    diagnose_main([str(checkpoint), "-o", str(tmp_path / "cli.png"), "--horizon", "3"])
    assert "trusted_horizon" in capsys.readouterr().out
