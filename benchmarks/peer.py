"""Side by side with mbrl-lib (facebookresearch's MBPO, ``mbrl`` 0.2.0): the same work on the same data, same sizes
and thread count, each side in its own interpreter, interleaved in rounds.

    python benchmarks/peer.py [--rounds 4] [--threads 2] [--peer-python PATH] [--json benchmarks/peer_cpu2.json]
    python benchmarks/peer.py --from-json benchmarks/peer_cpu2.json --write README.md   # the table from the data
    python benchmarks/peer.py --state RUN --threads 1 --json benchmarks/peer_late_cpu2.json   # late in a run

mbrl-lib pins Gymnasium 0.26.3 and an old hydra-core, so it lives in its own venv: ``.peer-venv/`` is created on
first use (torch 2.13.0 first, then its dependencies, then ``mbrl==0.2.0`` without its pins), or give one with
``--peer-python``. Each round runs ``benchmarks/peer_worker.py`` once per side (ours fp32, ours bf16-mixed, mbrl-lib)
in a fresh process, the order rotating from round to round; the table gives each figure's median over rounds with
its spread (min–max) and mbrl-lib's median over ours. The composite "per 1000 env steps" is the work of 1000 Hopper
env steps late in an MBPO run: 20,000 SAC updates, 240 model-training epochs and 4 rollouts.

Those figures start from fresh networks. ``--state RUN`` times the SAC update alone from a one-agent MBPO run's own
checkpoint instead (its networks, Adam moments and replay data, handed to mbrl-lib's SAC member by member; ``RUN`` a
run folder, a checkpoint, or a state file kept by ``--keep-state``): late in a run trained with IEEE denormals
(``--flush_denormal false``, or before that option) many Adam moments are denormal numbers, which x86 CPUs compute
slowly. Our side flushes them to zero as our CLI trains, mbrl-lib computes with them as it trains, and a fourth side,
``mbrl-flush``, is mbrl-lib with them flushed too (one line a user of it could add). A run trained with flushing has
no denormal moments, so from its checkpoint the sides differ only in their code. The table goes into the
``<!-- peer-late-table -->`` block.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "benchmarks" / "peer_worker.py"
PEER_VENV = REPO / ".peer-venv"
PEER_INSTALL = [
    ["torch==2.13.0"],
    ["gymnasium==0.26.3", "mujoco==2.3.3", "hydra-core>=1.3,<1.4", "omegaconf>=2.3,<2.4", "numpy<2", "tensorboard",
     "termcolor", "imageio", "pandas", "tqdm"],
    ["mbrl==0.2.0", "--no-deps"],
]  # fmt: skip
SIDES = ["ours", "mbrl", "ours-bf16"]
LATE_SIDES = ["ours", "mbrl", "ours-bf16", "mbrl-flush"]
FIGURES = {"sac_update_ms": "SAC update (ms)", "model_epoch_s": "model epoch (s)", "rollout_s": "rollout (s)"}
LATE_FIGURES = {"sac_update_ms": "SAC update (ms)"}
LATE_BLOCK = ("<!-- peer-late-table -->", "<!-- /peer-late-table -->")
COMPOSITE = {"sac_update_ms": 20_000, "model_epoch_s": 240, "rollout_s": 4}  # counts per 1000 env steps


def peer_python(given: str | None) -> str:
    if given:
        return given
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} for mbrl-lib (a few minutes, once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        for packages in PEER_INSTALL:
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    return str(python)


def hopper_transitions(path: Path, count: int = 20_000, seed: int = 0) -> Path:
    """``count`` Hopper-v5 transitions under uniform-random actions (what both sides train and roll out on)."""
    import gymnasium as gym

    env, rng = gym.make("Hopper-v5"), np.random.default_rng(seed)
    columns: dict[str, list] = {key: [] for key in ("obs", "act", "reward", "next_obs", "terminated")}
    obs, _ = env.reset(seed=seed)
    while len(columns["obs"]) < count:
        action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(columns, (obs, action, reward, next_obs, terminated)):
            columns[key].append(value)
        obs = next_obs if not (terminated or truncated) else env.reset(seed=int(rng.integers(2**30)))[0]
    np.savez(path, **{key: np.asarray(value, dtype=bool if key == "terminated" else np.float32)
                      for key, value in columns.items()})  # fmt: skip
    return path


def late_state(run: str, path: Path) -> tuple[Path, str]:
    """The SAC state and replay data of a one-agent run's checkpoint (``run``: a run folder or checkpoint file) as a
    plain tensor file at ``path`` that both interpreters read; returns the file and a label of the run (``run`` a
    state file already: that file)."""
    import torch

    from mbpo_pl.run_folders import resolve_checkpoint

    if str(WORKER.parent) not in sys.path:
        sys.path.insert(0, str(WORKER.parent))  # this folder's denormals.py, when imported from elsewhere
    from denormals import filled, sac_optimizer_state

    if run.endswith(".pt"):  # a state written before (--keep-state)
        return Path(run), torch.load(run, weights_only=True)["label"]
    checkpoint_path = resolve_checkpoint(run, None)
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    if "population" in checkpoint.get("MBPODataModule", {}) or "model" not in checkpoint.get("MBPODataModule", {}):
        raise SystemExit(f"{checkpoint_path}: --state takes a one-agent MBPO run's checkpoint")
    env = checkpoint["mbpo_env"]
    sac = {k.removeprefix("sac."): v for k, v in checkpoint["state_dict"].items() if k.startswith("sac.")}
    data = checkpoint["MBPODataModule"]
    state = {
        "env_id": env["env_id"], "obs_dim": env["obs_dim"], "act_dim": env["act_dim"],
        "hidden": sac["actor.net.0.weight"].shape[0], "sac": sac, "optimizer": sac_optimizer_state(checkpoint),
        **{part: {key: value.clone() for key, value in filled(data[part]).items()}
           for part in ("real", "model")},
    }  # fmt: skip
    steps = data["real"]["writer"]["_write_count"]
    state["label"] = f"{env['env_id']} run {checkpoint_path.parent.parent.name}, checkpoint at {steps:,} env steps"
    torch.save(state, path)
    return path, state["label"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_round(round_number: int, pythons: dict[str, str], data: Path, threads: int, repeats: int, late: bool
              ) -> list[dict]:  # fmt: skip
    sides = LATE_SIDES if late else SIDES
    order = sides[round_number % len(sides) :] + sides[: round_number % len(sides)]
    figures = LATE_FIGURES if late else FIGURES
    results = []
    for side in order:
        source = ["--state", str(data)] if late else [str(data)]
        command = [pythons[side], str(WORKER), side, *source, "--threads", str(threads), "--repeats", str(repeats)]
        out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  round {round_number + 1} {side:<10} " + "  ".join(f"{k} {results[-1][k]:.4g}" for k in figures),
              flush=True)  # fmt: skip
    return results


def summarise(rows: list[dict], late: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for side in LATE_SIDES if late else SIDES:
        mine = [row for row in rows if row["side"] == side]
        summary[side] = {}
        for figure in LATE_FIGURES if late else FIGURES:
            values = [row[figure] for row in mine]
            summary[side][figure] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        if late:
            continue
        composite = [sum(row[f] / (1000 if f == "sac_update_ms" else 1) * count for f, count in COMPOSITE.items())
                     for row in mine]  # fmt: skip
        summary[side]["per_1000_env_steps_s"] = {
            "median": statistics.median(composite), "min": min(composite), "max": max(composite)
        }  # fmt: skip
    return summary


def table(summary: dict, cpu: str, threads: int, rounds: int) -> str:
    figures = {**FIGURES, "per_1000_env_steps_s": "per 1000 env steps (s)"}
    lines = [f"{cpu}, {threads} torch thread(s), {rounds} rounds (median [min–max])", "",
             "| figure | mbrl-lib 0.2.0 | ours fp32 | ours bf16-mixed | mbrl-lib / ours fp32 | mbrl-lib / ours bf16 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for key, label in figures.items():
        cells = [f"{s[key]['median']:.3g} [{s[key]['min']:.3g}–{s[key]['max']:.3g}]"
                 for s in (summary["mbrl"], summary["ours"], summary["ours-bf16"])]  # fmt: skip
        peer = summary["mbrl"][key]["median"]
        ratios = [f"{peer / summary[side][key]['median']:.2f}×" for side in ("ours", "ours-bf16")]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def late_table(summary: dict, cpu: str, threads: int, rounds: int, run: str) -> str:
    """The ``--state`` figures: mbrl-lib as it trains and with denormals flushed, ours as our CLI trains."""
    sides = {"mbrl": "mbrl-lib 0.2.0", "mbrl-flush": "mbrl-lib, denormals flushed", "ours": "ours fp32",
             "ours-bf16": "ours bf16-mixed"}  # fmt: skip
    lines = [f"{cpu}, {threads} torch thread(s), {rounds} rounds (median [min–max]), from {run}", "",
             "| figure | " + " | ".join(sides.values()) + " | mbrl-lib / ours fp32 | mbrl-lib / ours bf16 |"
             " mbrl-lib flushed / ours bf16 |", "|---" * (len(sides) + 4) + "|"]  # fmt: skip
    for key, label in LATE_FIGURES.items():
        cells = [f"{summary[s][key]['median']:.3g} [{summary[s][key]['min']:.3g}–{summary[s][key]['max']:.3g}]"
                 for s in sides]  # fmt: skip
        ratios = [summary[peer][key]["median"] / summary[side][key]["median"]
                  for peer, side in (("mbrl", "ours"), ("mbrl", "ours-bf16"), ("mbrl-flush", "ours-bf16"))]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells + [f"{r:.2f}×" for r in ratios]) + " |")
    return "\n".join(lines)


def table_from_json(path: Path) -> str:
    stored = json.loads(path.read_text())
    if "run" in stored:
        return late_table(stored["summary"], stored["cpu"], stored["threads"], stored["rounds"], stored["run"])
    return table(stored["summary"], stored["cpu"], stored["threads"], stored["rounds"])


def write_block(target: Path, text: str, begin: str = "<!-- peer-table -->", end: str = "<!-- /peer-table -->") -> None:
    """Replace the block between ``begin`` and ``end`` in ``target`` with ``text``."""
    content = target.read_text()
    if begin not in content or end not in content:
        raise SystemExit(f"{target}: no {begin} ... {end} block to replace")
    before, rest = content.split(begin, 1)
    target.write_text(f"{before}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="timed env steps of G SAC updates per round")
    parser.add_argument("--peer-python", default=None, help="a python with mbrl==0.2.0 (default: .peer-venv)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--from-json", type=Path, default=None, help="print the table of an earlier run's JSON")
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        help="replace the <!-- peer-table --> block (--state: <!-- peer-late-table -->) in this file",
    )
    parser.add_argument("--keep-state", type=Path, default=None, help="with --state: also keep the state file here")
    parser.add_argument("--state", default=None, help="a one-agent MBPO run (folder or checkpoint): time the SAC "
                        "update from its late state instead (module docstring)")  # fmt: skip
    args = parser.parse_args()
    if args.from_json is not None:
        text = table_from_json(args.from_json)
        print(text)
        if args.write is not None:
            late = "run" in json.loads(args.from_json.read_text())
            write_block(args.write, text, *(LATE_BLOCK if late else ()))
        return
    peer = peer_python(args.peer_python)
    pythons = {"ours": sys.executable, "ours-bf16": sys.executable, "mbrl": peer, "mbrl-flush": peer}
    cpu = cpu_model()
    late = args.state is not None
    with tempfile.TemporaryDirectory() as tmp:
        if late:
            data, run = late_state(args.state, Path(tmp) / "state.pt")
            if args.keep_state is not None and data != args.keep_state:
                shutil.copyfile(data, args.keep_state)
        else:
            data, run = hopper_transitions(Path(tmp) / "hopper.npz"), None
        rows = [row for r in range(args.rounds)
                for row in run_round(r, pythons, data, args.threads, args.repeats, late)]  # fmt: skip
    summary = summarise(rows, late)
    print()
    text = late_table(summary, cpu, args.threads, args.rounds, run) if late else table(
        summary, cpu, args.threads, args.rounds)  # fmt: skip
    print(text)
    if args.json is not None:
        stored = {"cpu": cpu, "threads": args.threads, "rounds": args.rounds, **({"run": run} if late else {}),
                  "summary": summary, "rows": rows}  # fmt: skip
        args.json.write_text(json.dumps(stored, indent=1))
        print(f"\n{args.json}")
    if args.write is not None:
        write_block(args.write, text, *(LATE_BLOCK if late else ()))


if __name__ == "__main__":
    main()
