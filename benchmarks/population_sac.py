"""SAC updates of a population of S agents in one process against S single agents in separate processes.

Hopper-v5 sizes (obs 11, action 3, hidden 256, batch 256), one env step's G = 20 updates per timed call. One process
with ``--threads`` torch threads trains the population (``SACModule(population=S)``, batches ``[S, 256]``); the
separate layout runs ``--threads`` processes of one thread each, every one training single agents at the same time,
as two runs share two cores; the split layout runs ``--threads`` one-thread processes, each training a population
of S / threads agents (the seeds split over processes, as over DDP ranks). Printed: per update and per seed-update
times, and the aggregate seed-updates per second of every layout, in fp32 and bf16-mixed, all in one sitting;
``--mbrl`` also times mbrl-lib's SAC update in the same sitting (``benchmarks/peer_worker.py`` in the
``benchmarks/peer.py`` venv, before and after ours) for the per-seed ratio; ``--json`` writes them,
``--from-json FILE --write docs/speed.md`` puts their table into the doc.

    python benchmarks/population_sac.py --mbrl --json benchmarks/population_sac_cpu2.json
    python benchmarks/population_sac.py --from-json benchmarks/population_sac_cpu2.json --write docs/speed.md
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from queue import Empty

import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from tensordict import TensorDict

OBS, ACT, HIDDEN, BATCH, G = 11, 3, 256, 256, 20


def _batches(population: int | None) -> TensorDict:
    shape = (G, BATCH) if population is None else (G, population, BATCH)
    flags = torch.rand(*shape, 1) < 0.01
    return TensorDict({
        "observation": torch.randn(*shape, OBS), "action": torch.rand(*shape, ACT) * 2 - 1,
        "next": {"observation": torch.randn(*shape, OBS), "reward": torch.randn(*shape, 1), "terminated": flags},
    }, batch_size=list(shape))  # fmt: skip


def time_updates(population: int | None, bf16: bool, calls: int, threads: int) -> float:
    """Seconds per update call of G updates (median of ``calls`` after two warm-up calls)."""
    from mbpo_pl.sac import SACModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sac = SACModule(OBS, ACT, hidden_size=HIDDEN, target_entropy=-1.0, population=population)
    batches = _batches(population)
    # bf16 as training runs it: Lightning's plugin (autocast without its cast cache), one region per call
    region = MixedPrecision("bf16-mixed", "cpu").forward_context if bf16 else nullcontext
    times = []
    for i in range(calls + 2):
        start = time.perf_counter()
        with region():
            sac.update_many(batches)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _worker(args: tuple[int | None, bool, int, float, mp.Queue]) -> None:
    population, bf16, calls, start_at, queue = args
    while time.time() < start_at:  # start together
        time.sleep(0.001)
    queue.put(time_updates(population, bf16, calls, 1))


def separate_processes(processes: int, bf16: bool, calls: int, population: int | None = None) -> float:
    """Aggregate seed-updates per second of ``processes`` one-thread processes, each training one agent (or a
    population of ``population`` agents)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 5.0
    job = (population, bf16, calls, start_at, queue)
    workers = [context.Process(target=_worker, args=(job,)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    seconds = []
    while len(seconds) < len(workers):
        try:
            seconds.append(queue.get(timeout=10))
        except Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed:
                raise SystemExit(f"a benchmark process failed (exit codes {failed})") from None
    for worker in workers:
        worker.join()
    return sum(G * (population or 1) / s for s in seconds)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def mbrl_update_ms(python: str, data: Path, threads: int, calls: int) -> float:
    """mbrl-lib's SAC update (ms, with its minibatch sampling) on Hopper data, from its own venv."""
    worker = Path(__file__).with_name("peer_worker.py")
    command = [python, str(worker), "mbrl", str(data), "--threads", str(threads), "--repeats", str(calls)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=worker.parent.parent)
    if out.returncode != 0:
        raise SystemExit(f"mbrl-lib's worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["sac_update_ms"]


def markdown(stored: dict) -> str:
    """The stored figures as a markdown table, with the aggregate rate of each layout relative to the separate
    single-agent processes of the same precision, and mbrl-lib's update time over each layout's time per
    seed-update (where it was measured)."""
    header = "| precision | layout | seeds | ms per seed-update | seed-updates/s | vs separate | mbrl-lib / ours |"
    lines = [stored["setting"]]
    mbrl = stored.get("mbrl_update_ms")
    if mbrl:
        lines.append(f"mbrl-lib 0.2.0's SAC update in the same sitting: {statistics.mean(mbrl):.2f} ms "
                     f"(before and after ours: {', '.join(f'{m:.2f}' for m in mbrl)})")  # fmt: skip
    lines += ["", header, "|---|---|---|---|---|---|---|"]
    rows = stored["rows"]
    separate = [row for row in rows if row["layout"].endswith("1 agent each")]
    baseline = {row["precision"]: row["seed_updates_per_s"] for row in separate}
    for row in rows:
        per_seed = 1000 / row["seed_updates_per_s"]  # wall ms per seed-update, all cores together
        ratio = row["seed_updates_per_s"] / baseline[row["precision"]]
        versus = f"{statistics.mean(mbrl) / per_seed:.2f}×" if mbrl else "—"
        lines.append(f"| {row['precision']} | {row['layout']} | {row['seeds']} | {per_seed:.2f} | "
                     f"{row['seed_updates_per_s']:.0f} | {ratio:.2f}× | {versus} |")  # fmt: skip
    return "\n".join(lines)


def _peer():  # noqa: ANN202 (the module)
    """benchmarks/peer.py: mbrl-lib's venv and data, and the doc-block writer."""
    sys.path.insert(0, str(Path(__file__).parent))
    import peer

    return peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="cores: threads of the population, processes else")
    parser.add_argument("--calls", type=int, default=15, help="timed calls of G updates per figure")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--json", default=None)
    parser.add_argument("--mbrl", action="store_true", help="also time mbrl-lib's SAC update (its own venv)")
    parser.add_argument("--peer-python", default=None, help="a python with mbrl==0.2.0 (default: .peer-venv)")
    parser.add_argument("--from-json", type=Path, default=None, help="print (or --write) a stored run's table")
    parser.add_argument("--write", type=Path, default=None, help="replace the <!-- population-sac --> block there")
    args = parser.parse_args()
    if args.from_json is not None:
        text = markdown(json.loads(args.from_json.read_text()))
        if args.write is not None:
            _peer().write_block(args.write, text, "<!-- population-sac -->", "<!-- /population-sac -->")
        print(text)
        return
    mbrl: list[float] = []
    if args.mbrl:
        peer = _peer()
        python = peer.peer_python(args.peer_python)
        data = peer.hopper_transitions(Path(tempfile.mkdtemp()) / "hopper.npz")
        mbrl.append(mbrl_update_ms(python, data, args.threads, args.calls))
    rows = []
    for bf16 in (False, True):
        precision = "bf16-mixed" if bf16 else "32-true"
        separate = separate_processes(args.threads, bf16, args.calls)
        single = time_updates(None, bf16, args.calls, args.threads)
        rows.append({"precision": precision, "layout": f"{args.threads} processes x 1 thread, 1 agent each",
                     "seeds": args.threads, "seed_updates_per_s": separate})  # fmt: skip
        rows.append({"precision": precision, "layout": f"1 process x {args.threads} threads, 1 agent",
                     "seeds": 1, "update_ms": 1000 * single / G, "seed_updates_per_s": G / single})  # fmt: skip
        for size in args.sizes:
            seconds = time_updates(size, bf16, args.calls, args.threads)
            rows.append({
                "precision": precision, "layout": f"1 process x {args.threads} threads, population", "seeds": size,
                "update_ms": 1000 * seconds / G, "seed_update_ms": 1000 * seconds / G / size,
                "seed_updates_per_s": G * size / seconds,
            })  # fmt: skip
            if size % args.threads == 0 and size > args.threads:
                split = separate_processes(args.threads, bf16, args.calls, size // args.threads)
                rows.append({"precision": precision, "layout": f"{args.threads} processes x 1 thread, population "
                             f"{size // args.threads} each", "seeds": size, "seed_updates_per_s": split})  # fmt: skip
    if args.mbrl:
        mbrl.append(mbrl_update_ms(python, data, args.threads, args.calls))
    header = f"{cpu_model()}, torch {torch.__version__}, {args.threads} cores, median of {args.calls} calls"
    print(header)
    print(f"{'precision':<11} {'layout':<45} {'S':>2} {'ms/update':>10} {'ms/seed-upd':>11} {'seed-upd/s':>10}")
    for row in rows:
        update = f"{row['update_ms']:.2f}" if "update_ms" in row else "—"
        seed_update = f"{row['seed_update_ms']:.2f}" if "seed_update_ms" in row else "—"
        print(f"{row['precision']:<11} {row['layout']:<45} {row['seeds']:>2} {update:>10} {seed_update:>11} "
              f"{row['seed_updates_per_s']:>10.0f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"setting": header, "rows": rows, "mbrl_update_ms": mbrl}, handle, indent=1)


if __name__ == "__main__":
    main()
