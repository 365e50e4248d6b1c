"""Numerical trouble stops training with a clear message and a saved checkpoint; it never continues silently."""

from pathlib import Path

import pytest
import torch

from mbpo_pl.cli import main
from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import NonFiniteError

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def test_nonfinite_dynamics_loss_is_reported():
    module = DynamicsModule(3, 1, ensemble_size=2, num_elites=1, hidden_size=8, num_hidden_layers=1,
                            weight_decay=[0.0, 0.0])  # fmt: skip
    inputs, targets = torch.randn(100, 4), torch.randn(100, 4)
    targets[::10, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="dynamics model: non-finite training loss"):
        module.fit_ensemble(inputs, targets)


def test_nonfinite_critic_loss_stops_training_after_saving_a_checkpoint(logdir, monkeypatch):
    from mbpo_pl import losses

    original = losses.soft_q_target

    def poisoned(reward, *args, **kwargs):  # a NaN reward reaching the critic target
        return original(reward * float("nan"), *args, **kwargs)

    monkeypatch.setattr("mbpo_pl.sac.soft_q_target", poisoned)
    with pytest.raises(NonFiniteError, match="SAC: .*critic_loss.* became non-finite"):
        main(["fit", "--config", TINY])
    (saved,) = Path(logdir).rglob("nonfinite-env_steps=*.ckpt")  # in the run's own folder, beside its logs
    assert saved.parent.name == "version_0"
