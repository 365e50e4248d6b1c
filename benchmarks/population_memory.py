"""Peak memory of a population: the real training command at full buffers, and what the memory check estimates.

Cases (``--case``; each runs in a fresh process, its peaks read from the kernel):

* ``hopper-run``: ``python -m mbpo_pl fit --config conf/hopper.yaml --seeds [0..S-1]`` from ``--real`` uniform-random
  env steps per seed, then one schedule epoch (1000 env steps: four model trainings of one model epoch each, four
  100,000-start rollouts at Hopper's longest length k = 15, which fill each seed's model buffer to its capacity
  at k = 15, 20 SAC updates per env step, the config's checkpoint at the end): every buffer full, the moment of a
  run at ``--real`` real transitions and k = 15 with the largest footprint. ``--storage memory`` or ``memmap``.
* ``refusal``: the command for ``--config`` with ``--seeds`` as given and the config's storage; the memory check
  (:func:`mbpo_pl.population.check_population_fits`) refuses a population that will not fit before anything
  trains: prints its exit status and message.
* ``fill``: a population's buffers (:class:`mbpo_pl.replay.PopulationReplay`, memory-mapped for ``--storage memmap``)
  filled to the config's capacities (the real buffer to ``min(real_buffer_size, total_env_steps)``, the model
  buffer to its capacity at the schedule's longest rollout) with random transitions: what the buffers alone take
  when a full training to that point would take hours here (Humanoid: 12.5M model transitions per seed).

Printed per case: peak RSS (``ru_maxrss`` of the process), the peaks of its anonymous and file-backed resident
memory (``RssAnon``/``RssFile`` sampled every 0.1 s: file-backed pages of memory-mapped buffers are the kernel's
page cache, which it can write back and drop), bytes on disk under the run's folder, wall time, and the memory
check's estimate for the case.

    python benchmarks/population_memory.py --case hopper-run --seeds 4 --real 100000 --storage memory
    python benchmarks/population_memory.py --case refusal --config conf/humanoid.yaml --seeds 8 --storage memory
    python benchmarks/population_memory.py --case fill --config conf/humanoid.yaml --seeds 8 --storage memmap
    python benchmarks/population_memory.py --from-json benchmarks/population_memory_cpu2.json --write docs/speed.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.population import write_block  # noqa: E402
from benchmarks.population_sac import cpu_model  # noqa: E402

MIB = 2**20


class PeakSampler(threading.Thread):
    """Samples ``RssAnon``/``RssFile`` (KiB) of process ``pid`` every ``interval`` s and keeps their peaks."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_anon_kib = self.peak_file_kib = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            kib = {key: int(fields[key].split()[0]) for key in ("RssAnon", "RssFile") if key in fields}
            self.peak_anon_kib = max(self.peak_anon_kib, kib.get("RssAnon", 0))
            self.peak_file_kib = max(self.peak_file_kib, kib.get("RssFile", 0))
            time.sleep(self.interval)


def disk_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` as allocated on disk (sparse files count what is written)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def load_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def estimate_bytes(config: dict, seeds: int) -> tuple[int, int, int]:
    """The memory check's figures for ``config``: (bytes for ``seeds`` agents' buffers, real transitions per seed,
    model transitions per seed), as :class:`callbacks.env_loop.MBPOLoop` computes them."""
    from mbpo_pl.population import seed_buffer_sizes, transition_bytes
    from mbpo_pl.schedule import MBPOSchedule

    loop, data = config["loop"], config["data"]
    schedule = MBPOSchedule(loop["init_random_steps"], loop["model_train_freq"], loop["rollout_batch_size"],
                            tuple(loop["rollout_schedule"]), loop["epoch_length"], loop["retain_epochs"])  # fmt: skip
    real, model = seed_buffer_sizes(schedule, data["real_buffer_size"], loop["total_env_steps"])
    return seeds * (real + model) * transition_bytes(*_dims(config)), real, model


def run_command(command: list[str], folder: Path) -> dict:
    """Runs ``command`` in a fresh process; its exit status, output tail, peaks, disk use of ``folder``, wall time."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        sampler = PeakSampler(process.pid)
        sampler.start()
        peak_disk, returncode = 0, None
        while returncode is None:
            time.sleep(1.0)
            peak_disk = max(peak_disk, disk_bytes(folder)) if folder.exists() else peak_disk
            returncode = process.poll()
        sampler.done.set()
        output.seek(0)
        tail = output.read()[-3000:]
    return {
        "returncode": returncode, "wall_s": time.perf_counter() - start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "peak_anon_mib": sampler.peak_anon_kib / 1024, "peak_file_mib": sampler.peak_file_kib / 1024,
        "peak_disk_mib": peak_disk / MIB, "output_tail": tail,
    }  # fmt: skip


def hopper_run(seeds: int, real: int, storage: str, threads: int, precision: str) -> dict:
    """The ``hopper-run`` case (module docstring)."""
    config = load_config(ROOT / "conf" / "hopper.yaml")
    folder = Path(tempfile.mkdtemp(prefix="population_memory_"))
    try:
        command = [
            sys.executable, "-m", "mbpo_pl", "fit", "--config", "conf/hopper.yaml",
            "--seeds", "[" + ",".join(map(str, range(seeds))) + "]", "--trainer.precision", precision,
            "--torch_threads", str(threads), "--trainer.logger.init_args.save_dir", str(folder),
            "--trainer.enable_progress_bar", "false", "--data.buffer_storage", storage,
            "--loop.init_random_steps", str(real), "--loop.total_env_steps", str(real + 1000),
            "--loop.rollout_schedule", "[0,1,15,15]", "--model.dynamics.max_epochs_per_train", "1",
            "--eval.every_n_env_steps", "1000000", "--diagnostics.every_n_model_trainings", "1000000",
        ]  # fmt: skip
        row = run_command(command, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    config["loop"].update(init_random_steps=real, total_env_steps=real + 1000, rollout_schedule=[0, 1, 15, 15])
    estimate, real_each, model_each = estimate_bytes(config, seeds)
    return {**row, "case": "hopper-run", "env": "Hopper-v5", "seeds": seeds, "storage": storage,
            "real_per_seed": real_each, "model_per_seed": model_each, "estimate_mib": estimate / MIB}  # fmt: skip


def refusal(config_path: Path, seeds: int, storage: str) -> dict:
    """The ``refusal`` case (module docstring)."""
    config = load_config(config_path)
    folder = Path(tempfile.mkdtemp(prefix="population_memory_"))
    try:
        command = [
            sys.executable, "-m", "mbpo_pl", "fit", "--config", str(config_path),
            "--seeds", "[" + ",".join(map(str, range(seeds))) + "]", "--data.buffer_storage", storage,
            "--trainer.logger.init_args.save_dir", str(folder), "--trainer.enable_progress_bar", "false",
        ]  # fmt: skip
        row = run_command(command, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    estimate, real_each, model_each = estimate_bytes(config, seeds)
    message = [line for line in row["output_tail"].splitlines() if line.strip()][-1:]
    return {**row, "case": "refusal", "env": config["data"]["env_id"], "seeds": seeds, "storage": storage,
            "real_per_seed": real_each, "model_per_seed": model_each, "estimate_mib": estimate / MIB,
            "message": message[0] if message else ""}  # fmt: skip


def fill(config_path: Path, seeds: int, storage: str) -> dict:
    """The ``fill`` case (module docstring), run in this process (call it in a fresh one: ``--in-process``)."""
    import torch

    from mbpo_pl.replay import PopulationReplay
    from mbpo_pl.rollout import make_transitions

    config = load_config(config_path)
    estimate, real_each, model_each = estimate_bytes(config, seeds)
    obs_dim, act_dim = _dims(config)
    folder = Path(tempfile.mkdtemp(prefix="population_memory_"))
    start = time.perf_counter()
    sampler = PeakSampler(os.getpid())
    sampler.start()
    try:
        memmap = folder / "buffers" if storage == "memmap" else None
        replay = PopulationReplay(config["data"]["real_buffer_size"], torch.device("cpu"), list(range(seeds)), memmap)
        replay.resize_model(model_each)
        chunk = 100_000
        for seed in replay.seeds:
            for buffer, count in ((seed.real, real_each), (seed.model, model_each)):
                for first in range(0, count, chunk):
                    n = min(chunk, count - first)
                    rows = (torch.randn(n, obs_dim), torch.rand(n, act_dim), torch.randn(n), torch.randn(n, obs_dim))
                    buffer.extend(make_transitions(*rows, torch.zeros(n), torch.zeros(n)))
        on_disk = disk_bytes(folder)
    finally:
        sampler.done.set()
        shutil.rmtree(folder, ignore_errors=True)
    return {"case": "fill", "env": config["data"]["env_id"], "seeds": seeds, "storage": storage, "returncode": 0,
            "wall_s": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_anon_mib": sampler.peak_anon_kib / 1024, "peak_file_mib": sampler.peak_file_kib / 1024,
            "peak_disk_mib": on_disk / MIB, "real_per_seed": real_each, "model_per_seed": model_each,
            "estimate_mib": estimate / MIB}  # fmt: skip


def _dims(config: dict) -> tuple[int, int]:
    import gymnasium as gym

    env = gym.make(config["data"]["env_id"], **config["data"].get("env_kwargs", {}))
    return env.observation_space.shape[0], env.action_space.shape[0]


def markdown(stored: dict) -> str:
    lines = [
        f"CPU: {stored['cpu']}, torch {stored['torch']}, {stored['ram_gib']:.0f} GiB RAM.",
        "",
        "| case | env | seeds | storage | real + model transitions per seed | check's estimate (MiB) "
        "| peak RSS (MiB) | peak anonymous (MiB) | peak file-backed (MiB) | on disk (MiB) | code | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in stored["rows"]:
        outcome = (f"ran, {row['wall_s']:.0f} s" if row["returncode"] == 0 else
                   f"exit {row['returncode']} after {row['wall_s']:.0f} s: {row.get('message', '')}")  # fmt: skip
        lines.append(
            f"| {row['case']} | {row['env']} | {row['seeds']} | {row['storage']} | "
            f"{row['real_per_seed']:,} + {row['model_per_seed']:,} | {row['estimate_mib']:,.0f} | "
            f"{row['peak_rss_mib']:,.0f} | {row['peak_anon_mib']:,.0f} | {row['peak_file_mib']:,.0f} | "
            f"{row['peak_disk_mib']:,.0f} | {row.get('commit', '')} | {outcome} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["hopper-run", "refusal", "fill"], default=None)
    parser.add_argument("--config", type=Path, default=ROOT / "conf" / "hopper.yaml")
    parser.add_argument("--seeds", type=int, default=4, help="population size S")
    parser.add_argument("--real", type=int, default=100_000, help="hopper-run: real transitions per seed")
    parser.add_argument("--storage", choices=["memory", "memmap"], default="memory")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="append the case's row to this JSON")
    parser.add_argument("--from-json", type=Path, default=None, help="print (or --write) a stored table")
    parser.add_argument("--write", type=Path, default=None, help="replace the <!-- population-memory --> block")
    args = parser.parse_args()
    if args.from_json is not None:
        text = markdown(json.loads(args.from_json.read_text()))
        print(text)
        if args.write is not None:
            write_block(args.write, text, "<!-- population-memory -->", "<!-- /population-memory -->")
        return
    if args.case is None:
        parser.error("give --case (or --from-json)")
    if args.case == "fill" and args.in_process:
        print(json.dumps(fill(args.config, args.seeds, args.storage)))
        return
    if args.case == "hopper-run":
        row = hopper_run(args.seeds, args.real, args.storage, args.threads, args.precision)
    elif args.case == "refusal":
        row = refusal(args.config, args.seeds, args.storage)
    else:  # a fresh process, so that its peak RSS is this case's alone
        child = subprocess.run([sys.executable, __file__, "--case", "fill", "--config", str(args.config), "--seeds",
                                str(args.seeds), "--storage", args.storage, "--in-process"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        row = json.loads(child.stdout.splitlines()[-1])
    row.pop("output_tail", None) if row["returncode"] == 0 else None
    row["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                   text=True).stdout.strip()  # fmt: skip
    print(json.dumps(row, indent=1))
    if args.json is not None:
        import torch

        stored = json.loads(args.json.read_text()) if args.json.exists() else {
            "cpu": cpu_model(), "torch": torch.__version__,
            "ram_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, "rows": []}  # fmt: skip
        stored["rows"].append({key: value for key, value in row.items() if key != "output_tail"})
        args.json.write_text(json.dumps(stored, indent=1))
    print(markdown({"cpu": cpu_model(), "torch": "", "ram_gib": 0, "rows": [row]}).splitlines()[-1])


if __name__ == "__main__":
    main()
