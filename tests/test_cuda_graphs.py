"""CUDA-graph replay of the SAC updates and of the ensemble training steps computes what eager execution does.

These need a CUDA GPU (they are skipped without one); the CPU side of the same code is covered by the
eager-path tests (`update_many`, `fit_ensemble`) in test_sac.py and test_ensemble.py.
"""

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from mbpo_pl.cli import main
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.sac import SACModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")
OBS, ACT = 11, 3


def _precision(bf16: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if bf16 else nullcontext()


def _batches(generator: torch.Generator, updates: int = 4, size: int = 256) -> TensorDict:
    def randn(*shape):
        return torch.randn(*shape, generator=generator, device="cuda")

    return TensorDict(
        {
            "observation": randn(updates, size, OBS),
            "action": torch.tanh(randn(updates, size, ACT)),
            "next": {"observation": randn(updates, size, OBS), "reward": randn(updates, size, 1),
                     "terminated": randn(updates, size, 1) > 2.0},
        },
        batch_size=[updates, size],
    )  # fmt: skip


@pytest.mark.parametrize("bf16", [False, True], ids=["32-true", "bf16-mixed"])
def test_sac_updates_replayed_as_a_graph_equal_eager_updates(bf16):
    torch.manual_seed(0)
    eager = SACModule(OBS, ACT, target_entropy=-1).to("cuda")
    graphed = SACModule(OBS, ACT, target_entropy=-1, cuda_graphs=True).to("cuda")
    graphed.load_state_dict(eager.state_dict())
    results = []
    for module in (eager, graphed):
        generator = torch.Generator(device="cuda").manual_seed(1)
        torch.manual_seed(2)  # the actor's sampling noise: the same stream on both paths
        sums = []
        for _ in range(5):  # warm-up, capture + replay, then plain replays
            with _precision(bf16):
                sums.append({k: v.clone() for k, v in module.update_many(_batches(generator)).items()})
        results.append((sums, module.state_dict()))
    (eager_sums, eager_state), (graph_sums, graph_state) = results
    assert graphed.graphed_step.num_graphs == 1
    for call, (want, got) in enumerate(zip(eager_sums, graph_sums)):
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=f"call {call}: {key}")
    for name, want in eager_state.items():
        torch.testing.assert_close(graph_state[name], want, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("bf16", [False, True], ids=["32-true", "bf16-mixed"])
def test_ensemble_training_replayed_as_graphs_equals_eager_training(bf16):
    generator = torch.Generator(device="cuda").manual_seed(0)
    inputs = torch.randn(3000, OBS + ACT, generator=generator, device="cuda")
    targets = torch.cat([inputs[:, :1] * 2, torch.sin(inputs[:, :OBS])], -1)
    torch.manual_seed(0)
    eager = DynamicsModule(OBS, ACT, patience=100, max_epochs_per_train=6).to("cuda")
    graphed = DynamicsModule(OBS, ACT, patience=100, max_epochs_per_train=6, cuda_graphs=True).to("cuda")
    graphed.load_state_dict(eager.state_dict())
    results = []
    for module in (eager, graphed):
        torch.manual_seed(1)  # holdout split, bootstrap and shuffles: the same on both paths
        with _precision(bf16):
            stats = [module.fit_ensemble(inputs, targets) for _ in range(2)]  # a warm-started second call too
        results.append((stats, module.state_dict()))
    (eager_stats, eager_state), (graph_stats, graph_state) = results
    # 2400 training rows: full minibatches of 256 and a last one of 96, one graph each.
    assert graphed.graphed_step.num_graphs == 2
    for want, got in zip(eager_stats, graph_stats):
        torch.testing.assert_close(got["holdout_mse"], want["holdout_mse"], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got["train_loss"], want["train_loss"], rtol=1e-4, atol=1e-5)
    for name, want in eager_state.items():
        torch.testing.assert_close(graph_state[name], want, rtol=1e-4, atol=1e-5, msg=name)


def test_fit_with_cuda_graphs_through_the_cli(logdir):
    """Graphs are on by default on one GPU (SAC here) and when asked for (dynamics here)."""
    cli = main(["fit", "--config", TINY, "--trainer.accelerator", "gpu", "--trainer.precision", "bf16-mixed",
                "--model.dynamics.cuda_graphs", "true"])  # fmt: skip
    loop = next(c for c in cli.trainer.callbacks if type(c).__name__ == "MBPOLoop")
    assert loop.env_steps >= 300
    assert cli.model.sac.graphed_step.num_graphs == 1
    assert cli.model.dynamics.graphed_step.num_graphs >= 1
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
