"""Component timings at Hopper-v5 sizes: SAC updates, ensemble steps, rollouts, env steps, diagnostics.

Each section takes the :class:`~timing.Bench` setting and returns ``{figure name: value}``; every ratio compares
two paths timed in the same call.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from unittest import mock

import numpy as np
import torch

from callbacks.model_diagnostics import ModelDiagnostics
from callbacks.real_env import RealEnvRunner
from mbpo_pl.data import MBPODataModule
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.envs import make_env
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.rollout import branched_rollout
from mbpo_pl.sac import SACModule
from mbpo_pl.termination import get_termination_fn
from plain import PlainDynamics, PlainSAC, all_members_rollout_step
from projection import epochs_per_call
from timing import ACT, BATCH, OBS, Bench, G, fastest


def bench_sac(bench: Bench, repeats: int) -> dict[str, float]:
    """SAC updates, timed as one env step's G = 20 updates on a ``[G, 256]`` batch (``update_many``) and reported
    per update: plain (three unfused Adam steps one after the other, fp32), fast in fp32 (one simultaneous fused
    step), fast in bf16 (and, on CUDA, fast in bf16 replayed as one CUDA graph per env step)."""
    results = {}
    batches = bench.random_batch(G * BATCH).reshape(G, BATCH)
    for name, cls, bf16, extra in bench.variants(PlainSAC, SACModule):
        sac = cls(OBS, ACT, target_entropy=-1, **extra).to(bench.device)
        context = bench.precision(bf16)

        def env_step(sac=sac, context=context) -> None:
            with context():
                sac.update_many(batches)

        results[f"sac_update_ms_{name}"] = 1000 * bench.timed(env_step, max(repeats // G, 2)) / G
    results["sac_update_speedup"] = (
        results["sac_update_ms_plain_fp32"] / results[f"sac_update_ms_{fastest(results, 'sac_update_ms')}"]
    )
    return results


def bench_ensemble(bench: Bench, repeats: int, holdout: int = 5000) -> dict[str, float]:
    """One ensemble training step (7 x 4 x 200, 256 per member): plain (L2 term in the loss, unfused Adam, fp32),
    fast in fp32 (L2 in the optimizer, fused Adam), fast in bf16 (and, on CUDA, fast in bf16 as a CUDA graph)."""
    results = {}
    inputs = torch.randn(7, BATCH, OBS + ACT, device=bench.device)
    targets = torch.randn(7, BATCH, OBS + 1, device=bench.device)
    for name, cls, bf16, extra in bench.variants(PlainDynamics, DynamicsModule):
        module = cls(OBS, ACT, fused_optimizer=cls is DynamicsModule, **extra).to(bench.device)
        context = bench.precision(bf16)

        def step(module=module, context=context) -> None:
            with context():
                module.graphed_step(inputs, targets)

        results[f"ensemble_train_step_ms_{name}"] = 1000 * bench.timed(step, repeats)
    results["ensemble_step_speedup"] = (
        results["ensemble_train_step_ms_plain_fp32"]
        / results[f"ensemble_train_step_ms_{fastest(results, 'ensemble_train_step_ms')}"]
    )
    h_in = torch.randn(holdout, OBS + ACT, device=bench.device)
    h_tg = torch.randn(holdout, OBS + 1, device=bench.device)
    for name, bf16 in (("fp32", False), ("bf16", True)):
        context = bench.precision(bf16)

        def evaluate(context=context) -> None:
            with context():
                module.holdout_mse(h_in, h_tg)

        results[f"holdout_eval_ms_{name}"] = 1000 * bench.timed(evaluate, max(repeats // 4, 3))
    return results


def _mlp_products(
    bench: Bench, members: int, sizes: list[int], forward: int, weight_grads: int, input_grads: int,
    first_input_grads: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """The ``(a, b)`` operands of every ``a @ b`` that ``forward`` passes of an MLP (``members`` fused members,
    layer widths ``sizes``, batch 256) and their backward passes compute: ``weight_grads`` passes computing the
    weight gradients (``x^T @ grad_out``), ``input_grads`` passes computing the gradients of the hidden inputs
    (``grad_out @ W^T``), ``first_input_grads`` of them also the first layer's (a gradient reaching the input)."""

    def t(*shape: int) -> torch.Tensor:
        shape = ([members] if members > 1 else []) + list(shape)
        return torch.randn(*shape, device=bench.device, dtype=torch.bfloat16)

    products = []
    for layer, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        products += [(t(BATCH, i), t(i, o))] * forward + [(t(i, BATCH), t(BATCH, o))] * weight_grads
        products += [(t(BATCH, o), t(o, i))] * (first_input_grads if layer == 0 else input_grads)
    return products


def bench_matmul_floor(bench: Bench, repeats: int) -> dict[str, float]:
    """The matrix products alone of one SAC update and one ensemble training step, in bf16 and with the update's
    own shapes: what the fast path would cost if every other kernel (activations, casts, losses, Adam) and all
    dispatch were free. A floor for these network sizes on this machine, not an achievable figure.

    SAC (batch 256, 2 x 256 hidden): actor forward on next and current observations, backward on the current;
    twin critics (one fused pair) forward as targets, as the regressed critics (full backward) and as the actor's
    frozen critics (backward to the action only). Ensemble: 7 members, 4 x 200 hidden, one forward and backward.
    """
    actor = [OBS, 256, 256, 2 * ACT]
    critic = [OBS + ACT, 256, 256, 1]
    sac = _mlp_products(bench, 1, actor, 2, 1, 1, 0) + _mlp_products(bench, 2, critic, 3, 1, 2, 1)
    ensemble = _mlp_products(bench, 7, [OBS + ACT, 200, 200, 200, 200, 2 * (OBS + 1)], 1, 1, 1, 0)
    results = {}
    for name, products in (("sac_update", sac), ("ensemble_train_step", ensemble)):
        results[f"{name}_ms_matmuls_only"] = 1000 * bench.timed(lambda p=products: [a @ b for a, b in p], repeats)
    return results


def _bf16_output_layers():
    """Run the output layers under autocast like the hidden ones (bf16 heads), for the cost comparison only."""

    def under_autocast(layer, x, *args):  # noqa: ANN001, ANN202
        return layer(x, *args)

    return mock.patch.multiple("mbpo_pl.nets.ensemble", float32_output=under_autocast), mock.patch.multiple(
        "mbpo_pl.nets.sac", float32_output=under_autocast
    )


def bench_float32_heads(bench: Bench, repeats: int) -> dict[str, float]:
    """What computing the output layers (critic, actor and ensemble heads) in float32 costs on the bf16 fast path:
    one SAC update and one ensemble training step with float32 heads (the shipped code) and with bf16 heads,
    alternated round by round in this run."""
    sac = SACModule(OBS, ACT, target_entropy=-1).to(bench.device)
    dynamics = DynamicsModule(OBS, ACT, fused_optimizer=True).to(bench.device)
    batches = bench.random_batch(G * BATCH).reshape(G, BATCH)
    inputs = torch.randn(7, BATCH, OBS + ACT, device=bench.device)
    targets = torch.randn(7, BATCH, OBS + 1, device=bench.device)
    context = bench.precision(True)

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
                    1000 * bench.timed(sac_env_step, max(repeats // G, 2)) / G
                )
                times.setdefault(f"ensemble_train_step_ms_{heads}_heads", []).append(
                    1000 * bench.timed(ensemble_step, repeats)
                )
    results = {key: float(np.median(values)) for key, values in times.items()}
    for name in ("sac_update", "ensemble_train_step"):
        results[f"{name}_float32_heads_cost"] = (
            results[f"{name}_ms_float32_heads"] / results[f"{name}_ms_bf16_heads"] - 1
        )
    return results


def bench_rollout(bench: Bench, states: int, repeats: int) -> dict[str, float]:
    """One rollout step of ``states`` start states: the chosen elite per state (shipped) vs all members."""
    module = DynamicsModule(OBS, ACT).to(bench.device)
    actor = TanhGaussianActor(OBS, ACT).to(bench.device)
    done = get_termination_fn("Hopper-v5")
    start_obs = torch.randn(states, OBS, device=bench.device) * 0.1
    start_obs[:, 0] += 1.25
    elites = torch.arange(5, device=bench.device)
    chosen = bench.timed(lambda: branched_rollout(module.model, actor, elites, done, start_obs, 1), repeats, 1)
    plain = bench.timed(lambda: all_members_rollout_step(module.model, actor, elites, done, start_obs), repeats, 1)
    return {
        f"rollout_step_s_{states // 1000}k_chosen_elite": chosen,
        f"rollout_step_s_{states // 1000}k_all_members": plain,
        "rollout_chosen_elite_speedup": plain / chosen,
    }


def bench_env(bench: Bench, steps: int) -> dict[str, float]:
    """Real Hopper-v5 steps as the env loop takes them (``RealEnvRunner``: policy on the training device, one host
    transfer per step, the transition packed for the buffer, resets at episode ends)."""
    runner = RealEnvRunner(make_env("Hopper-v5"), seed=0)
    actor = TanhGaussianActor(OBS, ACT).to(bench.device)
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(actor.act, bench.device)
    runner.close()
    return {"env_step_with_policy_ms": 1000 * (time.perf_counter() - start) / steps}


def bench_diagnostics(bench: Bench, repeats: int, real_size: int = 100_000, k: int = 15) -> dict[str, float]:
    """``ModelDiagnostics`` at Hopper sizes (fp32): one measurement (open-loop errors of the elites on the newest
    250 real transitions, H = k = 15; model-vs-real statistics of a real buffer of ``real_size`` and a model buffer of
    ``k * 100k``) against one model-training call at that size (its epochs as in ``epochs_per_call``)."""
    real = bench.hopper_transitions(real_size)
    data = MBPODataModule("Hopper-v5")
    data.setup("fit")
    data.add_real(real)
    data.resize_model_buffer(k * 100_000)
    data.add_model(torch.cat([real] * (k * 100_000 // real_size)))
    dynamics = DynamicsModule(OBS, ACT).to(bench.device)
    inputs, targets = dynamics.make_dataset(real["observation"], real["action"], real["next", "reward"],
                                            real["next", "observation"])  # fmt: skip
    dynamics.model.normalizer.fit(inputs)
    diagnostics = ModelDiagnostics()
    model_error = bench.timed(lambda: diagnostics.model_error(data, dynamics, k, k), repeats)
    data_shift = bench.timed(lambda: diagnostics.data_shift(data), repeats)
    batch_in, batch_tg = inputs[: 7 * BATCH].reshape(7, BATCH, -1), targets[: 7 * BATCH].reshape(7, BATCH, -1)
    step = bench.timed(lambda: dynamics.graphed_step(batch_in, batch_tg), repeats)
    steps_per_epoch = (real_size - min(int(0.2 * real_size), 5000)) / BATCH
    call = epochs_per_call(real_size) * steps_per_epoch * step
    return {
        "diagnostics_model_error_ms": 1000 * model_error,
        "diagnostics_data_shift_ms": 1000 * data_shift,
        "model_training_call_s_100k": call,
        "diagnostics_per_model_training_call": (model_error + data_shift) / call,
    }
