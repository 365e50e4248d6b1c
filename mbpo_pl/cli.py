"""``python -m mbpo_pl fit --config conf/hopper.yaml``: LightningCLI with omegaconf interpolation."""

from __future__ import annotations

import json
import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from callbacks.progress import MBPOProgressBar
from mbpo_pl.data import MBPODataModule
from mbpo_pl.system import MBPO


def flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}, "c": [2]} -> {"a.b": 1, "c.0": 2}`` (for loggers' flat hyperparameter tables)."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    flat: dict[str, object] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class LogConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` beside the logs (as LightningCLI does) and logs the resolved config once, as
    hyperparameters, to every logger (TensorBoard, W&B, ...), on rank 0."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="json")
        hparams = {k: v for k, v in flatten(json.loads(config)).items() if v is not None}
        for logger in trainer.loggers:
            logger.log_hyperparams(hparams)


def share_cpu_threads(trainer: Trainer) -> int:
    """Split torch's default thread count among the processes of a multi-process CPU run on this node.

    Every process (DDP rank) would otherwise start one OpenMP thread per core, oversubscribing the machine; on GPU
    runs and single-process runs the default stays. Returns the threads this process now uses.
    """
    if isinstance(trainer.accelerator, CPUAccelerator) and trainer.num_devices > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // trainer.num_devices))
    return torch.get_num_threads()


class MBPOCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        parser.add_argument(
            "--torch_threads",
            type=int | None,
            default=None,
            help="torch intra-op threads per process (None: torch's default, divided among the processes of a "
            "multi-process CPU run). Use 1 when other CPU-heavy processes share the cores: oversubscribed OpenMP "
            "threads spin and slow updates by ~100x.",
        )
        # Observation/action sizes come from the env, never from the user.
        for child in ("dynamics", "sac"):
            parser.link_arguments("data.obs_dim", f"model.{child}.init_args.obs_dim", apply_on="instantiate")
            parser.link_arguments("data.act_dim", f"model.{child}.init_args.act_dim", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Adds the MBPO progress bar (env steps, last eval return, env steps/s) unless the config disables the bar
        or brings its own."""
        config = self.config_init.get(self.subcommand, self.config_init) if self.subcommand else self.config_init
        trainer_config = config.get("trainer", {})
        callbacks = list(kwargs.get("callbacks", trainer_config.get("callbacks") or []))
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            kwargs["callbacks"] = [MBPOProgressBar(), *callbacks]
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        threads = self._torch_threads()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"--torch_threads={threads} must be >= 1")
            torch.set_num_threads(threads)

    def before_fit(self) -> None:
        if self._torch_threads() is None:
            share_cpu_threads(self.trainer)

    def _torch_threads(self) -> int | None:
        return self.config.get(self.subcommand, self.config).get("torch_threads")


def main(args: list[str] | None = None, run: bool = True) -> MBPOCLI:
    # Our train loader is a sized IterableDataset on purpose (no prefetch, see MBPODataModule); single-process.
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    return MBPOCLI(
        MBPO,
        MBPODataModule,
        args=args,
        run=run,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_callback=LogConfigCallback,
        save_config_kwargs={"overwrite": True},
    )
