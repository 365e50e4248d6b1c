"""The run clock the callbacks bill their time to."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbpo_pl.clock import RunClock


def test_timed_parts_accumulate_and_survive_exceptions():
    clock = RunClock()
    for _ in range(2):
        with clock.timed("env"):
            time.sleep(0.01)
    with pytest.raises(RuntimeError), clock.timed("eval"):
        time.sleep(0.01)
        raise RuntimeError("a failing evaluation is still billed")
    assert clock.parts["env"] >= 0.02 and clock.parts["eval"] >= 0.01
    clock.reset()
    assert clock.parts == {}


def test_epoch_metrics_split_the_epoch_into_its_parts_and_the_sac_rest():
    clock = RunClock()
    clock.start_epoch()
    with clock.timed("env"):
        time.sleep(0.02)
    time.sleep(0.03)  # what no part claims is the SAC updates' time
    metrics = clock.epoch_metrics(env_steps=10, sac_updates=200)
    assert set(metrics) == {"time/env_steps_per_s", "time/sac_updates_per_s", "time/epoch_s", "time/sac_s",
                            "time/suspended_s", "time/env_s"}  # fmt: skip
    assert metrics["time/epoch_s"] == pytest.approx(metrics["time/env_s"] + metrics["time/sac_s"])
    assert metrics["time/env_s"] >= 0.02 and metrics["time/sac_s"] >= 0.03
    assert metrics["time/env_steps_per_s"] == pytest.approx(10 / metrics["time/epoch_s"])
    assert metrics["time/sac_updates_per_s"] == pytest.approx(200 / metrics["time/sac_s"])
    time.sleep(0.02)  # between two epochs (a checkpoint being saved)
    with clock.timed("diagnostics"):  # a callback whose epoch-end hook ran after the figures were taken
        time.sleep(0.01)
    clock.start_epoch()
    assert set(clock.parts) == {"diagnostics", "between_epochs"} and clock.parts["between_epochs"] >= 0.02
    nxt = clock.epoch_metrics(1, 1)
    assert nxt["time/epoch_s"] >= 0.03 and nxt["time/diagnostics_s"] >= 0.01  # nothing in between goes uncounted
    assert nxt["time/epoch_s"] == pytest.approx(nxt["time/between_epochs_s"] + nxt["time/diagnostics_s"]
                                               + nxt["time/sac_s"])  # fmt: skip


# A process that times 0.5 s of busy work on a RunClock, with a suspension in the middle, and prints the metrics.
SUSPENDED_WORKER = """
import json, time
from mbpo_pl.clock import RunClock
clock = RunClock()
clock.watch()
clock.start_epoch()
wall_start = time.perf_counter()
print("ready", flush=True)
with clock.timed("env"):
    start = clock.now()
    while clock.now() - start < 0.5:
        pass
metrics = clock.epoch_metrics(1, 1)
print(json.dumps({**metrics, "wall": time.perf_counter() - wall_start}), flush=True)
"""


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not hasattr(signal, "SIGTSTP") or not Path("/proc/self/stat").exists(), reason="needs Linux")
def test_an_epoch_saved_part_way_continues_with_its_time_so_far_and_without_the_time_in_between():
    clock = RunClock()
    clock.start_epoch()
    with clock.timed("model_train"):
        time.sleep(0.05)
    time.sleep(0.03)  # SAC updates
    saved = clock.state_dict()
    assert saved["elapsed_s"] >= 0.08 and saved["parts"]["model_train"] >= 0.05
    time.sleep(0.2)  # the process is stopped and a new one starts
    resumed = RunClock()
    resumed.load_state_dict(saved)
    with resumed.timed("env"):
        time.sleep(0.02)
    metrics = resumed.epoch_metrics(env_steps=250, sac_updates=5000)
    assert saved["elapsed_s"] + 0.02 <= metrics["time/epoch_s"] < saved["elapsed_s"] + 0.15
    assert metrics["time/model_train_s"] == saved["parts"]["model_train"]
    assert metrics["time/env_s"] >= 0.02
    assert metrics["time/sac_s"] >= 0.03


def test_time_suspended_by_sigtstp_is_left_out_and_reported():
    worker = subprocess.Popen([sys.executable, "-c", SUSPENDED_WORKER], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1], start_new_session=True)  # fmt: skip
    try:
        assert worker.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        worker.send_signal(signal.SIGTSTP)
        deadline = time.monotonic() + 10
        while _process_state(worker.pid) != "T":  # stopped, even outside a shell's job control (own session)
            assert time.monotonic() < deadline, "SIGTSTP did not stop the process"
            time.sleep(0.01)
        time.sleep(1.0)
        worker.send_signal(signal.SIGCONT)
        metrics = json.loads(worker.stdout.readline())
    finally:
        worker.kill()
        worker.wait()
    assert metrics["wall"] >= 1.4  # the suspension happened inside the timed work
    assert metrics["time/suspended_s"] >= 0.95
    assert 0.5 <= metrics["time/env_s"] < 0.8 and metrics["time/epoch_s"] < 0.9  # only the work is counted
