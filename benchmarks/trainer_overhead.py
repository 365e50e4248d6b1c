"""What running the SAC updates through Lightning's Trainer costs over calling them directly."""

from __future__ import annotations

import time

import numpy as np
import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.sac import SACModule
from mbpo_pl.system import MBPO
from timing import ACT, BATCH, OBS, Bench, G


class _Batches(IterableDataset):
    def __init__(self, batch: TensorDict, steps: int) -> None:
        self.steps, self.batch = steps, batch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch


class _Data(LightningDataModule):
    def __init__(self, batch: TensorDict, steps: int) -> None:
        super().__init__()
        self.batch, self.steps = batch, steps

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Batches(self.batch, self.steps), batch_size=None, collate_fn=lambda b: b)


class _Interleaved(Callback):
    """Times each Trainer step and, after it, one raw ``update_many`` (see :func:`bench_trainer_overhead`)."""

    def __init__(self, bench: Bench, raw: SACModule, batch: TensorDict, warmup: int) -> None:
        self.bench, self.raw_module, self.batch, self.warmup = bench, raw, batch, warmup
        self.raw: list[float] = []
        self.trainer: list[float] = []
        self._resumed = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.bench.sync()
        ended = time.perf_counter()
        if batch_idx >= self.warmup:
            self.trainer.append(ended - self._resumed)
        with trainer.precision_plugin.train_step_context():  # the context Lightning runs training_step in
            start = time.perf_counter()
            self.raw_module.update_many(self.batch)
            self.bench.sync()
            self._resumed = time.perf_counter()
        if batch_idx >= self.warmup:
            self.raw.append(self._resumed - start)


def bench_trainer_overhead(bench: Bench, env_steps: int) -> dict[str, float]:
    """The same G SAC updates per env step: ``Trainer.fit`` on MBPO vs a raw loop over ``SACModule.update_many``.

    Both run in one process, interleaved step by step so that drift in the machine's speed (frequency, neighbours)
    falls on both alike: after every Trainer step (one ``training_step`` of G updates, Lightning's loop, data
    loader and hooks included), a callback times one raw ``update_many`` of a second, identical module in the same
    precision context, outside Lightning. The Trainer step is the wall time from the end of one raw call to the end
    of the next Trainer step. Overhead = median Trainer step / median raw step - 1. The Trainer carries 4 more no-op
    callbacks (a real run has 4: checkpoint, evaluation, env loop, progress bar), since Lightning dispatches the
    backward/optimizer-step hooks to every callback. Measured with the default (Lightning's backward/step path for
    the first update of each env step) and with ``lightning_hooks_every_step`` (that path for all G updates).
    """
    results = {}
    batch = bench.random_batch(G * BATCH).reshape(G, BATCH)
    settings = [
        ("fp32", "32-true", False, False),
        ("bf16", "bf16-mixed", False, False),
        ("fp32_hooks_every_step", "32-true", False, True),
        ("bf16_hooks_every_step", "bf16-mixed", False, True),
    ]
    if bench.with_graphs:
        settings.append(("bf16_graph", "bf16-mixed", True, False))
    for name, precision, graphs, every_step in settings:
        torch.manual_seed(0)
        raw = SACModule(OBS, ACT, target_entropy=-1, cuda_graphs=graphs).to(bench.device)
        sac = SACModule(OBS, ACT, target_entropy=-1, cuda_graphs=graphs, lightning_hooks_every_step=every_step)
        model = MBPO(DynamicsModule(OBS, ACT), sac)
        timer = _Interleaved(bench, raw, batch, warmup=3)
        trainer = Trainer(
            max_epochs=1, accelerator=bench.device.type, devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, precision=precision,
            callbacks=[*(Callback() for _ in range(4)), timer],
        )  # fmt: skip
        trainer.fit(model, datamodule=_Data(batch, env_steps + 3))
        raw_s, trainer_s = float(np.median(timer.raw)), float(np.median(timer.trainer))
        results[f"sac_updates_per_s_raw_{name}"] = G / raw_s
        results[f"sac_updates_per_s_trainer_{name}"] = G / trainer_s
        results[f"trainer_overhead_pct_{name}"] = 100 * (trainer_s / raw_s - 1)
    return results
