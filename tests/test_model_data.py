"""The loop's model-data step: settings that cannot fill the first SAC batch are refused before training."""

import pytest

from callbacks.model_data import check_batches_fit
from mbpo_pl.data import MBPODataModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.schedule import MBPOSchedule


def _schedule(init_random_steps: int, rollout_batch_size: int) -> MBPOSchedule:
    return MBPOSchedule(init_random_steps, 250, rollout_batch_size, (20, 100, 1, 15), 1000, 1)


def test_first_batches_must_fit_the_random_steps_and_the_first_rollout():
    data = MBPODataModule("InvertedPendulum-v5", batch_size=256, real_ratio=0.05)  # 12 real + 244 model rows
    check_batches_fit(data, _schedule(12, 244), world_size=1)  # exactly enough
    with pytest.raises(ConfigError, match=r"init_random_steps=11 gives each of the 1 process\(es\) 11 .* at least 12"):
        check_batches_fit(data, _schedule(11, 244), world_size=1)
    with pytest.raises(ConfigError, match=r"2 process\(es\) 10 real transitions.* at least 24"):
        check_batches_fit(data, _schedule(20, 244), world_size=2)  # split over ranks
    with pytest.raises(ConfigError, match="rollout_batch_size=243 model transitions .* fewer than the 244"):
        check_batches_fit(data, _schedule(12, 243), world_size=1)


def test_the_model_holdout_split_needs_two_real_transitions_even_without_real_rows():
    data = MBPODataModule("InvertedPendulum-v5", batch_size=256, real_ratio=0.0)
    with pytest.raises(ConfigError, match="at least 2"):
        check_batches_fit(data, _schedule(1, 256), world_size=1)
    check_batches_fit(data, _schedule(2, 256), world_size=1)
