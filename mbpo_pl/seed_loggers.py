"""``SeedLoggers``: each seed of a population logs into a run folder of its own inside the population's.

``<run>/seed_<s>/`` gets a logger of the same kind as each of the run's folder loggers (TensorBoard, CSV), so every
tool that reads a run folder (``report``, ``plot``, ``results export``) reads a seed's folder as a one-agent run's;
a logger without folders (W&B) gets the seed's metrics under ``seed_<s>/`` keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from torch import Tensor

SEED_FOLDER = "seed_{}"  # a seed's run folder inside the population's: seed_3/


def scalar_values(metrics: Mapping[str, Tensor | float | int]) -> dict[str, float]:
    """Floats for a logger: a tensor of several elements (e.g. the holdout MSE of each ensemble member) becomes one
    scalar per element, ``key/i``."""
    values = {}
    for key, value in metrics.items():
        if isinstance(value, Tensor):
            if value.numel() == 1:
                values[key] = float(value.float())
            else:
                for i, element in enumerate(value.float().flatten().tolist()):
                    values[f"{key}/{i}"] = element
        else:
            values[key] = float(value)
    return values


def seed_folder(run_dir: Path | str, seed: int) -> Path:
    return Path(run_dir) / SEED_FOLDER.format(seed)


def seed_of(folder: Path) -> int | None:
    """The seed a folder named ``seed_<s>`` is for, ``None`` for any other name."""
    match = re.fullmatch(r"seed_(\d+)", folder.name)
    return int(match.group(1)) if match else None


def seed_folders(run_dir: Path) -> list[Path]:
    """A population run's seed folders, in seed order (``[]`` for a one-agent run)."""
    return sorted((p for p in run_dir.iterdir() if p.is_dir() and seed_of(p) is not None), key=seed_of)


class SeedLoggers:
    """Per seed, a folder logger in ``run_dir/seed_<s>`` (``trainer.log_dir``, which under DDP every process must
    ask for) for each of ``trainer``'s folder loggers; the others are written with prefixes."""

    def __init__(self, trainer: Trainer, seeds: list[int], run_dir: str | None) -> None:
        self.seeds = seeds
        self.folders: list[Path] = []
        self.loggers: list[list[Logger]] = []
        self.prefixed: list[Logger] = [
            lg for lg in trainer.loggers if not isinstance(lg, (TensorBoardLogger, CSVLogger))
        ]
        for seed in seeds:
            own: list[Logger] = []
            if run_dir is not None:
                for logger in trainer.loggers:
                    version = SEED_FOLDER.format(seed)
                    if isinstance(logger, TensorBoardLogger):
                        own.append(TensorBoardLogger(run_dir, name="", version=version, default_hp_metric=False))
                    elif isinstance(logger, CSVLogger):
                        own.append(CSVLogger(run_dir, name="", version=version))
                self.folders.append(seed_folder(run_dir, seed))
            self.loggers.append(own)

    def log_one(self, index: int, values: dict[str, float], step: int) -> None:
        """``values`` to seed ``index``'s loggers."""
        for logger in self.loggers[index]:
            logger.log_metrics(values, step=step)
        prefix = SEED_FOLDER.format(self.seeds[index])
        for logger in self.prefixed:
            logger.log_metrics({f"{prefix}/{key}": value for key, value in values.items()}, step=step)

    def log_hyperparams(self, params: dict) -> None:
        for own in self.loggers:
            for logger in own:
                logger.log_hyperparams(params)

    def save(self) -> None:
        for own in self.loggers:
            for logger in own:
                logger.save()

    def finalize(self, status: str) -> None:
        for own in self.loggers:
            for logger in own:
                logger.finalize(status)
