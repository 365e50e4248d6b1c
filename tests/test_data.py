import pytest
import torch

from mbpo_pl.data import MBPODataModule
from mbpo_pl.rollout import make_transitions


def _transitions(n, reward_value, start=0):
    obs = torch.arange(start, start + n, dtype=torch.float32).unsqueeze(-1).expand(n, 4).clone()
    return make_transitions(
        obs,
        torch.zeros(n, 1),
        torch.full((n,), reward_value),
        obs + 1,
        torch.zeros(n, dtype=torch.bool),
        torch.zeros(n, dtype=torch.bool),
    )


@pytest.fixture
def datamodule():
    dm = MBPODataModule(
        "InvertedPendulum-v5", updates_per_step=3, batch_size=40, real_ratio=0.05, real_buffer_size=1000
    )
    dm.setup("fit")
    return dm


def test_each_minibatch_has_exactly_int_batch_times_ratio_real_rows(datamodule):
    datamodule.add_real(_transitions(100, reward_value=1.0))
    datamodule.resize_model_buffer(500)
    datamodule.add_model(_transitions(300, reward_value=0.0))
    batches = datamodule.sample_sac_batches()
    assert batches.shape == (3, 40)
    is_real = batches["next", "reward"].squeeze(-1) == 1.0
    assert (is_real.sum(1) == int(40 * 0.05)).all()
    assert is_real[:, :2].all()  # real rows first


def test_all_real_before_the_first_rollout(datamodule):
    datamodule.add_real(_transitions(10, reward_value=1.0))
    batches = datamodule.sample_sac_batches()
    assert (batches["next", "reward"] == 1.0).all()


def test_model_buffer_resize_keeps_the_most_recent(datamodule):
    datamodule.resize_model_buffer(100)
    datamodule.add_model(_transitions(250, 0.0))  # wraps around: holds 150..249
    datamodule.resize_model_buffer(40)
    kept = datamodule.model_buffer.storage[torch.arange(40)]["observation"][:, 0]
    torch.testing.assert_close(kept, torch.arange(210, 250, dtype=torch.float32))
    datamodule.resize_model_buffer(400)  # growing keeps everything
    assert len(datamodule.model_buffer) == 40


def test_sampling_is_seeded():
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        dm = MBPODataModule("InvertedPendulum-v5", updates_per_step=2, batch_size=16, real_buffer_size=100)
        dm.setup("fit")
        dm.add_real(_transitions(50, 1.0))
        draws.append(dm.sample_sac_batches()["observation"])
    torch.testing.assert_close(draws[0], draws[1])


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_real_ratio_out_of_range_is_refused(ratio):
    with pytest.raises(ValueError, match="real_ratio"):
        MBPODataModule("InvertedPendulum-v5", real_ratio=ratio)


def test_discrete_and_unknown_envs_are_refused():
    with pytest.raises(ValueError, match="Box"):
        MBPODataModule("CartPole-v1")
    with pytest.raises(ValueError, match="Did you mean: Hopper-v5"):
        MBPODataModule("Hoper-v5")
