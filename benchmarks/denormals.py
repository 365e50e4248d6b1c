"""What denormal numbers cost late in a run: the SAC update and the model-training epoch timed on a run's own
checkpoint (its networks, Adam state and replay buffers), with IEEE denormals and with them flushed to zero
(``torch.set_flush_denormal``, the CLI's ``--flush_denormal``, on by default), interleaved in one process.

    python benchmarks/denormals.py RUN_OR_CHECKPOINT [--threads 1] [--rounds 3] [--precision bf16-mixed]

Late in a run many gradient entries are exactly zero (ReLU units that no longer fire); their Adam moments then
decay geometrically through the float32 denormal range (below 1.2e-38), where x86 CPUs compute many times slower;
the model's training meets denormals too (in its activations and gradients), so one epoch of it on the run's real
transitions is timed the same way (``--model-epochs 0``: the SAC update only; none for an SAC baseline's run).
Prints the denormal count of each optimizer's moments in the checkpoint and the milliseconds per SAC update (G
updates per env step on minibatches drawn as the run draws them: ``real_ratio`` of real data, the rest model data;
all real for an SAC baseline's checkpoint, e.g. ``--updates-per-step 1 --env-steps 200``), each round restarting
from the checkpoint's state. One-agent runs only, trained with IEEE denormals (``--flush_denormal false``, or before
that option existed): a run that flushes them has none in its checkpoints.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import nullcontext

import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from tensordict import TensorDict

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.manual_optimization import own_optimizers
from mbpo_pl.provenance import this_machine
from mbpo_pl.run_folders import resolve_checkpoint
from mbpo_pl.sac import SACModule

FIELDS = ("observation", "action", "next.observation", "next.reward", "next.terminated")


def denormal_count(optimizer_state: dict) -> int:
    tiny = torch.finfo(torch.float32).tiny
    return sum(int(((t != 0) & (t.abs() < tiny)).sum()) for state in optimizer_state["state"].values()
               for key, t in state.items() if key in ("exp_avg", "exp_avg_sq"))  # fmt: skip


def parameter_count(optimizer_state: dict) -> int:
    """Elements of the parameters an optimizer's state covers (one ``exp_avg`` per parameter)."""
    return sum(state["exp_avg"].numel() for state in optimizer_state["state"].values())


def sac_optimizer_state(checkpoint: dict) -> dict:
    """The SAC optimizer's state in a one-agent checkpoint: the one whose moments match the SAC parameters in size."""
    sac_params = sum(v.numel() for k, v in checkpoint["state_dict"].items()
                     if k.startswith("sac.") and not k.startswith("sac.critic_target."))  # fmt: skip
    for state in checkpoint["optimizer_states"]:
        if parameter_count(state) == sac_params:
            return state
    raise SystemExit("no optimizer of the SAC parameters' size in this checkpoint")


def filled(buffer_state: dict) -> dict[str, torch.Tensor]:
    size = min(buffer_state["writer"]["_write_count"], buffer_state["capacity"])
    return {key: buffer_state["data"][key][:size] for key in FIELDS}


def minibatches(real: dict, model: dict | None, count: int, batch: int, real_ratio: float, generator: torch.Generator
                ) -> TensorDict:  # fmt: skip
    """``count`` minibatches ``[count, batch]``, ``round(real_ratio * batch)`` real transitions in each (all real
    without a model buffer: an SAC baseline's run)."""
    n_real = round(real_ratio * batch) if model else batch
    parts = []
    for source, n in ((real, n_real), (model, batch - n_real)):
        if n == 0:
            continue
        size = len(source["observation"])
        index = torch.randint(0, size, (count, n), generator=generator)
        parts.append({key: value[index] for key, value in source.items()})
    merged = {key: torch.cat([part[key] for part in parts], dim=1) for key in FIELDS}
    return TensorDict({"observation": merged["observation"], "action": merged["action"],
                       "next": {"observation": merged["next.observation"], "reward": merged["next.reward"],
                                "terminated": merged["next.terminated"]}}, batch_size=[count, batch])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder or a checkpoint file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=10, help="timed env steps of G updates per round")
    parser.add_argument("--updates-per-step", type=int, default=20)
    parser.add_argument("--real-ratio", type=float, default=0.05)
    parser.add_argument("--precision", choices=["bf16-mixed", "32-true"], default="bf16-mixed")
    parser.add_argument("--model-epochs", type=int, default=1, help="timed model-training epochs per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve_checkpoint(args.run, None)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if "population" in checkpoint.get("MBPODataModule", {}):
        raise SystemExit(f"{path}: a population's checkpoint; this benchmark takes a one-agent run")
    env = checkpoint["mbpo_env"]
    sac_state = {k.removeprefix("sac."): v for k, v in checkpoint["state_dict"].items() if k.startswith("sac.")}
    hidden = sac_state["actor.net.0.weight"].shape[0]
    sac_optimizer = sac_optimizer_state(checkpoint)
    for i, state in enumerate(checkpoint["optimizer_states"]):
        label = "SAC" if state is sac_optimizer else "other"
        moments = 2 * parameter_count(state)
        print(f"optimizer {i} ({label}): {denormal_count(state):,} of {moments:,} Adam moments are denormal")

    data = checkpoint["MBPODataModule"]
    generator = torch.Generator().manual_seed(0)
    real, model = filled(data["real"]), filled(data["model"]) if "model" in data else None
    batches = [minibatches(real, model, args.updates_per_step, 256, args.real_ratio, generator)
               for _ in range(args.env_steps)]  # fmt: skip
    context = MixedPrecision("bf16-mixed", "cpu").forward_context if args.precision == "bf16-mixed" else nullcontext

    def round_ms(flush: bool) -> float:
        torch.set_flush_denormal(flush)
        sac = SACModule(env["obs_dim"], env["act_dim"], hidden_size=hidden)
        sac.load_state_dict(sac_state)
        own_optimizers(sac)[0].load_state_dict(copy.deepcopy(sac_optimizer))
        start = time.perf_counter()
        for batch in batches:
            with context():
                sac.update_many(batch)
        return 1000 * (time.perf_counter() - start) / (args.env_steps * args.updates_per_step)

    dynamics_state = {k.removeprefix("dynamics."): v for k, v in checkpoint["state_dict"].items()
                      if k.startswith("dynamics.")}  # fmt: skip
    model_optimizer = next((o for o in checkpoint["optimizer_states"] if o is not sac_optimizer), None)
    timed_model = args.model_epochs > 0 and "model" in data and model_optimizer is not None

    def model_epoch_s(flush: bool) -> float:
        torch.set_flush_denormal(flush)
        weight = dynamics_state["model.hidden.0.weight"]  # [E, in, H]
        layers = sum(1 for k in dynamics_state if k.startswith("model.hidden.") and k.endswith(".weight"))
        groups = model_optimizer["param_groups"]  # one per decayed layer, then the rest (DynamicsModule's)
        dynamics = DynamicsModule(env["obs_dim"], env["act_dim"], ensemble_size=weight.shape[0],
                                  num_elites=len(dynamics_state["elites"]), hidden_size=weight.shape[-1],
                                  num_hidden_layers=layers, lr=groups[0]["lr"],
                                  weight_decay=[group["weight_decay"] for group in groups[:-1]],
                                  max_epochs_per_train=args.model_epochs, patience=10**6)  # fmt: skip
        dynamics.load_state_dict(dynamics_state)
        own_optimizers(dynamics)[0].load_state_dict(copy.deepcopy(model_optimizer))
        inputs, targets = dynamics.make_dataset(real["observation"], real["action"], real["next.reward"].squeeze(-1),
                                                real["next.observation"])  # fmt: skip
        start = time.perf_counter()
        with context():
            dynamics.fit_ensemble(inputs, targets)
        return (time.perf_counter() - start) / args.model_epochs

    if not torch.set_flush_denormal(True):
        raise SystemExit("this CPU cannot flush denormal numbers to zero: nothing to compare")
    figures = {"ms per SAC update": round_ms, **({"s per model epoch": model_epoch_s} if timed_model else {})}
    times = {(name, flush): [] for name in figures for flush in (False, True)}
    for _ in range(args.rounds):
        for name, measure in figures.items():
            for flush in (False, True):
                times[name, flush].append(measure(flush))
    torch.set_flush_denormal(False)
    print(
        f"\n{this_machine()}, torch {torch.__version__}, {args.threads} thread(s), {args.precision}, {args.rounds} "
        f"rounds of {args.env_steps} env steps x {args.updates_per_step} updates"
        + (f" and {args.model_epochs} model epoch(s) on {len(real['observation']):,} real transitions" if timed_model
           else "") + f", {path}"
    )  # fmt: skip
    for name in figures:
        ieee, flushed = (statistics.median(times[name, f]) for f in (False, True))
        for label, median, flush in (("IEEE denormals:  ", ieee, False), ("flushed to zero:", flushed, True)):
            rounds = ", ".join(f"{t:.3g}" for t in times[name, flush])
            print(f"{name}, {label} {median:.3g} (rounds: {rounds})")
        print(f"{name}, IEEE / flushed: {ieee / flushed:.2f}x")


if __name__ == "__main__":
    main()
