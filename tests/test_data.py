import pytest
import torch

from mbpo_pl.buffers import (
    buffer_state,
    dump_buffer,
    load_dumped_buffer,
    make_replay_buffer,
    restore_buffer,
)
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


def _memmap_datamodule(buffer_dir):
    return MBPODataModule(
        "InvertedPendulum-v5", updates_per_step=3, batch_size=40, real_buffer_size=1000, buffer_storage="memmap",
        buffer_dir=str(buffer_dir),
    )  # fmt: skip


def _filled_memmap_datamodule(buffer_dir):
    dm = _memmap_datamodule(buffer_dir)
    dm.setup("fit")
    dm.add_real(_transitions(100, reward_value=1.0))
    dm.resize_model_buffer(500)
    dm.add_model(_transitions(300, reward_value=0.0))
    return dm


def test_memmap_save_cut_off_before_its_checkpoint_file_leaves_the_previous_checkpoint_resumable(tmp_path):
    dm = _filled_memmap_datamodule(tmp_path / "buffers")
    written = dm.state_dict()  # a checkpoint file holds this
    saved_real = dm.real_transitions()["observation"].clone()
    dm.add_real(_transitions(10, reward_value=2.0, start=100))
    dm.state_dict()  # the next save: its buffers are on disk, then the process dies before its checkpoint file
    resumed = _memmap_datamodule(tmp_path / "buffers")  # a new process, the same run folder
    resumed.load_state_dict(written)
    assert len(resumed.real_buffer) == 100 and len(resumed.model_buffer) == 300
    torch.testing.assert_close(resumed.real_transitions()["observation"], saved_real, rtol=0, atol=0)


def test_memmap_saves_keep_the_latest_two_and_write_each_moment_once(tmp_path, monkeypatch):
    import mbpo_pl.buffer_checkpoints

    dumps = []
    monkeypatch.setattr(
        mbpo_pl.buffer_checkpoints, "dump_buffer", lambda *a, **k: dumps.append(a[0]) or dump_buffer(*a, **k)
    )
    dm = _filled_memmap_datamodule(tmp_path / "buffers")
    oldest = dm.state_dict()
    for start in (100, 110):
        dm.add_real(_transitions(10, reward_value=2.0, start=start))
        first, second = dm.state_dict(), dm.state_dict()  # e.g. epoch=N.ckpt and last.ckpt of one moment
        assert first["real"]["token"] == second["real"]["token"]
    assert dumps == ["real", "model"] * 3  # the second save of a moment refers to the first one's files
    saves = sorted(p.name for p in (tmp_path / "buffers" / "rank0" / "checkpoint" / "real").iterdir())
    assert saves == sorted([first["real"]["token"], "110-300-500"])
    with pytest.raises(ValueError, match="only the latest two"):
        _memmap_datamodule(tmp_path / "buffers").load_state_dict(oldest)


def test_memmap_save_of_the_older_flat_layout_loads_and_is_removed_two_saves_later(tmp_path):
    dm = _filled_memmap_datamodule(tmp_path / "buffers")
    root = tmp_path / "flat"
    dm.real_buffer.dumps(root)  # how older versions saved: straight into the buffer's checkpoint folder
    (root / "checkpoint_token").write_text("100-0")
    flat = {"dumped": "real", "token": "100-0", "capacity": 1000, "rng": torch.Generator().get_state()}
    buffer, _ = load_dumped_buffer(flat, root, torch.device("cpu"), tmp_path / "live")
    torch.testing.assert_close(buffer.storage[torch.arange(100)]["observation"], dm.real_transitions()["observation"])
    generator = torch.Generator()
    dump_buffer("real", dm.real_buffer, generator, root, "100-300-500", keep="100-0")
    assert len(load_dumped_buffer(flat, root, torch.device("cpu"), tmp_path / "live2")[0]) == 100  # still there
    dump_buffer("real", dm.real_buffer, generator, root, "101-300-500", keep="100-300-500")
    assert sorted(p.name for p in root.iterdir()) == ["100-300-500", "101-300-500"]
    with pytest.raises(ValueError, match="only the latest two"):
        load_dumped_buffer(flat, root, torch.device("cpu"), tmp_path / "live3")


@pytest.mark.parametrize("filled", [10, 6, 4])
def test_memory_checkpoint_of_a_buffer_restores_its_rows_and_copies_only_a_less_than_half_full_one(filled, tmp_path):
    buffer, generator = make_replay_buffer(10, torch.device("cpu"), seed=3)
    for count in (4, 10) if filled == 10 else (filled,):  # full: wrapped around, the writer mid-way
        buffer.extend(make_transitions(torch.randn(count, 3), torch.rand(count, 2), torch.randn(count),
                                       torch.randn(count, 3), torch.zeros(count), torch.zeros(count)))  # fmt: skip
    state = buffer_state(buffer, generator)
    observation = state["data"]["observation"]
    live = buffer.storage[0:filled]["observation"]
    assert torch.equal(observation, live)
    shares = observation.untyped_storage().data_ptr() == live.untyped_storage().data_ptr()
    assert shares == (filled >= 5)  # at least half full: views of the storage, no copy
    torch.save(state, tmp_path / "buffer.pt")
    loaded = torch.load(tmp_path / "buffer.pt", weights_only=False)
    restored, _ = restore_buffer(loaded, torch.device("cpu"))
    assert len(restored) == filled
    assert torch.equal(restored.storage[0:filled]["observation"], live)
    assert restored.writer.state_dict() == buffer.writer.state_dict()
