"""Does ``bf16-mixed`` fit the dynamics model worse than ``32-true``? A controlled comparison on the same real data.

A run's holdout MSE cannot answer this: two runs collect different data. This script takes the real transitions
of one checkpoint, draws a test set and a training set from them, and trains a fresh ``DynamicsModule`` (the
config's ``model.dynamics`` settings) twice per seed: in float32, and inside Lightning's ``bf16-mixed``
forward context (what a ``bf16-mixed`` run wraps around model training: hidden layers in bf16, output layer in
float32), from the same initial weights, holdout split and minibatch order. Per seed it prints the epochs until
early stopping and the elites' test MSE computed in float32, then the bf16 / fp32 ratio of the test MSE.

    python benchmarks/model_fit_precision.py RUN/checkpoints/last.ckpt --config conf/walker2d.yaml \\
        --transitions 10000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import OmegaConf

from mbpo_pl.dynamics import DynamicsModule


def real_transitions(checkpoint: str) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(inputs [N, O+A], targets [N, 1+O], obs_dim, act_dim)`` of every real transition in the checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    real = state["MBPODataModule"]["real"]
    if "data" not in real:
        raise SystemExit(f"{checkpoint}: the real buffer is memory-mapped (--data.buffer_storage memmap) and not "
                         "inside the checkpoint; use a checkpoint of a run with in-memory buffers")  # fmt: skip
    data = real["data"]  # the stored rows only, in storage order
    obs, action = data["observation"], data["action"]
    inputs, targets = DynamicsModule.make_dataset(obs, action, data["next.reward"], data["next.observation"])
    return inputs, targets, obs.shape[1], action.shape[1]


def fit_and_test(kwargs: dict, seed: int, bf16: bool, train: tuple, test: tuple) -> tuple[int, float, float]:
    """Train a fresh ensemble from ``seed``; ``(epochs, elites' test MSE in float32, seconds)``."""
    torch.manual_seed(seed)
    module = DynamicsModule(**kwargs)
    context = MixedPrecision("bf16-mixed", "cpu").forward_context() if bf16 else nullcontext()
    start = time.perf_counter()
    with context:
        stats = module.fit_ensemble(*train)
    seconds = time.perf_counter() - start
    test_mse = module.holdout_mse(*test)[module.elites].mean()
    return int(stats["epochs"]), float(test_mse), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a run's checkpoint (its real replay buffer is used)")
    parser.add_argument("--config", required=True, help="the run's config, for model.dynamics")
    parser.add_argument("--transitions", type=int, default=10000, help="training transitions (holdout included)")
    parser.add_argument("--test", type=int, default=5000, help="test transitions, disjoint from the training ones")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    inputs, targets, obs_dim, act_dim = real_transitions(args.checkpoint)
    if args.transitions + args.test > inputs.shape[0]:
        raise SystemExit(f"the checkpoint holds {inputs.shape[0]} real transitions; "
                         f"--transitions + --test = {args.transitions + args.test}: lower them")  # fmt: skip
    order = torch.randperm(inputs.shape[0], generator=torch.Generator().manual_seed(1234))
    test_rows, train_rows = order[: args.test], order[args.test : args.test + args.transitions]
    train, test = (inputs[train_rows], targets[train_rows]), (inputs[test_rows], targets[test_rows])
    kwargs = dict(OmegaConf.to_container(OmegaConf.load(args.config).model.dynamics), obs_dim=obs_dim, act_dim=act_dim)
    print(f"{args.checkpoint}: {inputs.shape[0]} real transitions; train on {args.transitions}, test on {args.test} "
          f"(target variance {float(test[1].var(0).mean()):.4g}); torch {torch.__version__}, "
          f"{args.threads} thread(s)")  # fmt: skip
    print(f"{'seed':>4} {'fp32 epochs':>12} {'fp32 test MSE':>14} {'bf16 epochs':>12} {'bf16 test MSE':>14} "
          f"{'bf16/fp32':>10} {'fp32 s':>7} {'bf16 s':>7}")  # fmt: skip
    ratios = []
    for seed in args.seeds:
        fp32 = fit_and_test(kwargs, seed, False, train, test)
        bf16 = fit_and_test(kwargs, seed, True, train, test)
        ratios.append(bf16[1] / fp32[1])
        print(f"{seed:4d} {fp32[0]:12d} {fp32[1]:14.4g} {bf16[0]:12d} {bf16[1]:14.4g} {ratios[-1]:10.3f} "
              f"{fp32[2]:7.0f} {bf16[2]:7.0f}")  # fmt: skip
    print(f"bf16/fp32 test MSE over {len(ratios)} seeds: mean {sum(ratios) / len(ratios):.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
