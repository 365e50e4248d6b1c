"""Component timings of mbpo_pl at Hopper-v5 sizes, printed as a table and written as JSON.

    python benchmarks/bench.py [--device cpu|cuda] [--threads 2] [--out benchmarks/results.json] [--quick]
    python benchmarks/bench.py --reproject benchmarks/results_h200.json   # projections only, current epochs/call

Each speed ratio compares two paths measured in this same run. bf16 runs under Lightning's own ``bf16-mixed``
precision plugin (autocast without the weight-cast cache), exactly as ``--trainer.precision bf16-mixed`` trains.
Run on a quiet machine: any other CPU-heavy process makes torch's OpenMP threads spin and the figures meaningless.
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
from unittest import mock

import lightning
import numpy as np
import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.plugins.precision import MixedPrecision
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset

from callbacks.model_diagnostics import ModelDiagnostics
from callbacks.real_env import RealEnvRunner
from mbpo_pl.data import MBPODataModule
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.envs import make_env
from mbpo_pl.losses import alpha_loss, polyak_update, soft_q_target
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.rollout import branched_rollout, make_transitions, rollout_length
from mbpo_pl.sac import SACModule
from mbpo_pl.system import MBPO
from mbpo_pl.termination import get_termination_fn
from mbpo_pl.utils import optimizer_step, own_optimizers

OBS, ACT, BATCH, G = 11, 3, 256, 20  # Hopper-v5, paper settings
DEVICE = torch.device("cpu")  # set by --device
GRAPHS = True  # on CUDA, also time the CUDA-graph variants (off with --no-graphs)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Seconds per call (median of 3 rounds of ``repeats`` calls)."""
    for _ in range(warmup):
        fn()
    rounds = []
    for _ in range(3):
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
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
    ).to(DEVICE)  # fmt: skip


class PlainDynamics(DynamicsModule):
    """The plain formulation, for the ratios: L2 term computed in the loss every step, unfused Adam."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.model.parameters(), lr=self.lr)]

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total, nll = super().loss(inputs, targets)
        l2 = sum(c * layer.weight.square().sum() / 2 for c, layer in zip(self.weight_decay, self.model.layers))
        return total + l2, nll


class PlainSAC(SACModule):
    """The plain formulation, for the ratios: three unfused Adam optimizers stepped one after the other."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.critic.parameters(), lr=self.lr),
            torch.optim.Adam(self.actor.parameters(), lr=self.lr),
            torch.optim.Adam([self.log_alpha], lr=self.lr),
        ]

    def update(self, batch: TensorDict, through_lightning: bool = True) -> dict[str, torch.Tensor]:
        critic_opt, actor_opt, alpha_opt = own_optimizers(self)
        obs, action, next_obs = batch["observation"], batch["action"], batch["next", "observation"]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs)
            next_q = self.critic_target(next_obs, next_action)
            reward, terminated = batch["next", "reward"].squeeze(-1), batch["next", "terminated"].squeeze(-1)
            target_q = soft_q_target(reward, terminated, next_q, next_log_prob, alpha, self.gamma)
        critic_loss = 0.5 * (self.critic(obs, action) - target_q).square().mean(dim=1).sum()
        optimizer_step(self, critic_opt, critic_loss, through_lightning)
        new_action, log_prob = self.actor(obs)
        self.critic.requires_grad_(False)
        actor_loss = (alpha * log_prob - self.critic(obs, new_action).min(dim=0).values).mean()
        self.critic.requires_grad_(True)
        optimizer_step(self, actor_opt, actor_loss, through_lightning)
        optimizer_step(self, alpha_opt, alpha_loss(self.log_alpha, log_prob, self.target_entropy), through_lightning)
        polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.tau)
        return {"critic_loss": critic_loss.detach()}


def _precision(fast: bool):
    """The context a Trainer with ``precision="bf16-mixed"`` (fast) or ``"32-true"`` runs its passes in.

    Lightning's autocast disables the weight-cast cache (a cached bf16 copy would go stale after every in-place
    optimizer step inside the context), so every pass casts its weights afresh; the figures include that cost.
    """
    return MixedPrecision("bf16-mixed", DEVICE.type).forward_context if fast else nullcontext


def _variants(plain: type, fast: type) -> list[tuple[str, type, bool, dict]]:
    """(name, class, bf16, extra constructor args): plain fp32, fast fp32, fast bf16, and on CUDA fast bf16 with
    the training steps replayed as CUDA graphs."""
    variants = [("plain_fp32", plain, False, {}), ("fast_fp32", fast, False, {}), ("fast_bf16", fast, True, {})]
    if DEVICE.type == "cuda" and GRAPHS:
        variants.append(("fast_bf16_graph", fast, True, {"cuda_graphs": True}))
    return variants


def fastest(results: dict[str, float], prefix: str) -> str:
    return "fast_bf16_graph" if f"{prefix}_fast_bf16_graph" in results else "fast_bf16"


def bench_sac(repeats: int) -> dict[str, float]:
    """SAC updates, timed as one env step's G = 20 updates on a ``[G, 256]`` batch (``update_many``) and reported
    per update: plain (three unfused Adam steps one after the other, fp32), fast in fp32 (one simultaneous fused
    step), fast in bf16 (and, on CUDA, fast in bf16 replayed as one CUDA graph per env step)."""
    results = {}
    batches = random_batch(G * BATCH).reshape(G, BATCH)
    for name, cls, bf16, extra in _variants(PlainSAC, SACModule):
        sac = cls(OBS, ACT, target_entropy=-1, **extra).to(DEVICE)
        context = _precision(bf16)

        def env_step(sac=sac, context=context) -> None:
            with context():
                sac.update_many(batches)

        results[f"sac_update_ms_{name}"] = 1000 * timed(env_step, max(repeats // G, 2)) / G
    results["sac_update_speedup"] = (
        results["sac_update_ms_plain_fp32"] / results[f"sac_update_ms_{fastest(results, 'sac_update_ms')}"]
    )
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
    """The same G SAC updates per env step: ``Trainer.fit`` on MBPO vs a raw loop over ``SACModule.update_many``.

    Both run in one process, interleaved step by step so that drift in the machine's speed (frequency, neighbours)
    falls on both alike: after every Trainer step (one ``training_step`` of G updates, Lightning's loop, data
    loader and hooks included), a callback times one raw ``update_many`` of a second, identical module in the same
    precision context, outside Lightning. The Trainer step is the wall time from the end of one raw call to the end
    of the next Trainer step. Overhead = median Trainer step / median raw step - 1. The Trainer carries 4 more no-op
    callbacks (a real run has 4: checkpoint, evaluation, env loop, progress bar), since Lightning dispatches the
    backward/optimizer-step hooks to every callback. Measured with the default (Lightning's backward/step path for
    the first update of each env step) and with ``lightning_hooks_every_step`` (that path for all G updates).
    """
    results = {}
    batch = random_batch(G * BATCH).reshape(G, BATCH)
    settings = [
        ("fp32", "32-true", False, False),
        ("bf16", "bf16-mixed", False, False),
        ("fp32_hooks_every_step", "32-true", False, True),
        ("bf16_hooks_every_step", "bf16-mixed", False, True),
    ]
    if DEVICE.type == "cuda" and GRAPHS:
        settings.append(("bf16_graph", "bf16-mixed", True, False))
    for name, precision, graphs, every_step in settings:
        torch.manual_seed(0)
        raw = SACModule(OBS, ACT, target_entropy=-1, cuda_graphs=graphs).to(DEVICE)
        sac = SACModule(OBS, ACT, target_entropy=-1, cuda_graphs=graphs, lightning_hooks_every_step=every_step)
        model = MBPO(DynamicsModule(OBS, ACT), sac)
        timer = _Interleaved(raw, batch, warmup=3)
        trainer = Trainer(
            max_epochs=1, accelerator=DEVICE.type, devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, precision=precision,
            callbacks=[*(Callback() for _ in range(4)), timer],
        )  # fmt: skip
        trainer.fit(model, datamodule=_Data(env_steps + 3))
        raw_s, trainer_s = float(np.median(timer.raw)), float(np.median(timer.trainer))
        results[f"sac_updates_per_s_raw_{name}"] = G / raw_s
        results[f"sac_updates_per_s_trainer_{name}"] = G / trainer_s
        results[f"trainer_overhead_pct_{name}"] = 100 * (trainer_s / raw_s - 1)
    return results


class _Interleaved(Callback):
    """Times each Trainer step and, after it, one raw ``update_many`` (see :func:`bench_trainer_overhead`)."""

    def __init__(self, raw: SACModule, batch: TensorDict, warmup: int) -> None:
        self.raw_module, self.batch, self.warmup = raw, batch, warmup
        self.raw: list[float] = []
        self.trainer: list[float] = []
        self._resumed = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        sync()
        ended = time.perf_counter()
        if batch_idx >= self.warmup:
            self.trainer.append(ended - self._resumed)
        with trainer.precision_plugin.train_step_context():  # the context Lightning runs training_step in
            start = time.perf_counter()
            self.raw_module.update_many(self.batch)
            sync()
            self._resumed = time.perf_counter()
        if batch_idx >= self.warmup:
            self.raw.append(self._resumed - start)


def bench_ensemble(repeats: int, holdout: int = 5000) -> dict[str, float]:
    """One ensemble training step (7 x 4 x 200, 256 per member): plain (L2 term in the loss, unfused Adam, fp32),
    fast in fp32 (L2 in the optimizer, fused Adam), fast in bf16 (and, on CUDA, fast in bf16 as a CUDA graph)."""
    results = {}
    inputs = torch.randn(7, BATCH, OBS + ACT, device=DEVICE)
    targets = torch.randn(7, BATCH, OBS + 1, device=DEVICE)
    for name, cls, bf16, extra in _variants(PlainDynamics, DynamicsModule):
        module = cls(OBS, ACT, fused_optimizer=cls is DynamicsModule, **extra).to(DEVICE)
        context = _precision(bf16)

        def step(module=module, context=context) -> None:
            with context():
                module.graphed_step(inputs, targets)

        results[f"ensemble_train_step_ms_{name}"] = 1000 * timed(step, repeats)
    results["ensemble_step_speedup"] = (
        results["ensemble_train_step_ms_plain_fp32"]
        / results[f"ensemble_train_step_ms_{fastest(results, 'ensemble_train_step_ms')}"]
    )
    h_in, h_tg = torch.randn(holdout, OBS + ACT, device=DEVICE), torch.randn(holdout, OBS + 1, device=DEVICE)
    for name, bf16 in (("fp32", False), ("bf16", True)):
        context = _precision(bf16)

        def evaluate(context=context) -> None:
            with context():
                module.holdout_mse(h_in, h_tg)

        results[f"holdout_eval_ms_{name}"] = 1000 * timed(evaluate, max(repeats // 4, 3))
    return results


def _mlp_products(
    members: int, sizes: list[int], forward: int, weight_grads: int, input_grads: int, first_input_grads: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(a, b)`` operands of every ``a @ b`` that ``forward`` passes of an MLP (``members`` fused members,
    layer widths ``sizes``, batch 256) and their backward passes compute: ``weight_grads`` passes computing the
    weight gradients (``x^T @ grad_out``), ``input_grads`` passes computing the gradients of the hidden inputs
    (``grad_out @ W^T``), ``first_input_grads`` of them also the first layer's (a gradient reaching the input)."""
    dtype = torch.bfloat16

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(*(([members] if members > 1 else []) + list(shape)), device=DEVICE, dtype=dtype)

    products = []
    for layer, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        products += [(t(BATCH, i), t(i, o))] * forward + [(t(i, BATCH), t(BATCH, o))] * weight_grads
        products += [(t(BATCH, o), t(o, i))] * (first_input_grads if layer == 0 else input_grads)
    return products


def bench_matmul_floor(repeats: int) -> dict[str, float]:
    """The matrix products alone of one SAC update and one ensemble training step, in bf16 and with the update's
    own shapes: what the fast path would cost if every other kernel (activations, casts, losses, Adam) and all
    dispatch were free. A floor for these network sizes on this machine, not an achievable figure.

    SAC (batch 256, 2 x 256 hidden): actor forward on next and current observations, backward on the current;
    twin critics (one fused pair) forward as targets, as the regressed critics (full backward) and as the actor's
    frozen critics (backward to the action only). Ensemble: 7 members, 4 x 200 hidden, one forward and backward.
    """
    actor = [OBS, 256, 256, 2 * ACT]
    critic = [OBS + ACT, 256, 256, 1]
    sac = _mlp_products(1, actor, 2, 1, 1, 0) + _mlp_products(2, critic, 3, 1, 2, 1)
    ensemble = _mlp_products(7, [OBS + ACT, 200, 200, 200, 200, 2 * (OBS + 1)], 1, 1, 1, 0)
    results = {}
    for name, products in (("sac_update", sac), ("ensemble_train_step", ensemble)):
        results[f"{name}_ms_matmuls_only"] = 1000 * timed(lambda p=products: [a @ b for a, b in p], repeats)
    return results


def _bf16_output_layers():
    """Run the output layers under autocast like the hidden ones (bf16 heads), for the cost comparison only."""
    def under_autocast(layer, x, *args):  # noqa: ANN001, ANN202
        return layer(x, *args)

    return mock.patch.multiple("mbpo_pl.nets.ensemble", float32_output=under_autocast), mock.patch.multiple(
        "mbpo_pl.nets.sac", float32_output=under_autocast
    )


def bench_float32_heads(repeats: int) -> dict[str, float]:
    """What computing the output layers (critic, actor and ensemble heads) in float32 costs on the bf16 fast path:
    one SAC update and one ensemble training step with float32 heads (the shipped code) and with bf16 heads,
    alternated round by round in this run."""
    sac = SACModule(OBS, ACT, target_entropy=-1).to(DEVICE)
    dynamics = DynamicsModule(OBS, ACT, fused_optimizer=True).to(DEVICE)
    batches = random_batch(G * BATCH).reshape(G, BATCH)
    inputs = torch.randn(7, BATCH, OBS + ACT, device=DEVICE)
    targets = torch.randn(7, BATCH, OBS + 1, device=DEVICE)
    context = _precision(True)

    def sac_env_step() -> None:
        with context():
            sac.update_many(batches)

    def ensemble_step() -> None:
        with context():
            dynamics.graphed_step(inputs, targets)

    times: dict[str, list[float]] = {}
    for _ in range(3):  # alternate, so drift in the machine's speed hits both alike
        for heads in ("float32", "bf16"):
            patches = _bf16_output_layers() if heads == "bf16" else (nullcontext(), nullcontext())
            with patches[0], patches[1]:
                times.setdefault(f"sac_update_ms_{heads}_heads", []).append(
                    1000 * timed(sac_env_step, max(repeats // G, 2)) / G
                )
                times.setdefault(f"ensemble_train_step_ms_{heads}_heads", []).append(
                    1000 * timed(ensemble_step, repeats)
                )
    results = {key: float(np.median(values)) for key, values in times.items()}
    for name in ("sac_update", "ensemble_train_step"):
        results[f"{name}_float32_heads_cost"] = (
            results[f"{name}_ms_float32_heads"] / results[f"{name}_ms_bf16_heads"] - 1
        )
    return results


@torch.no_grad()
def all_members_rollout_step(model, actor, elites, done, obs: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """One rollout step in the plain formulation: every member on every state, then pick each state's elite."""
    n = obs.shape[0]
    mean, logvar = model(torch.cat([obs, actor.act(obs)], -1).expand(model.ensemble_size, -1, -1))
    choice = elites[torch.randint(elites.numel(), (n,), device=obs.device)]
    rows = torch.arange(n, device=obs.device)
    picked = mean[choice, rows] + torch.randn(n, OBS + 1, device=obs.device) * (0.5 * logvar[choice, rows]).exp()
    return done(obs + picked[:, 1:])


def bench_rollout(states: int, repeats: int) -> dict[str, float]:
    module = DynamicsModule(OBS, ACT).to(DEVICE)
    actor = TanhGaussianActor(OBS, ACT).to(DEVICE)
    done = get_termination_fn("Hopper-v5")
    start_obs = torch.randn(states, OBS, device=DEVICE) * 0.1
    start_obs[:, 0] += 1.25
    elites = torch.arange(5, device=DEVICE)
    chosen = timed(lambda: branched_rollout(module.model, actor, elites, done, start_obs, 1), repeats, warmup=1)
    plain = timed(lambda: all_members_rollout_step(module.model, actor, elites, done, start_obs), repeats, warmup=1)
    return {
        f"rollout_step_s_{states // 1000}k_chosen_elite": chosen,
        f"rollout_step_s_{states // 1000}k_all_members": plain,
        "rollout_chosen_elite_speedup": plain / chosen,
    }


def bench_env(steps: int) -> dict[str, float]:
    """Real Hopper-v5 steps as the env loop takes them (``RealEnvRunner``: policy on the training device, one host
    transfer per step, the transition packed for the buffer, resets at episode ends)."""
    runner = RealEnvRunner(make_env("Hopper-v5"), seed=0)
    actor = TanhGaussianActor(OBS, ACT).to(DEVICE)
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(actor.act, DEVICE)
    runner.close()
    return {"env_step_with_policy_ms": 1000 * (time.perf_counter() - start) / steps}


# --------------------------------------------------------------------------- per 1000 env steps
# Epochs per model-training call: early stopping decides them from the data, so they are not measured on the
# random-policy data below but read from a real Hopper-v5 run with the paper settings (seed 0, bf16-mixed, 2 CPU
# cores; `dynamics/epochs` in its logs; docs/speed.md): `epochs_per_call.csv` beside this file holds, per block of
# 5,000 env steps, the mean epochs of the calls in it; the first row (block 0) is the first call (5,000 random
# transitions, fresh model); the last block's mean stands for every later call.
EPOCHS_PER_CALL_FILE = Path(__file__).with_name("epochs_per_call.csv")


def load_epochs_per_call(path: Path = EPOCHS_PER_CALL_FILE) -> list[tuple[int, float]]:
    """``[(block start in env steps, mean epochs per call)]`` from the CSV (columns ``block_start,epochs``)."""
    with path.open() as handle:
        rows = [line.strip().split(",") for line in handle if line.strip()]
    return [(int(start), float(epochs)) for start, epochs in rows[1:]]


EPOCHS_PER_CALL = load_epochs_per_call()


def epochs_per_call(env_step: int) -> float:
    """Epochs of the model-training call at ``env_step`` (the first call is the one at 5,000 steps)."""
    first, *later = EPOCHS_PER_CALL
    if env_step <= later[0][0]:
        return first[1]
    return [epochs for start, epochs in later if start < env_step][-1]


def hopper_transitions(n: int, seed: int = 0) -> TensorDict:
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
    return make_transitions(o, a, r, n_o, t.bool(), torch.zeros_like(t, dtype=torch.bool)).to(DEVICE)


def bench_diagnostics(repeats: int, real_size: int = 100_000, k: int = 15) -> dict[str, float]:
    """``ModelDiagnostics`` at Hopper sizes (fp32): one measurement (open-loop errors of the elites on the newest
    250 real transitions, H = k = 15; model-vs-real statistics of a real buffer of ``real_size`` and a model buffer of
    ``k * 100k``) against one model-training call at that size (its epochs as in ``epochs_per_call``)."""
    real = hopper_transitions(real_size)
    data = MBPODataModule("Hopper-v5")
    data.setup("fit")
    data.add_real(real)
    data.resize_model_buffer(k * 100_000)
    data.add_model(torch.cat([real] * (k * 100_000 // real_size)))
    dynamics = DynamicsModule(OBS, ACT).to(DEVICE)
    inputs, targets = dynamics.make_dataset(real["observation"], real["action"], real["next", "reward"],
                                            real["next", "observation"])  # fmt: skip
    dynamics.model.normalizer.fit(inputs)
    diagnostics = ModelDiagnostics()
    model_error = timed(lambda: diagnostics.model_error(data, dynamics, k, k), repeats)
    data_shift = timed(lambda: diagnostics.data_shift(data), repeats)
    batch_in, batch_tg = inputs[: 7 * BATCH].reshape(7, BATCH, -1), targets[: 7 * BATCH].reshape(7, BATCH, -1)
    step = timed(lambda: dynamics.graphed_step(batch_in, batch_tg), repeats)
    steps_per_epoch = (real_size - min(int(0.2 * real_size), 5000)) / BATCH
    call = epochs_per_call(real_size) * steps_per_epoch * step
    return {
        "diagnostics_model_error_ms": 1000 * model_error,
        "diagnostics_data_shift_ms": 1000 * data_shift,
        "model_training_call_s_100k": call,
        "diagnostics_per_model_training_call": (model_error + data_shift) / call,
    }


def per_1000_env_steps(real: TensorDict, k: int, fast: bool, epochs: float, sac_env_steps: int) -> dict[str, float]:
    """Wall seconds per 1000 Hopper env steps with the paper settings, split by phase.

    ``real`` is the real buffer's content (its size sets the model-training cost); ``k`` the rollout length.
    Per 1000 env steps: 4 model-training calls of ``epochs`` epochs (timed over 2 and scaled), 4 rollouts of
    100,000 start states for ``k`` steps, 1000 env steps each followed by one ``[G, 256]`` sample of both buffers
    and G = 20 SAC updates (timed over ``sac_env_steps`` and scaled), and one 5-episode evaluation counted at its
    longest (5 x 1000 steps). The plain path is fp32 with unfused Adam, three SAC optimizer steps, the L2 term in
    the loss and rollouts that run every state through all 7 members; the fast path is bf16 autocast (Lightning's
    ``bf16-mixed``), fused Adam, the L2 term in the optimizer, one simultaneous SAC step (critics, actor and
    temperature from the same parameters, as the official code), chosen-elite rollouts and, on CUDA, the SAC
    updates and ensemble steps replayed as CUDA graphs (``cuda_graphs``). Model epochs are timed on a second,
    warm-started training call (graphs already captured in the first). Rollouts never
    terminate here (the Hopper rule is evaluated but ignored), so both paths roll the same 100,000 x k states:
    the upper bound of a real run, where trained models keep most rollouts alive.
    """
    context = _precision(fast)
    graphs = fast and DEVICE.type == "cuda" and GRAPHS
    torch.manual_seed(0)
    obs, action = real["observation"], real["action"]
    dynamics = (DynamicsModule if fast else PlainDynamics)(
        OBS, ACT, patience=10**6, max_epochs_per_train=2, fused_optimizer=fast, cuda_graphs=graphs
    ).to(DEVICE)
    inputs, targets = dynamics.make_dataset(obs, action, real["next", "reward"], real["next", "observation"])
    with context():
        dynamics.fit_ensemble(inputs, targets)
    sync()
    start = time.perf_counter()
    with context():
        dynamics.fit_ensemble(inputs, targets)
    sync()
    epoch_s = (time.perf_counter() - start) / 2
    model_s = 4 * epochs * epoch_s

    actor = TanhGaussianActor(OBS, ACT).to(DEVICE)
    hopper_done = get_termination_fn("Hopper-v5")

    def done(next_obs: torch.Tensor) -> torch.Tensor:
        return hopper_done(next_obs) & False

    start_obs = obs[torch.randint(obs.shape[0], (100_000,), device=DEVICE)]
    sync()
    start = time.perf_counter()
    with context():
        result = branched_rollout(dynamics.model, actor, dynamics.elites, done, start_obs, k)
    sync()
    rollout_s = time.perf_counter() - start
    alive = result.steps_alive.sum().item()
    if not fast:  # the plain formulation on the same number of states
        step_s = timed(lambda: all_members_rollout_step(dynamics.model, actor, dynamics.elites, done, start_obs), 1)
        rollout_s = step_s * alive / 100_000
    rollout_s *= 4

    data = MBPODataModule("Hopper-v5", updates_per_step=G, batch_size=BATCH, real_buffer_size=real.shape[0])
    data._device = DEVICE  # what a Trainer on DEVICE sets in setup()
    data.setup("fit")
    data.add_real(real)
    data.resize_model_buffer(400_000)
    data.add_model(result.transitions[:400_000])
    sac = (SACModule if fast else PlainSAC)(OBS, ACT, target_entropy=-1, cuda_graphs=graphs).to(DEVICE)

    def sac_env_step() -> None:
        with context():
            sac.update_many(data.sample_sac_batches())

    sac_s = 1000 * timed(sac_env_step, sac_env_steps, warmup=2)
    env_ms = bench_env(1000)["env_step_with_policy_ms"]
    row = {
        "sac": sac_s,
        "model_train": model_s,
        "rollout": rollout_s,
        "env": env_ms,  # 1000 steps x ms per step = seconds
        "eval": 5 * env_ms,
        "model_epoch_s": epoch_s,
        "rollout_alive_states": alive,
    }
    row["total"] = sum(row[key] for key in ("sac", "model_train", "rollout", "env", "eval"))
    return row


def project_hopper_run(early: dict, late: dict, sizes: dict[str, tuple[int, int]], total_steps: int = 125_000) -> float:
    """Projected wall hours of a full Hopper run from the early/late rows measured at ``sizes``
    (:func:`per_1000_sizes`): model-epoch time interpolated linearly in the buffer size, rollout time linearly in
    ``k`` (schedule [20, 100, 1, 15]), epochs per call as above."""
    hours = 0.0
    (early_n, _), (late_n, late_k) = sizes["early"], sizes["late"]

    def interpolate(key: str, x: float, x0: float, x1: float) -> float:
        return early[key] + (late[key] - early[key]) * (x - x0) / (x1 - x0)

    fixed = early["sac"] + early["env"] + early["eval"]  # per 1000 env steps, independent of the buffer
    for step in range(5000, total_steps, 250):
        epochs = epochs_per_call(step)
        k = rollout_length((step - 5000) // 1000, 20, 100, 1, 15)
        hours += (
            interpolate("model_epoch_s", step, early_n, late_n) * epochs
            + interpolate("rollout", k, 1, late_k) / 4
            + fixed / 4
        ) / 3600
    return hours


def per_1000_sizes(quick: bool) -> dict[str, tuple[int, int]]:
    """``{stage: (real transitions N, rollout length k)}`` of the per-1000-step rows (``--quick``: a smaller late
    buffer)."""
    return {"early": (5_000, 1), "late": (100_000 if not quick else 20_000, 15 if not quick else 3)}


def bench_per_1000(quick: bool, components: dict[str, float]) -> dict[str, float]:
    """The per-1000-step table at both buffer sizes, the projected full-run hours of both paths and, from the
    component timings (``components``), the projection at the matrix-product floor: the fast path with its SAC
    updates and model epochs cut to their matrix products alone (:func:`bench_matmul_floor`; rollouts, env and
    evaluation as measured)."""
    sizes = per_1000_sizes(quick)
    transitions = hopper_transitions(max(n for n, _ in sizes.values()))
    results: dict[str, float] = {}
    rows: dict[str, dict] = {}
    for stage, (n, k) in sizes.items():
        epochs = epochs_per_call(n + 250)  # the calls of the 1000 env steps that follow a buffer of n
        for path in ("plain", "fast"):
            rows[f"{stage}_{path}"] = row = per_1000_env_steps(
                transitions[-n:], k, fast=path == "fast", epochs=epochs, sac_env_steps=5 if quick else 25
            )
            for key, value in row.items():
                results[f"per1000_{stage}_{path}_{key}"] = value
        results[f"per1000_{stage}_speedup"] = rows[f"{stage}_plain"]["total"] / rows[f"{stage}_fast"]["total"]
    for path in ("plain", "fast"):
        results[f"projected_hopper_125k_hours_{path}"] = project_hopper_run(
            rows[f"early_{path}"], rows[f"late_{path}"], sizes
        )

    def matmul_share(name: str) -> float:  # matrix products alone / the fast path's measured time
        return components[f"{name}_ms_matmuls_only"] / components[f"{name}_ms_{fastest(components, f'{name}_ms')}"]

    sac_share, model_share = matmul_share("sac_update"), matmul_share("ensemble_train_step")
    floor = {
        stage: {**rows[f"{stage}_fast"], "sac": rows[f"{stage}_fast"]["sac"] * sac_share,
                "model_epoch_s": rows[f"{stage}_fast"]["model_epoch_s"] * model_share}
        for stage in sizes
    }  # fmt: skip
    results["projected_hopper_125k_hours_matmul_floor"] = project_hopper_run(floor["early"], floor["late"], sizes)
    print_per_1000_table(rows, sizes)
    return results


def reproject(path: Path) -> dict[str, float]:
    """The projected full-run hours of both paths from the per-1000-step rows stored in an earlier results file
    (``path``), with this file's epochs per call: no timing, so a projection made with older epoch figures can be
    brought up to date without the machine it was measured on (e.g. the GPU file)."""
    stored = json.loads(path.read_text())
    results, sizes = stored["results"], per_1000_sizes(stored["meta"]["quick"])
    projected = {}
    for path_name in ("plain", "fast"):
        rows = {
            stage: {key.removeprefix(f"per1000_{stage}_{path_name}_"): value for key, value in results.items()
                    if key.startswith(f"per1000_{stage}_{path_name}_")}
            for stage in ("early", "late")
        }  # fmt: skip
        if not all(rows.values()):
            raise SystemExit(f"{path} has no per-1000-step rows (it was written with --skip-per-1000)")
        projected[f"projected_hopper_125k_hours_{path_name}"] = project_hopper_run(rows["early"], rows["late"], sizes)
    return projected


def print_per_1000_table(rows: dict[str, dict], sizes: dict[str, tuple[int, int]]) -> None:
    keys = ("sac", "model_train", "rollout", "env", "eval", "total")
    print("wall seconds per 1000 Hopper env steps (paper settings)")
    print(f"{'':<22}" + "".join(f"{key:>12}" for key in keys))
    for name, row in rows.items():
        stage = name.split("_")[0]
        label = f"{name} (N={sizes[stage][0] // 1000}k, k={sizes[stage][1]})"
        print(f"{label:<22}" + "".join(f"{row[key]:12.1f}" for key in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where networks, buffers and rollouts live")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller late buffer (a smoke run)")
    parser.add_argument("--scale", type=float, default=1.0, help="repeats of the component timings (x)")
    parser.add_argument("--no-graphs", action="store_true", help="on CUDA, leave out the CUDA-graph variants")
    parser.add_argument("--skip-per-1000", action="store_true", help="only the component timings (about 2 minutes)")
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections (e.g. sac float32_heads)")
    parser.add_argument(
        "--reproject", type=Path, metavar="RESULTS_JSON",
        help="time nothing: print the full-run projections of a stored results file with this file's epochs per call",
    )  # fmt: skip
    args = parser.parse_args()
    if args.reproject is not None:
        for key, value in reproject(args.reproject).items():
            print(f"{key}  {value:.3f}")
        return
    global DEVICE, GRAPHS
    DEVICE, GRAPHS = torch.device(args.device), not args.no_graphs
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    scale = 0.2 * args.scale if args.quick else args.scale
    meta = {
        "threads": args.threads,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
        "quick": args.quick,
    }
    print(f"mbpo_pl benchmark ({meta})")
    sections = {
        "sac": lambda: bench_sac(int(200 * scale) or 5),
        "trainer_overhead": lambda: bench_trainer_overhead(int(150 * scale) or 5),
        "ensemble": lambda: bench_ensemble(int(100 * scale) or 5),
        "float32_heads": lambda: bench_float32_heads(int(100 * scale) or 5),
        "diagnostics": lambda: bench_diagnostics(int(20 * scale) or 3),
        "matmul_floor": lambda: bench_matmul_floor(int(100 * scale) or 5),
        "rollout": lambda: bench_rollout(100_000, 3 if not args.quick else 1),
        "env": lambda: bench_env(int(2000 * scale) or 50),
    }
    if not args.skip_per_1000:
        sections["per_1000"] = lambda: bench_per_1000(args.quick, results)
    if args.only:
        unknown = set(args.only) - set(sections)
        if unknown:
            parser.error(f"unknown --only section(s) {sorted(unknown)}; choose from {sorted(sections)}")
        sections = {name: sections[name] for name in args.only}
    results: dict[str, float] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for section in sections.values():  # figures are printed and written as each part finishes
        new = section()
        results.update(new)
        width = max(map(len, new))
        for key, value in new.items():
            print(f"{key:<{width}}  {value:12.3f}")
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
