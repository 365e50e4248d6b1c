import os
import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*Box (low|high)'s precision lowered.*")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_flush_denormal(False)  # IEEE denormals unless a test's CLI call turns flushing on (its default)
    torch.set_num_threads(int(os.environ.get("MBPO_TEST_THREADS", "2")))
    yield


@pytest.fixture
def logdir(tmp_path, monkeypatch):
    monkeypatch.setenv("MBPO_TEST_LOGDIR", str(tmp_path))
    return tmp_path
