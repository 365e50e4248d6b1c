"""Whole MBPO training loops: S seeds in one process (``--seeds``) against S separate one-agent processes.

Every layout runs the real command (``python -m mbpo_pl fit --config conf/hopper.yaml``, Hopper-v5 at the paper's
settings: G = 20 SAC updates per env step, a 7-member ensemble retrained every 250 env steps on all real data,
100,000-start rollouts) from ``--random-steps`` random env steps to two model-training periods (250 env steps each)
later, and takes the second period's wall time as its figure (``time/epoch_s`` of the run's logs: model training,
rollouts, env steps, SAC updates and evaluations are all in it; no evaluation falls inside). Four layouts of S
seeds: one process training the population with all the cores' threads; ``split``: one one-thread process per
core, each training a population of S / cores seeds (two runs with ``--seeds`` halves); ``ddp``: the same split as
one run (``--seeds`` over ``--trainer.devices cores`` CPU processes, one thread each: one run folder and
checkpoint); ``separate``: S one-agent processes started together, the cores' threads split among them (at least
one each). Printed per layout:
aggregate seed-env-steps/s (env steps of all seeds per second of wall time, summed over the layout's processes),
the ratio to the separate processes, and peak memory (summed over the processes), in the precisions asked for,
all in one sitting.

    python benchmarks/population.py --seeds 1 2 4 --json benchmarks/population_cpu2.json
    python benchmarks/population.py --from-json benchmarks/population_cpu2.json --write docs/speed.md

This is the loop early in a run (a few thousand real transitions, rollout length 1); late in a run model training
dominates (docs/speed.md), and its share batches as the SAC update's does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.population_sac import cpu_model  # noqa: E402

MODEL_TRAIN_FREQ = 250


def _command(run_dir: Path, precision: str, threads: int, random_steps: int, seeds: list[int] | int,
             processes: int = 1) -> list[str]:  # fmt: skip
    """``seeds``: a population's seeds (``--seeds``; over ``processes`` CPU processes), or one agent's seed (a
    one-agent run)."""
    if isinstance(seeds, list):
        seed_args = ["--seeds", "[" + ",".join(map(str, seeds)) + "]"]
        if processes > 1:
            seed_args += ["--trainer.accelerator", "cpu", "--trainer.devices", str(processes)]
    else:
        seed_args = ["--seed_everything", str(seeds)]
    return [
        sys.executable, "-m", "mbpo_pl", "fit", "--config", str(ROOT / "conf" / "hopper.yaml"), *seed_args,
        "--trainer.precision", precision, "--torch_threads", str(threads),
        "--trainer.logger.init_args.save_dir", str(run_dir), "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]",
        "--loop.init_random_steps", str(random_steps),
        "--loop.total_env_steps", str(random_steps + 2 * MODEL_TRAIN_FREQ),
        "--eval.every_n_env_steps", "1000000", "--diagnostics.every_n_model_trainings", "1000000",
    ]  # fmt: skip


def _second_period_s(run_dir: Path) -> float:
    from mbpo_pl.report import load_scalars

    (folder,) = [p.parent for p in run_dir.rglob("events.out.tfevents.*") if not p.parent.name.startswith("seed_")]
    epochs = load_scalars(folder)["time/epoch_s"]
    return epochs[-1][1]


LAYOUTS = ("one process", "split", "ddp", "separate")


def _tree_rss_kib(pid: int) -> int:
    """Resident memory (KiB) of process ``pid`` and all its descendants, from ``/proc``."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[int(entry.name)] = next((int(line.split()[1]) for line in status.splitlines()
                                     if line.startswith("VmRSS:")), 0)  # fmt: skip
    tree, frontier = {pid}, [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier and child not in tree]
        tree.update(children)
        frontier = children
    return sum(rss.get(p, 0) for p in tree)


def run_layout(population: int, layout: str, precision: str, cores: int, random_steps: int) -> dict:
    """One layout's figures: seed-env-steps/s over the second model-training period, peak RSS (MiB; summed over
    the layout's processes). ``one process``: a population of all seeds with ``cores`` threads; ``split``: ``cores``
    one-thread processes, each a population of ``population / cores`` seeds; ``separate``: ``population`` one-agent
    processes, the threads split among them (at least one each)."""
    seeds = list(range(population))
    with tempfile.TemporaryDirectory() as tmp:
        if layout == "separate":
            threads = max(1, cores // population)
            groups: list[list[int] | int] = seeds
        elif layout == "split":
            threads, size = 1, population // cores
            groups = [seeds[i : i + size] for i in range(0, population, size)]
        elif layout == "ddp":
            threads, groups = 1, [seeds]
        else:
            threads, groups = cores, [seeds]
        folders = [Path(tmp) / f"p{i}" for i in range(len(groups))]
        ranks = cores if layout == "ddp" else 1
        commands = [_command(f, precision, threads, random_steps, g, ranks) for f, g in zip(folders, groups)]
        processes = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for c in commands]  # fmt: skip
        peak_kib = 0
        if layout == "ddp":  # the launcher starts the other ranks as its children: sample the tree's memory
            while processes[0].poll() is None:
                peak_kib = max(peak_kib, _tree_rss_kib(processes[0].pid))
                time.sleep(0.5)
        for process in processes:
            if process.returncode is None:
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                peak_kib += usage.ru_maxrss
            if process.returncode != 0:
                raise SystemExit(f"{' '.join(process.args)} failed:\n{process.stderr.read()[-3000:]}")
        seconds = [_second_period_s(folder) for folder in folders]
    sizes = [len(g) if isinstance(g, list) else 1 for g in groups]
    throughput = sum(MODEL_TRAIN_FREQ * size / s for size, s in zip(sizes, seconds))
    return {"population": population, "layout": layout, "precision": precision, "threads": threads,
            "seed_env_steps_per_s": throughput, "period_s": seconds, "peak_rss_mib": peak_kib / 1024}  # fmt: skip


def markdown(stored: dict) -> str:
    lines = [
        f"{stored['cpu']}, torch {stored['torch']}, {stored['cores']} cores, "
        f"{stored['random_steps']:,} random steps then two {MODEL_TRAIN_FREQ}-step periods (the second timed)",
        "",
        "| precision | seeds | layout | seed-env-steps/s | vs S separate processes | vs the best separate layout "
        "| peak RSS (MiB, all processes) |",
        "|---|---|---|---|---|---|---|",
    ]
    describe = {"one process": "1 process x {c} threads, population of {s}",
                "split": "{c} processes x 1 thread, population of {h} each",
                "ddp": "1 run over {c} processes (--trainer.devices) x 1 thread, population of {h} each",
                "separate": "{s} process(es) x {t} thread(s), one agent each"}  # fmt: skip
    for precision in stored["precisions"]:
        # the most seed-env-steps/s any number of separate one-agent processes gave (e.g. two at a time)
        best = max((r["seed_env_steps_per_s"] for r in stored["rows"]
                    if r["precision"] == precision and r["layout"] == "separate"), default=None)  # fmt: skip
        for population in stored["seeds"]:
            rows = {r["layout"]: r for r in stored["rows"]
                    if r["precision"] == precision and r["population"] == population}  # fmt: skip
            base = rows.get("separate")
            for layout in LAYOUTS:
                row = rows.get(layout)
                if row is None:
                    continue
                ratio = f"{row['seed_env_steps_per_s'] / base['seed_env_steps_per_s']:.2f}x" if base else "-"
                text = describe[layout].format(c=stored["cores"], s=population, h=population // stored["cores"],
                                               t=row["threads"])  # fmt: skip
                rate = row["seed_env_steps_per_s"]
                versus_best = f"{rate / best:.2f}x" if best else "-"
                lines.append(f"| {precision} | {population} | {text} | {rate:.2f} | {ratio} | {versus_best} | "
                             f"{row['peak_rss_mib']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def write_block(path: Path, text: str, start: str = "<!-- population -->", end: str = "<!-- /population -->") -> None:
    doc = path.read_text()
    if start not in doc or end not in doc:
        raise SystemExit(f"{path} has no {start} ... {end} block to replace")
    head, rest = doc.split(start, 1)
    path.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8], help="population sizes S")
    parser.add_argument("--precisions", nargs="+", default=["bf16-mixed", "32-true"])
    parser.add_argument("--separate-up-to", type=int, default=8, help="time separate processes up to this S")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=None, help="only these layouts")
    parser.add_argument("--random-steps", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="print (or --write) a stored run's table")
    parser.add_argument("--write", type=Path, default=None, help="replace the <!-- BLOCK --> block there")
    parser.add_argument("--block", default="population", help="the marker name of that block (default: population)")
    args = parser.parse_args()
    if args.from_json is not None:
        text = markdown(json.loads(args.from_json.read_text()))
        print(text)
        if args.write is not None:
            write_block(args.write, text, f"<!-- {args.block} -->", f"<!-- /{args.block} -->")
        return
    import torch

    stored = {"cpu": cpu_model(), "torch": torch.__version__, "cores": args.cores, "random_steps": args.random_steps,
              "seeds": args.seeds, "precisions": args.precisions, "rows": []}  # fmt: skip
    for precision in args.precisions:
        for population in args.seeds:
            layouts = ["one process"]
            if population >= args.cores and population % args.cores == 0 and population > 1:
                layouts += ["split", "ddp"]
            if population <= args.separate_up_to:
                layouts.append("separate")
            for layout in [layout for layout in layouts if args.layouts is None or layout in args.layouts]:
                start = time.perf_counter()
                row = run_layout(population, layout, precision, args.cores, args.random_steps)
                stored["rows"].append(row)
                print(f"{precision:10s} S={population} {layout}: "
                      f"{row['seed_env_steps_per_s']:.2f} seed-env-steps/s, peak {row['peak_rss_mib']:.0f} MiB "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
                if args.json is not None:
                    args.json.write_text(json.dumps(stored, indent=1))
    print(markdown(stored))


if __name__ == "__main__":
    main()
