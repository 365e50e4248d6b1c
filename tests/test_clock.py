"""The run clock the callbacks bill their time to."""

import time

import pytest

from callbacks.clock import RunClock


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
                            "time/env_s"}  # fmt: skip
    assert metrics["time/epoch_s"] == pytest.approx(metrics["time/env_s"] + metrics["time/sac_s"])
    assert metrics["time/env_s"] >= 0.02 and metrics["time/sac_s"] >= 0.03
    assert metrics["time/env_steps_per_s"] == pytest.approx(10 / metrics["time/epoch_s"])
    assert metrics["time/sac_updates_per_s"] == pytest.approx(200 / metrics["time/sac_s"])
    clock.start_epoch()
    assert clock.parts == {} and clock.epoch_metrics(1, 1)["time/epoch_s"] < 0.02
