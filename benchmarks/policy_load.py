"""What loading a trained policy costs: ``load_policy`` (memory-mapped, only the actor read) against reading the whole
checkpoint with ``torch.load``, each in a fresh process, by wall time and peak resident memory.

    python benchmarks/policy_load.py CKPT [--repeats 3]
    python benchmarks/policy_load.py --humanoid-50k-from SRC_CKPT -o big.ckpt   # then measure big.ckpt

``--humanoid-50k-from`` writes a checkpoint of the size a Humanoid MBPO run has at 50k env steps with in-memory
buffers (``conf/humanoid.yaml`` with ``data.buffer_storage memory``: real buffer 50k transitions; model buffer
5 retained epochs x rollout length 3 x 100k rollout starts = 1.5M transitions), from a real Humanoid checkpoint by
repeating its buffers' rows: the same structure and tensor sizes as the real thing, about 0.7 GB.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import torch

# (imports, timed call): both run after importing torch and mbpo_pl, so only the loading itself is timed.
PROBES = {
    "load_policy (mbpo_pl)": "policy = load_policy(PATH)",
    "torch.load, whole checkpoint": "checkpoint = torch.load(PATH, map_location='cpu', weights_only=True)",
}
MEASURE = (
    "import resource, sys, time; import torch; from mbpo_pl import load_policy; PATH = sys.argv[1]; "
    "start = time.perf_counter(); {probe}; seconds = time.perf_counter() - start; "
    "print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)
BASELINE = (
    "import resource, torch; from mbpo_pl import load_policy; "
    "print(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def tile_to_humanoid_50k(source: Path, output: Path) -> Path:
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    for name, rows in (("real", 50_000), ("model", 1_500_000)):
        data = checkpoint["MBPODataModule"][name]["data"]
        for key, value in data.items():
            data[key] = value.repeat(-(-rows // value.shape[0]), *[1] * (value.dim() - 1))[:rows].clone()
    torch.save(checkpoint, output)
    return output


def measure(code: str, path: Path) -> tuple[float, float]:
    """``(seconds, peak RSS in MiB)`` of one fresh process running ``code``."""
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    seconds, kib = out.stdout.split()[-2:]
    return float(seconds), float(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", type=Path)
    parser.add_argument("--humanoid-50k-from", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, default=Path("humanoid_50k_like.ckpt"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.humanoid_50k_from is not None:
        print(tile_to_humanoid_50k(args.humanoid_50k_from, args.output))
        return
    size = args.checkpoint.stat().st_size / 2**20
    _, baseline = measure(BASELINE, args.checkpoint)
    print(f"{args.checkpoint}: {size:,.0f} MiB; a process with torch and mbpo_pl imported: {baseline:,.0f} MiB "
          "peak RSS")  # fmt: skip
    print(f"{'what':<32}{'seconds (median)':>18}{'peak RSS MiB (median)':>24}")
    for label, probe in PROBES.items():
        runs = [measure(MEASURE.format(probe=probe), args.checkpoint) for _ in range(args.repeats)]
        seconds = statistics.median(s for s, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"{label:<32}{seconds:>18.2f}{rss:>24,.0f}")


if __name__ == "__main__":
    main()
