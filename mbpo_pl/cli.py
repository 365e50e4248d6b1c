"""``python -m mbpo_pl fit --config conf/hopper.yaml``: LightningCLI with omegaconf interpolation."""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch.cli import LightningCLI

from mbpo_pl.data import MBPODataModule
from mbpo_pl.system import MBPO


class MBPOCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        parser.add_argument(
            "--torch_threads",
            type=int | None,
            default=None,
            help="torch intra-op threads per process (None: torch's default). Use 1 when other CPU-heavy "
            "processes share the cores: oversubscribed OpenMP threads spin and slow updates by ~100x.",
        )
        # Observation/action sizes come from the env, never from the user.
        for child in ("dynamics", "sac"):
            parser.link_arguments("data.obs_dim", f"model.{child}.init_args.obs_dim", apply_on="instantiate")
            parser.link_arguments("data.act_dim", f"model.{child}.init_args.act_dim", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        threads = self.config.get(self.subcommand, self.config).get("torch_threads")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"--torch_threads={threads} must be >= 1")
            torch.set_num_threads(threads)


def main(args: list[str] | None = None, run: bool = True) -> MBPOCLI:
    # Our train loader is a sized IterableDataset on purpose (no prefetch, see MBPODataModule); single-process.
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    return MBPOCLI(
        MBPO,
        MBPODataModule,
        args=args,
        run=run,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
    )
