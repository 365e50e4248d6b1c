"""Component timings of mbpo_pl at Hopper-v5 sizes, printed as a table and written as JSON.

    python benchmarks/bench.py [--threads 2] [--out benchmarks/results.json] [--quick]

Each speed ratio compares two paths measured in this same run. Run on a quiet machine: any other CPU-heavy
process makes torch's OpenMP threads spin and the figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import gymnasium as gym
import lightning
import torch
from lightning.pytorch import LightningDataModule, Trainer
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.rollout import branched_rollout
from mbpo_pl.sac import SACModule
from mbpo_pl.system import MBPO
from mbpo_pl.termination import get_termination_fn

OBS, ACT, BATCH, G = 11, 3, 256, 20  # Hopper-v5, paper settings


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Seconds per call (median of 3 rounds of ``repeats`` calls)."""
    for _ in range(warmup):
        fn()
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        rounds.append((time.perf_counter() - start) / repeats)
    return sorted(rounds)[1]


def random_batch(n: int) -> TensorDict:
    return TensorDict(
        {
            "observation": torch.randn(n, OBS),
            "action": torch.rand(n, ACT) * 2 - 1,
            "next": {"observation": torch.randn(n, OBS), "reward": torch.randn(n, 1),
                     "terminated": torch.rand(n, 1) < 0.01},
        },
        batch_size=[n],
    )  # fmt: skip


def bench_sac(repeats: int) -> dict[str, float]:
    results = {}
    for name, context in (("fp32", nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        sac = SACModule(OBS, ACT, target_entropy=-1)
        batch = random_batch(BATCH)

        def update(sac=sac, batch=batch, context=context) -> None:
            with context():
                sac.update(batch)

        results[f"sac_update_ms_{name}"] = 1000 * timed(update, repeats)
    return results


class _Batches(IterableDataset):
    def __init__(self, steps: int) -> None:
        self.steps, self.batch = steps, random_batch(G * BATCH).reshape(G, BATCH)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch


class _Data(LightningDataModule):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Batches(self.steps), batch_size=None, collate_fn=lambda b: b)


def bench_trainer_overhead(env_steps: int) -> dict[str, float]:
    """The same G SAC updates per env step: a raw loop over ``SACModule.update`` vs ``Trainer.fit`` on MBPO."""
    torch.manual_seed(0)
    model = MBPO(DynamicsModule(OBS, ACT), SACModule(OBS, ACT, target_entropy=-1))
    batch = random_batch(G * BATCH).reshape(G, BATCH)
    raw = SACModule(OBS, ACT, target_entropy=-1)
    for minibatch in batch.unbind(0)[:3]:
        raw.update(minibatch)
    start = time.perf_counter()
    for _ in range(env_steps):
        for minibatch in batch.unbind(0):
            raw.update(minibatch)
    raw_seconds = time.perf_counter() - start
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, datamodule=_Data(env_steps))
    trainer_seconds = time.perf_counter() - start
    updates = env_steps * G
    return {
        "sac_updates_per_s_raw": updates / raw_seconds,
        "sac_updates_per_s_trainer": updates / trainer_seconds,
        "trainer_overhead_pct": 100 * (trainer_seconds / raw_seconds - 1),
    }


def bench_ensemble(repeats: int, holdout: int = 5000) -> dict[str, float]:
    results = {}
    module = DynamicsModule(OBS, ACT)
    optimizer = torch.optim.Adam(module.model.parameters(), lr=1e-3)
    inputs, targets = torch.randn(7, BATCH, OBS + ACT), torch.randn(7, BATCH, OBS + 1)
    for name, context in (("fp32", nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):

        def step(context=context) -> None:
            with context():
                loss, _ = module.loss(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        results[f"ensemble_train_step_ms_{name}"] = 1000 * timed(step, repeats)
    h_in, h_tg = torch.randn(holdout, OBS + ACT), torch.randn(holdout, OBS + 1)
    results["holdout_eval_ms"] = 1000 * timed(lambda: module.holdout_mse(h_in, h_tg), max(repeats // 4, 3))
    return results


def bench_rollout(states: int, repeats: int) -> dict[str, float]:
    module = DynamicsModule(OBS, ACT)
    actor = TanhGaussianActor(OBS, ACT)
    done = get_termination_fn("Hopper-v5")
    start_obs = torch.randn(states, OBS) * 0.1 + torch.tensor([1.25] + [0.0] * (OBS - 1))
    elites = torch.arange(5)

    @torch.no_grad()
    def all_members_step() -> None:  # the plain formulation: every member on every state, then pick
        action = actor.act(start_obs)
        inputs = torch.cat([start_obs, action], -1).expand(7, -1, -1)
        mean, logvar = module.model(inputs)
        choice = elites[torch.randint(5, (states,))]
        picked = (
            mean[choice, torch.arange(states)]
            + torch.randn(states, OBS + 1) * (0.5 * logvar[choice, torch.arange(states)]).exp()
        )
        done(start_obs + picked[:, 1:])

    chosen = timed(lambda: branched_rollout(module.model, actor, elites, done, start_obs, 1), repeats, warmup=1)
    plain = timed(all_members_step, repeats, warmup=1)
    return {
        f"rollout_step_s_{states // 1000}k_chosen_elite": chosen,
        f"rollout_step_s_{states // 1000}k_all_members": plain,
        "rollout_chosen_elite_speedup": plain / chosen,
    }


def bench_env(steps: int) -> dict[str, float]:
    env = gym.make("Hopper-v5")
    actor = TanhGaussianActor(OBS, ACT)
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        action = actor.act(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    return {"env_step_with_policy_ms": 1000 * (time.perf_counter() - start) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier figures)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    scale = 0.2 if args.quick else 1.0
    results: dict[str, float] = {}
    results.update(bench_sac(int(200 * scale) or 5))
    results.update(bench_trainer_overhead(int(50 * scale) or 2))
    results.update(bench_ensemble(int(100 * scale) or 5))
    results.update(bench_rollout(100_000, 3 if not args.quick else 1))
    results.update(bench_env(int(2000 * scale) or 50))
    # Per 1000 env steps: 20,000 SAC updates, plus one model-training call per 250 steps (4 per 1000 steps).
    results["sac_s_per_1000_env_steps_fp32"] = 1000 * G * results["sac_update_ms_fp32"] / 1000
    results["sac_s_per_1000_env_steps_bf16"] = 1000 * G * results["sac_update_ms_bf16"] / 1000
    meta = {
        "threads": args.threads,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cpu": platform.processor() or platform.machine(),
        "quick": args.quick,
    }
    width = max(map(len, results))
    print(f"mbpo_pl benchmark ({meta})")
    for key, value in results.items():
        print(f"{key:<{width}}  {value:12.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
