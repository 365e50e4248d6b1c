"""Component timings of mbpo_pl at Hopper-v5 sizes, printed as a table and written as JSON.

    python benchmarks/bench.py [--device cpu|cuda] [--threads 2] [--out benchmarks/results.json] [--quick]
    python benchmarks/bench.py --only sac float32_heads --skip-per-1000   # some sections only

Each speed ratio compares two paths measured in this same run. bf16 runs under Lightning's own ``bf16-mixed``
precision plugin (autocast without the weight-cast cache), exactly as ``--trainer.precision bf16-mixed`` trains.
Run on a quiet machine: any other CPU-heavy process makes torch's OpenMP threads spin and the figures meaningless.
The sections live in components.py, trainer_overhead.py and per_1000.py; full-run projections of a stored results
file, timing nothing: ``python benchmarks/projection.py RESULTS_JSON``.
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import lightning
import torch

from components import (
    bench_diagnostics,
    bench_ensemble,
    bench_env,
    bench_float32_heads,
    bench_matmul_floor,
    bench_rollout,
    bench_sac,
)
from per_1000 import bench_per_1000
from timing import Bench
from trainer_overhead import bench_trainer_overhead


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where networks, buffers and rollouts live")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller late buffer (a smoke run)")
    parser.add_argument("--scale", type=float, default=1.0, help="repeats of the component timings (x)")
    parser.add_argument("--no-graphs", action="store_true", help="on CUDA, leave out the CUDA-graph variants")
    parser.add_argument("--skip-per-1000", action="store_true", help="only the component timings (about 2 minutes)")
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections (e.g. sac float32_heads)")
    args = parser.parse_args()
    args.error = parser.error
    return args


def main() -> None:
    args = parse_args()
    bench = Bench(torch.device(args.device), graphs=not args.no_graphs)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    scale = 0.2 * args.scale if args.quick else args.scale
    meta = {
        "threads": args.threads,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(bench.device) if bench.device.type == "cuda" else "cpu",
        "quick": args.quick,
    }
    print(f"mbpo_pl benchmark ({meta})")
    results: dict[str, float] = {}
    sections = {
        "sac": lambda: bench_sac(bench, int(200 * scale) or 5),
        "trainer_overhead": lambda: bench_trainer_overhead(bench, int(150 * scale) or 5),
        "ensemble": lambda: bench_ensemble(bench, int(100 * scale) or 5),
        "float32_heads": lambda: bench_float32_heads(bench, int(100 * scale) or 5),
        "diagnostics": lambda: bench_diagnostics(bench, int(20 * scale) or 3),
        "matmul_floor": lambda: bench_matmul_floor(bench, int(100 * scale) or 5),
        "rollout": lambda: bench_rollout(bench, 100_000, 3 if not args.quick else 1),
        "env": lambda: bench_env(bench, int(2000 * scale) or 50),
    }
    if not args.skip_per_1000:
        sections["per_1000"] = lambda: bench_per_1000(bench, args.quick, results)
    if args.only:
        unknown = set(args.only) - set(sections)
        if unknown:
            args.error(f"unknown --only section(s) {sorted(unknown)}; choose from {sorted(sections)}")
        sections = {name: sections[name] for name in args.only}
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
