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
