"""``python -m mbpo_pl diagnose CKPT_OR_RUN -o report.png``: how far a checkpoint's dynamics model can be trusted.

Offline, on the CPU, from any checkpoint (one trained on a GPU too): the ensemble and its elites from the weights,
real trajectories from the checkpoint's real replay buffer. The figure shows, for a few real trajectory segments,
the predicted vs real trajectory of selected state dimensions and of the reward over ``H`` steps (open loop: the
real first state and the real actions; the elites' mean predictions as a line with their spread as a band), and the
standardised error vs horizon over many segments (mean prediction and MBPO-style sampled rollouts).

The segments come from the newest real transitions in the buffer; all but the last model-training period's were
in the model's training data (an in-sample view), unlike the held-out segments that training logs under
``dynamics/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mbpo_pl.diagnostics import (
    Segments,
    evenly_spaced,
    gather_segments,
    open_loop_errors,
    open_loop_means,
    safe_std,
    segment_starts,
    trusted_horizon,
)
from mbpo_pl.errors import ConfigError, exit_with_error
from mbpo_pl.model_io import input_size, target_size
from mbpo_pl.nets.ensemble import GaussianEnsemble


def ensemble_from_state_dict(state_dict: dict[str, torch.Tensor], env: dict) -> tuple[GaussianEnsemble, torch.Tensor]:
    """The dynamics ensemble and its elites from an ``MBPO`` checkpoint's state: its input and target sizes from the
    checkpoint's env description (``env``: obs_dim, act_dim), its members and layers read off the weights."""
    prefix = "dynamics.model."
    weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    hidden = sorted(k for k in weights if k.startswith("hidden.") and k.endswith(".weight"))
    if not hidden:
        raise ConfigError("this checkpoint holds no mbpo_pl dynamics ensemble (no dynamics.model.* weights)")
    first = weights[hidden[0]]
    sizes = input_size(env["obs_dim"], env["act_dim"]), target_size(env["obs_dim"])
    ensemble = GaussianEnsemble(*sizes, first.shape[0], first.shape[2], len(hidden))
    ensemble.load_state_dict({k: v for k, v in weights.items() if not k.startswith("normalizer.")}, strict=False)
    ensemble.normalizer.mean.copy_(weights["normalizer.mean"])
    ensemble.normalizer.std.copy_(weights["normalizer.std"])
    return ensemble.eval(), state_dict["dynamics.elites"]


def real_transitions(checkpoint: dict, path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's real buffer (storage order) as flat tensors: observation, action, next.reward, ..."""
    state = checkpoint.get("MBPODataModule", {}).get("real")
    if state is None:
        raise ConfigError(f"{path} holds no real replay buffer (was it saved before the first env step?)")
    if "dumped" in state:
        raise ConfigError(
            f"{path} refers to memory-mapped buffers (data.buffer_storage=memmap) instead of holding them; "
            "diagnose reads checkpoints with in-memory buffers (the default)."
        )
    return {key: value.float() if value.is_floating_point() else value for key, value in state["data"].items()}


def error_curve_figure(curves: dict[str, torch.Tensor], threshold: float, rollout_length: int, env_steps: int):  # noqa: ANN201
    """Standardised state error vs horizon (one line per curve), the trust threshold and the run's current k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    _draw_error_curves(axis, curves, threshold, rollout_length)
    axis.set_title(f"model error vs horizon at {env_steps:,} env steps")
    figure.tight_layout()
    return figure


def _draw_error_curves(axis, curves: dict[str, torch.Tensor], threshold: float, rollout_length: int) -> None:  # noqa: ANN001
    for label, errors in curves.items():
        steps = range(1, errors.numel() + 1)
        axis.plot(steps, errors.numpy(), marker="o", markersize=3, label=f"{label} prediction")
    axis.axhline(threshold, color="red", linestyle=":", label=f"threshold {threshold:g}")
    if rollout_length:
        axis.axvline(rollout_length, color="gray", linestyle="--", label=f"rollout length k = {rollout_length}")
    axis.set_yscale("log")
    axis.set_xlabel("horizon h (model steps)")
    axis.set_ylabel("standardised squared error")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def diagnose(source: Path, output: Path, horizon: int = 15, episodes: int = 3, dims: list[int] | None = None,
             recent: int = 2000, threshold: float = 1.0, seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Write the report figure for a checkpoint (or a run folder's ``checkpoints/last.ckpt``); returns a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mbpo_pl.run_folders import read_agent_checkpoint

    path, checkpoint = read_agent_checkpoint(source, option="diagnose")
    if "mbpo_env" not in checkpoint:
        raise ConfigError(f"{path} is not an mbpo_pl training checkpoint (it has no env description).")
    ensemble, elites = ensemble_from_state_dict(checkpoint["state_dict"], checkpoint["mbpo_env"])
    data = real_transitions(checkpoint, path)
    n = data["observation"].shape[0]
    window = slice(max(0, n - recent), n)
    obs, action, next_obs = (data[k][window] for k in ("observation", "action", "next.observation"))
    reward, done = data["next.reward"][window], data["next.done"][window].reshape(-1).bool()
    starts = segment_starts(obs, next_obs, done, horizon)
    if starts.numel() == 0:
        raise ConfigError(f"{path}: no {horizon}-step segment inside one episode among the last {recent} real "
                          "transitions; try a smaller --horizon or a larger --recent.")  # fmt: skip
    obs_dim = obs.shape[1]
    obs_std = ensemble.normalizer.std[:obs_dim]
    reward_std = safe_std(data["next.reward"].reshape(-1, 1))[0]  # all real rewards; 1 where they do not vary

    def predict(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ensemble.forward_members(inputs, elites)

    members = elites.numel()
    curve_segments = gather_segments(obs, action, reward, next_obs, evenly_spaced(starts, 256), horizon)
    generator = torch.Generator().manual_seed(seed)
    mean_errors = open_loop_errors(predict, members, curve_segments, obs_std, reward_std, sample=False)
    sampled_errors = open_loop_errors(predict, members, curve_segments, obs_std, reward_std, True, generator)
    shown: Segments = gather_segments(obs, action, reward, next_obs, evenly_spaced(starts, episodes), horizon)
    predicted_obs, predicted_reward = open_loop_means(predict, members, shown)
    dims = dims if dims is not None else list(range(min(3, obs_dim)))

    rows, cols = shown.obs0.shape[0], len(dims) + 1
    figure = plt.figure(figsize=(3.2 * cols, 2.4 * (rows + 1.3)))
    grid = figure.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [1.3])
    steps = torch.arange(1, horizon + 1).numpy()
    for row in range(rows):
        panels = [(f"state[{d}]", shown.next_obs[row, :, d], predicted_obs[:, row, :, d]) for d in dims]
        panels.append(("reward", shown.rewards[row], predicted_reward[:, row]))
        for col, (name, real, predicted) in enumerate(panels):
            axis = figure.add_subplot(grid[row, col])
            axis.plot(steps, real.numpy(), color="black", label="real")
            axis.plot(steps, predicted.mean(0).numpy(), color="tab:blue", label="elites' mean")
            axis.fill_between(steps, predicted.min(0).values.numpy(), predicted.max(0).values.numpy(),
                              color="tab:blue", alpha=0.25, label="elites' spread")  # fmt: skip
            axis.set_title(f"segment {row + 1}: {name}", fontsize=9)
            axis.tick_params(labelsize=7)
            if row == 0 and col == 0:
                axis.legend(fontsize=7)
    axis = figure.add_subplot(grid[rows, :])
    _draw_error_curves(axis, {"mean": mean_errors.obs, "sampled": sampled_errors.obs}, threshold, 0)
    axis.set_title(f"error vs horizon over {curve_segments.obs0.shape[0]} segments of the last {recent} real "
                   "transitions (mostly in-sample)", fontsize=9)  # fmt: skip
    figure.suptitle(f"{source}: open-loop predictions of the {members} elites", fontsize=10)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)
    plt.close(figure)
    summary = {f"error_at_h{h}": float(mean_errors.obs[h - 1]) for h in sorted({1, min(5, horizon), horizon})}
    summary["sampled_error_at_H"] = float(sampled_errors.obs[-1])
    summary["trusted_horizon"] = float(trusted_horizon(sampled_errors.obs, threshold))
    summary["segments"] = float(curve_segments.obs0.shape[0])
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mbpo_pl diagnose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("source", type=Path, help="a checkpoint file or a run folder (logs/ENV/version_N)")
    parser.add_argument("-o", "--output", type=Path, default=Path("diagnose.png"), help="PNG file to write")
    parser.add_argument("--horizon", type=int, default=15, help="model steps H per segment")
    parser.add_argument("--episodes", type=int, default=3, help="trajectory segments drawn")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="state dimensions drawn (default 0 1 2)")
    parser.add_argument("--recent", type=int, default=2000, help="newest real transitions the segments come from")
    parser.add_argument("--threshold", type=float, default=1.0, help="trusted-horizon error threshold")
    args = parser.parse_args(argv)
    try:
        summary = diagnose(args.source, args.output, args.horizon, args.episodes, args.dims, args.recent,
                           args.threshold)  # fmt: skip
    except ConfigError as err:
        exit_with_error(err)
    print(args.output)
    for key, value in summary.items():
        print(f"{key:>20}  {value:.4g}")
