"""``python -m mbpo_pl test --config CONF --ckpt_path last|RUN_DIR|FILE``: a checkpoint's policy on fresh episodes.

Reads only the policy from the checkpoint (:func:`~mbpo_pl.policy.load_policy`: no replay buffer, optimizer or
training step), plays ``eval.num_episodes`` deterministic episodes (and ``eval.stochastic_episodes`` with sampled
actions) of the env it was trained on, prints the summary as a table and writes it, with every episode, to
``<run folder>/test/<checkpoint>-env_steps=<N>.json`` (never over an earlier file). ``eval.video_path`` also writes
the first ``eval.video_episodes`` deterministic episodes as a video.

The episodes are fresh: episode ``i`` resets with ``eval.seed + TEST_SEED_OFFSET + i``, never one of the seeds that
training's evaluations used (``eval.seed + i``).
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from callbacks.evaluation import Evaluation
from mbpo_pl.data import MBPODataModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.evaluate import PolicyEvaluation, evaluate_policy, offscreen_rendering, write_video
from mbpo_pl.policy import Policy, load_policy

TEST_SEED_OFFSET = 1_000_000


def _summary_cells(evaluation: PolicyEvaluation) -> dict[str, str]:
    returns, lengths = evaluation.returns, evaluation.lengths
    cells = {
        "episodes": str(len(evaluation.episodes)),
        "return (mean ± std)": f"{returns.mean():,.1f} ± {returns.std():,.1f}",
        "return min / max": f"{returns.min():,.1f} / {returns.max():,.1f}",
        "episode length": f"{lengths.mean():,.0f} ({lengths.min()}–{lengths.max()})",
    }
    for term, sums in evaluation.reward_terms().items():
        cells[term] = f"{sums.mean():,.1f} ± {sums.std():,.1f}"
    return cells


def summary_table(policy: Policy, evaluations: list[PolicyEvaluation]) -> Table:
    """One column per evaluation (deterministic, stochastic), one row per figure (lengths: mean (min–max))."""
    steps = f"{policy.env_steps:,} env steps" if policy.env_steps is not None else "env steps unknown"
    table = Table(title=f"{policy.env_id} policy after {steps}")
    table.add_column("")
    columns = [_summary_cells(e) for e in evaluations]
    for evaluation in evaluations:
        table.add_column("deterministic" if evaluation.deterministic else "stochastic", justify="right")
    for row in dict.fromkeys(key for cells in columns for key in cells):
        table.add_row(row, *(cells.get(row, "—") for cells in columns))
    return table


def record_path(checkpoint: Path, env_steps: int | None) -> Path:
    """``<run>/test/<checkpoint stem>-env_steps=<N>.json`` (``-2``, ``-3``, ... when taken), beside the checkpoints
    of a run folder, else beside the file; for a population seed's folder (``<run>/seed_<s>``), in that folder
    (``<run>/seed_<s>/test/last-env_steps=<N>.json``)."""
    if checkpoint.is_dir():  # a population seed's folder: its policy is cut out of the population's last.ckpt
        folder, name = checkpoint, "last"
    else:
        folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        name = checkpoint.stem
    stem = f"{name}-env_steps={env_steps if env_steps is not None else 'unknown'}"
    path, number = folder / "test" / f"{stem}.json", 1
    while path.exists():
        number += 1
        path = folder / "test" / f"{stem}-{number}.json"
    return path


def write_record(path: Path, policy: Policy, evaluations: list[PolicyEvaluation], video: Path | None) -> Path:
    def episodes(evaluation: PolicyEvaluation) -> list[dict]:
        return [{"seed": seed, "return": e.total_return, "length": e.length, **e.reward_terms}
                for seed, e in zip(evaluation.seeds, evaluation.episodes)]  # fmt: skip

    record = {
        "checkpoint": str(policy.source),
        "env_id": policy.env_id,
        "env_kwargs": policy.env_kwargs,
        "env_steps": policy.env_steps,
        "video": None if video is None else str(video),
        **{
            ("deterministic" if e.deterministic else "stochastic"): {
                "summary": e.metrics(prefix=""),
                "episodes": episodes(e),
            }
            for e in evaluations
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x") as handle:  # never over another record
        json.dump(record, handle, indent=1)
    return path


def record_video(policy: Policy, evaluation: Evaluation, path: Path) -> Path:
    """The first ``video_episodes`` deterministic test episodes rendered offscreen to ``path``."""
    offscreen_rendering()
    size = {"width": evaluation.video_size, "height": evaluation.video_size}
    try:
        try:
            env = policy.make_env(render_mode="rgb_array", **size)
        except TypeError:  # an env without a frame-size option
            env = policy.make_env(render_mode="rgb_array")
        try:
            episodes = evaluate_policy(policy, env, evaluation.video_episodes,
                                       evaluation.seed + TEST_SEED_OFFSET, render=True)  # fmt: skip
        finally:
            env.close()
    except Exception as err:  # noqa: BLE001 (GL back ends fail with their own exception types)
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"eval.video_path: rendering {policy.env_id} offscreen failed ({type(err).__name__}: {err}). MuJoCo "
            "renders through MUJOCO_GL (egl here by default); on a machine without EGL try MUJOCO_GL=osmesa."
        ) from err
    return write_video(episodes.episodes, episodes.seeds, path, evaluation.video_fps)


def evaluate_checkpoint(checkpoint: Path, datamodule: MBPODataModule, evaluation: Evaluation,
                    console: Console | None = None) -> Path:  # fmt: skip
    """Evaluate ``checkpoint``'s policy as the module docstring says; returns the record's path."""
    policy = load_policy(checkpoint, option="--ckpt_path")
    datamodule.env_spec.check_checkpoint(
        policy.env_spec.signature(), what=f"--ckpt_path {checkpoint}",
        fix="Test it with the config it was trained with (its config.yaml beside the logs).",
    )  # fmt: skip
    video = Path(evaluation.video_path) if evaluation.video_path is not None else None
    if video is not None and video.suffix not in (".mp4", ".gif"):
        raise ConfigError(f"eval.video_path={video}: write a .mp4 or a .gif file.")
    seed = evaluation.seed + TEST_SEED_OFFSET
    env = policy.make_env()
    try:
        evaluations = [evaluate_policy(policy, env, evaluation.num_episodes, seed)]
        if evaluation.stochastic_episodes:
            evaluations.append(evaluate_policy(policy, env, evaluation.stochastic_episodes, seed, deterministic=False))
    finally:
        env.close()
    if video is not None:
        record_video(policy, evaluation, video)
    console = console or Console()
    console.print(f"checkpoint: {checkpoint}", soft_wrap=True)
    console.print(f"episodes:   reset with seeds {seed}–{seed + max(len(e.seeds) for e in evaluations) - 1}",
                  soft_wrap=True)  # fmt: skip
    console.print(summary_table(policy, evaluations))
    record = write_record(record_path(checkpoint, policy.env_steps), policy, evaluations, video)
    console.print(f"results:    {record}" + (f"\nvideo:      {video}" if video is not None else ""), soft_wrap=True)
    return record
