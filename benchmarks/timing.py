"""Where and how the benchmark times: the device, the precision contexts, the variants compared, the inputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from tensordict import TensorDict

from mbpo_pl.envs import make_env
from mbpo_pl.rollout import make_transitions

OBS, ACT, BATCH, G = 11, 3, 256, 20  # Hopper-v5, paper settings


@dataclass(frozen=True)
class Bench:
    """The benchmark's setting, passed to every section.

    Args:
        device: where networks, buffers and rollouts live.
        graphs: on CUDA, also time the CUDA-graph variants.
    """

    device: torch.device = torch.device("cpu")
    graphs: bool = True

    @property
    def with_graphs(self) -> bool:
        return self.device.type == "cuda" and self.graphs

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
        """Seconds per call (median of 3 rounds of ``repeats`` calls)."""
        for _ in range(warmup):
            fn()
        rounds = []
        for _ in range(3):
            self.sync()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            self.sync()
            rounds.append((time.perf_counter() - start) / repeats)
        return sorted(rounds)[1]

    def precision(self, fast: bool):
        """The context a Trainer with ``precision="bf16-mixed"`` (fast) or ``"32-true"`` runs its passes in.

        Lightning's autocast disables the weight-cast cache (a cached bf16 copy would go stale after every in-place
        optimizer step inside the context), so every pass casts its weights afresh; the figures include that cost.
        """
        return MixedPrecision("bf16-mixed", self.device.type).forward_context if fast else nullcontext

    def variants(self, plain: type, fast: type) -> list[tuple[str, type, bool, dict]]:
        """(name, class, bf16, extra constructor args): plain fp32, fast fp32, fast bf16, and on CUDA fast bf16 with
        the training steps replayed as CUDA graphs."""
        variants = [("plain_fp32", plain, False, {}), ("fast_fp32", fast, False, {}), ("fast_bf16", fast, True, {})]
        if self.with_graphs:
            variants.append(("fast_bf16_graph", fast, True, {"cuda_graphs": True}))
        return variants

    def random_batch(self, n: int) -> TensorDict:
        """``n`` random transitions of Hopper's sizes (for timings that do not depend on the values)."""
        return TensorDict(
            {
                "observation": torch.randn(n, OBS),
                "action": torch.rand(n, ACT) * 2 - 1,
                "next": {"observation": torch.randn(n, OBS), "reward": torch.randn(n, 1),
                         "terminated": torch.rand(n, 1) < 0.01},
            },
            batch_size=[n],
        ).to(self.device)  # fmt: skip

    def hopper_transitions(self, n: int, seed: int = 0) -> TensorDict:
        """``n`` real Hopper-v5 transitions from a uniform random policy (episodes reset on termination)."""
        env = make_env("Hopper-v5")
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        rows = []
        for _ in range(n):
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows.append((obs, action, reward, next_obs, terminated))
            obs = env.reset()[0] if terminated or truncated else next_obs
        env.close()
        o, a, r, n_o, t = (torch.as_tensor(np.array(column), dtype=torch.float32) for column in zip(*rows))
        return make_transitions(o, a, r, n_o, t.bool(), torch.zeros_like(t, dtype=torch.bool)).to(self.device)


def fastest(results: dict[str, float], prefix: str) -> str:
    """The name of the fastest variant timed under ``prefix`` (the graphed one where it was timed)."""
    return "fast_bf16_graph" if f"{prefix}_fast_bf16_graph" in results else "fast_bf16"
