"""Wall seconds per 1000 Hopper env steps with the paper settings, split by phase, plain vs fast path."""

from __future__ import annotations

import time

import torch
from tensordict import TensorDict

from components import bench_env
from mbpo_pl.data import MBPODataModule
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.nets.sac import TanhGaussianActor
from mbpo_pl.rollout import branched_rollout
from mbpo_pl.sac import SACModule
from mbpo_pl.termination import get_termination_fn
from plain import PlainDynamics, PlainSAC, all_members_rollout_step
from projection import epochs_per_call, per_1000_sizes, project_hopper_run
from timing import ACT, BATCH, OBS, Bench, G, fastest


def per_1000_env_steps(
    bench: Bench, real: TensorDict, k: int, fast: bool, epochs: float, sac_env_steps: int
) -> dict[str, float]:
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
    device = bench.device
    context = bench.precision(fast)
    graphs = fast and bench.with_graphs
    torch.manual_seed(0)
    obs, action = real["observation"], real["action"]
    dynamics = (DynamicsModule if fast else PlainDynamics)(
        OBS, ACT, patience=10**6, max_epochs_per_train=2, fused_optimizer=fast, cuda_graphs=graphs
    ).to(device)
    inputs, targets = dynamics.make_dataset(obs, action, real["next", "reward"], real["next", "observation"])
    with context():
        dynamics.fit_ensemble(inputs, targets)
    bench.sync()
    start = time.perf_counter()
    with context():
        dynamics.fit_ensemble(inputs, targets)
    bench.sync()
    epoch_s = (time.perf_counter() - start) / 2
    model_s = 4 * epochs * epoch_s

    actor = TanhGaussianActor(OBS, ACT).to(device)
    hopper_done = get_termination_fn("Hopper-v5")

    def done(next_obs: torch.Tensor) -> torch.Tensor:
        return hopper_done(next_obs) & False

    start_obs = obs[torch.randint(obs.shape[0], (100_000,), device=device)]
    bench.sync()
    start = time.perf_counter()
    with context():
        result = branched_rollout(dynamics.model, actor, dynamics.elites, done, start_obs, k)
    bench.sync()
    rollout_s = time.perf_counter() - start
    alive = result.steps_alive.sum().item()
    if not fast:  # the plain formulation on the same number of states
        step_s = bench.timed(
            lambda: all_members_rollout_step(dynamics.model, actor, dynamics.elites, done, start_obs), 1
        )
        rollout_s = step_s * alive / 100_000
    rollout_s *= 4

    data = MBPODataModule("Hopper-v5", updates_per_step=G, batch_size=BATCH, real_buffer_size=real.shape[0])
    data._device = device  # what a Trainer on this device sets in setup()
    data.setup("fit")
    data.add_real(real)
    data.resize_model_buffer(400_000)
    data.add_model(result.transitions[:400_000])
    sac = (SACModule if fast else PlainSAC)(OBS, ACT, target_entropy=-1, cuda_graphs=graphs).to(device)

    def sac_env_step() -> None:
        with context():
            sac.update_many(data.sample_sac_batches())

    sac_s = 1000 * bench.timed(sac_env_step, sac_env_steps, warmup=2)
    env_ms = bench_env(bench, 1000)["env_step_with_policy_ms"]
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


def bench_per_1000(bench: Bench, quick: bool, components: dict[str, float]) -> dict[str, float]:
    """The per-1000-step table at both buffer sizes, the projected full-run hours of both paths and, from the
    component timings (``components``), the projection at the matrix-product floor: the fast path with its SAC
    updates and model epochs cut to their matrix products alone (``bench_matmul_floor``; rollouts, env and
    evaluation as measured)."""
    sizes = per_1000_sizes(quick)
    transitions = bench.hopper_transitions(max(n for n, _ in sizes.values()))
    results: dict[str, float] = {}
    rows: dict[str, dict] = {}
    for stage, (n, k) in sizes.items():
        epochs = epochs_per_call(n + 250)  # the calls of the 1000 env steps that follow a buffer of n
        for path in ("plain", "fast"):
            rows[f"{stage}_{path}"] = row = per_1000_env_steps(
                bench, transitions[-n:], k, fast=path == "fast", epochs=epochs, sac_env_steps=5 if quick else 25
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


def print_per_1000_table(rows: dict[str, dict], sizes: dict[str, tuple[int, int]]) -> None:
    keys = ("sac", "model_train", "rollout", "env", "eval", "total")
    print("wall seconds per 1000 Hopper env steps (paper settings)")
    print(f"{'':<22}" + "".join(f"{key:>12}" for key in keys))
    for name, row in rows.items():
        stage = name.split("_")[0]
        label = f"{name} (N={sizes[stage][0] // 1000}k, k={sizes[stage][1]})"
        print(f"{label:<22}" + "".join(f"{row[key]:12.1f}" for key in keys))
