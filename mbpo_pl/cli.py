"""``python -m mbpo_pl fit --config conf/hopper.yaml``: LightningCLI with the MBPO loop and evaluation as their own
config sections (``--loop.*``, ``--eval.*``), one folder per run and readable errors.

Run folders: TensorBoard logs in ``<save_dir>/<env id>/version_N/``, that run's checkpoints in its
``checkpoints/`` subfolder (Lightning's default beside the logs), so no run writes into another's files.
``--ckpt_path last`` resumes the newest run of the configured env, ``--ckpt_path RUN_DIR`` a given run, and
``--ckpt_path FILE`` a given checkpoint; a checkpoint inside a run folder continues logging into that same folder.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace, set_parsing_settings
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks.env_loop import MBPOLoop
from callbacks.evaluation import Evaluation
from callbacks.model_diagnostics import ModelDiagnostics
from callbacks.progress import MBPOProgressBar
from callbacks.sigterm_checkpoint import SIGTERM_EXIT_STATUS, SigtermCheckpoint
from mbpo_pl.checkpoint_eval import evaluate_checkpoint
from mbpo_pl.checkpoint_io import StreamingCheckpointIO
from mbpo_pl.data import MBPODataModule
from mbpo_pl.errors import ConfigError, exit_with_error
from mbpo_pl.population import check_population_config, spans_processes
from mbpo_pl.provenance import precision_change, record_start, recorded_starts
from mbpo_pl.run_folders import population_seed_folder, resolve_checkpoint, run_loggers
from mbpo_pl.seed_split import SeedSplitStrategy
from mbpo_pl.system import MBPO

DESCRIPTION = """MBPO (Janner et al. 2019) with PyTorch Lightning: `python -m mbpo_pl fit --config conf/hopper.yaml`
trains, `--ckpt_path last` resumes; `python -m mbpo_pl test --config CONF --ckpt_path last` evaluates a
checkpoint's policy on fresh episodes (`--eval.num_episodes`, `--eval.video_path out.mp4`). Tools for runs (each
with --help): `python -m mbpo_pl report RUN` (evaluation curve, health, wall time), `plot RUN... -o curve.png`,
`diagnose RUN_OR_CKPT` (how far the model can be trusted), `results export|table|plot` (committed curves and the
README's table), `export RUN_OR_CKPT -o policy.pt2` (the policy as a file that runs with PyTorch alone)."""


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
    """Saves ``config.yaml`` beside the logs (as LightningCLI does), logs the resolved config once, as
    hyperparameters, to every logger (TensorBoard, W&B, ...), and appends each start of the run (code commit,
    machine, env step, checkpoint resumed from) to ``provenance.yaml`` in the run folder, on rank 0."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if trainer.is_global_zero and log_dir is not None and trainer.loggers:
            folders = [Path(log_dir)]
            if pl_module.seeds is not None:  # each seed's folder is a complete run folder of its own (all seeds')
                folders += pl_module.seed_loggers.folders
                self._save_seed_configs(pl_module)
            change = precision_change(recorded_starts(folders[0]), str(trainer.precision))
            if trainer.ckpt_path is not None and change is not None:
                rank_zero_warn(change)
            for folder in folders:
                record_start(folder, pl_module.run.env_steps, trainer.ckpt_path, str(trainer.precision),
                             str(trainer.strategy.root_device), trainer.world_size)  # fmt: skip

    def _save_seed_configs(self, pl_module: LightningModule) -> None:
        """Seed ``s``'s ``config.yaml`` is the population's with ``seed_everything: s`` and no ``seeds``: the config
        of the one-agent run it trains as; also logged as each seed's hyperparameters."""
        for index, (seed, folder) in enumerate(zip(pl_module.population_seeds, pl_module.seed_loggers.folders)):
            config = self.config.clone()
            config.seed_everything, config.seeds = seed, None
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(config, folder / "config.yaml", skip_none=False, overwrite=True, multifile=False)
            hparams = flatten(json.loads(self.parser.dump(config, skip_none=False, format="json")))
            for logger in pl_module.seed_loggers.loggers[index]:
                logger.log_hyperparams({k: v for k, v in hparams.items() if v is not None})

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
        parser.add_argument(
            "--flush_denormal",
            type=bool,
            default=True,
            help="compute float32 numbers below 1.2e-38 (denormals) as zero on the CPU (torch.set_flush_denormal, "
            "x86 CPUs). Late in a run the Adam moments of gradients that have become zero decay through that range, "
            "which x86 CPUs compute many times slower: without it a Walker2d SAC update, timed on its run's checkpoint "
            "at 48k env steps, took 1.3x as long (docs/speed.md). false: IEEE denormals, as runs made before this "
            "option.",
        )
        parser.add_argument(
            "--seeds",
            type=list[int] | None,
            default=None,
            help="train one independent agent per seed in this one process, e.g. --seeds [0,1,2,3]: each with its "
            "own env, buffers, networks, optimizer state and random streams, seeded as a one-agent run of that seed; "
            "logs of seed s in <run>/seed_s/ (None: one agent, seeded by seed_everything). With --trainer.devices N, "
            "each of the N processes trains its block of len(seeds)/N of them, sharing nothing.",
        )
        # Evaluation and diagnostics before the loop in the callback list: their epoch-end hooks then run before the
        # loop takes the epoch's time figures, so `time/diagnostics_s` lands in the epoch it measured (in any order,
        # no time goes uncounted: mbpo_pl.clock).
        parser.add_lightning_class_args(Evaluation, "eval")
        parser.add_lightning_class_args(ModelDiagnostics, "diagnostics")
        parser.add_lightning_class_args(MBPOLoop, "loop")
        # The run length is loop.total_env_steps alone: the Trainer runs until the loop stops it.
        parser.set_defaults({"trainer.max_epochs": -1, "trainer.num_sanity_val_steps": 0,
                             "trainer.enable_model_summary": False})  # fmt: skip
        # Observation/action sizes come from the env, never from the user.
        for child in ("dynamics", "sac"):
            parser.link_arguments("data.obs_dim", f"model.{child}.init_args.obs_dim", apply_on="instantiate")
            parser.link_arguments("data.act_dim", f"model.{child}.init_args.act_dim", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Adds the MBPO progress bar (the whole run's env steps, ETA, last eval return, env steps/s) unless the
        config disables the bar or brings its own, :class:`~callbacks.SigtermCheckpoint` (a SIGTERM saves the run's
        state where training stopped), and :class:`~mbpo_pl.checkpoint_io.StreamingCheckpointIO` unless
        the config brings a ``CheckpointIO``."""
        config = self.config_init.get(self.subcommand, self.config_init) if self.subcommand else self.config_init
        trainer_config = config.get("trainer", {})
        callbacks = list(kwargs.get("callbacks", trainer_config.get("callbacks") or []))
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            callbacks = [MBPOProgressBar(), *callbacks]
        if not any(isinstance(c, SigtermCheckpoint) for c in callbacks):
            callbacks = [*callbacks, SigtermCheckpoint()]  # a SIGTERM saves the state where training stopped
        kwargs["callbacks"] = callbacks
        if config.get("seeds") is not None and spans_processes(trainer_config):
            kwargs["strategy"] = SeedSplitStrategy()  # each process trains its block of the seeds, sharing nothing
        plugins = kwargs.get("plugins", trainer_config.get("plugins"))
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        strategy = kwargs.get("strategy", trainer_config.get("strategy"))
        if not any(isinstance(p, CheckpointIO) for p in plugins) and getattr(strategy, "_checkpoint_io", None) is None:
            kwargs["plugins"] = [*plugins, StreamingCheckpointIO()]  # checkpoints written without a copy in memory
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Resolve and check ``--ckpt_path`` before anything loads it (Lightning's own version reads the whole file
        for hyperparameters, which ``MBPO`` does not save); refuse the subcommands MBPO gives no meaning to."""
        subcommand = self.config.get("subcommand")
        if subcommand in ("validate", "predict"):
            raise ConfigError(
                f"`{subcommand}` has no meaning for an MBPO run: `python -m mbpo_pl test --config CONF --ckpt_path "
                "RUN_OR_CKPT` evaluates a checkpoint's policy, `python -m mbpo_pl diagnose RUN_OR_CKPT` its model."
            )
        if not subcommand:
            return
        config = self.config[subcommand]
        if subcommand == "test" and not config.get("ckpt_path"):
            raise ConfigError("test evaluates a trained policy: give --ckpt_path last (the newest run of the "
                              "configured env), a run folder or a checkpoint file.")  # fmt: skip
        if config.get("ckpt_path"):
            self._resolve_checkpoint(config, resuming=subcommand == "fit")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        threads = config.get("torch_threads")
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"--torch_threads={threads} must be >= 1")
            torch.set_num_threads(threads)
        # Before any parallel op: OpenMP's worker threads take this thread's floating-point mode when created.
        if not torch.set_flush_denormal(bool(config.get("flush_denormal", True))) and config.get("flush_denormal"):
            rank_zero_warn("--flush_denormal: this CPU cannot flush denormal numbers to zero; computing with them.")
        trainer = config.get("trainer", Namespace())
        if config.get("seeds") is not None:
            check_population_config(config)
        for key in ("max_epochs", "max_steps"):
            if trainer.get(key) not in (None, -1):
                raise ConfigError(
                    f"trainer.{key}={trainer.get(key)}: an MBPO run's length is set by loop.total_env_steps "
                    f"(e.g. --loop.total_env_steps 50000); leave trainer.{key} unset."
                )

    def instantiate_classes(self) -> None:
        """As LightningCLI's; with ``--seeds``, the model is the population's (:mod:`mbpo_pl.population`), each seed
        initialised as the one-agent run of that seed (over several processes: this process's block of the seeds,
        :mod:`mbpo_pl.seed_split`)."""
        super().instantiate_classes()
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        seeds = config.get("seeds")
        if seeds is not None:
            lone = self.model
            dims = {"obs_dim": lone.sac.obs_dim, "act_dim": lone.sac.act_dim}
            dynamics_args = {**config.model.dynamics.init_args.as_dict(), **dims}
            sac_args = {**config.model.sac.init_args.as_dict(), **dims, "cuda_graphs": False}
            sac_args.pop("population", None)  # the population's size is len(seeds)
            trainer = self.trainer
            self.model = MBPO.population_of(dynamics_args, sac_args, seeds, trainer.global_rank, trainer.world_size)

    def _resolve_checkpoint(self, config: Namespace, resuming: bool) -> None:
        """Resolve ``ckpt_path``; when resuming, a checkpoint in ``<run>/checkpoints/`` makes the run loggers write
        into ``<run>``."""
        loggers = run_loggers(config.trainer)
        runs_root = None
        if loggers:
            init = loggers[0].init_args
            runs_root = Path(init.save_dir) / (init.get("name") or "lightning_logs")
        if not resuming and population_seed_folder(Path(str(config.ckpt_path))) is not None:
            return  # `test` of one seed of a population: load_policy cuts it out of the population's checkpoint
        path = resolve_checkpoint(str(config.ckpt_path), runs_root, resuming=resuming)
        config.ckpt_path = str(path)
        if resuming and path.parent.name == "checkpoints":
            run_dir = path.parent.parent
            for logger in loggers:
                logger.init_args.save_dir = str(run_dir.parent.parent)
                logger.init_args.name = run_dir.parent.name
                logger.init_args.version = run_dir.name
        self.resumed_from = path

    def test(self, model: MBPO, datamodule: MBPODataModule, ckpt_path: str, **_: Any) -> None:
        """``test``: the checkpoint's policy on fresh episodes (:mod:`mbpo_pl.checkpoint_eval`); no Trainer loop."""
        evaluate_checkpoint(Path(ckpt_path), datamodule, self._get(self.config_init, "eval"))

    def before_fit(self) -> None:
        if self.config[self.subcommand].get("torch_threads") is None:
            share_cpu_threads(self.trainer)
        self._print_run_summary()

    def _seeds_line(self) -> str:
        seeds = self.config[self.subcommand].get("seeds")
        if seeds is None:
            return f"seed {self.config[self.subcommand].get('seed_everything')}"
        processes = self.trainer.world_size
        where = "in one process" if processes == 1 else f"in {processes} processes, {len(seeds) // processes} each"
        return (f"{len(seeds)} seeds {where}: {', '.join(map(str, seeds))} (each in <run>/seed_<s>/; model "
                "diagnostics: python -m mbpo_pl diagnose <run>/seed_<s>)")  # fmt: skip

    @rank_zero_only
    def _print_run_summary(self) -> None:
        trainer, data, loop = self.trainer, self.datamodule, self._get(self.config_init, "loop")
        lines = [
            f"{'MBPO' if loop.use_model else 'SAC (no model: loop.use_model false)'} on {data.env_id}: "
            f"{loop.total_env_steps:,} env steps ({loop.schedule.init_random_steps:,} random first), "
            + self._seeds_line(),
            f"  device      {trainer.strategy.root_device} x {trainer.world_size} process(es), "
            f"{torch.get_num_threads()} torch thread(s), precision {trainer.precision}",
        ]
        if trainer.log_dir is not None and trainer.loggers:
            lines.append(f"  logs        {trainer.log_dir}")
        if trainer.checkpoint_callback is not None:
            checkpoint_dir = trainer.checkpoint_callback.dirpath or str(Path(trainer.log_dir or ".") / "checkpoints")
            lines.append(f"  checkpoints {checkpoint_dir}")
        if getattr(self, "resumed_from", None) is not None:
            lines.append(f"  resuming    {self.resumed_from}")
        print("\n".join(lines), flush=True)


def quiet_console() -> None:
    """Only what helps on the console: no TorchRL INFO lines, no Lightning banner or tips, no deprecation noise
    from dependencies (our own summary says what runs, where)."""
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")  # sized on purpose
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # The SAC batches are drawn when needed from the checkpointed buffers, so a run resumes inside an epoch exactly
    # (callbacks.SigtermCheckpoint; tests/test_resume.py), although the DataLoader has no state of its own.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    for name in ("torchrl", "lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.WARNING)


def main(args: list[str] | None = None, run: bool = True) -> MBPOCLI:
    quiet_console()
    # Interpolations such as `${data.env_id}` resolve against the final config (files, then command line), and
    # the absolute paths written in our configs work under the `fit` subcommand.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return MBPOCLI(
        MBPO,
        MBPODataModule,
        args=args,
        run=run,
        parser_kwargs={"parser_mode": "omegaconf+", "prog": "python -m mbpo_pl", "description": DESCRIPTION},
        save_config_callback=LogConfigCallback,
        save_config_kwargs={"overwrite": True},
    )


def run_cli(args: list[str] | None = None) -> None:
    """The command line: a :class:`ConfigError` is printed as ``error: <message>`` with exit status 2; a run stopped
    by SIGTERM (:class:`~callbacks.SigtermCheckpoint` said where it saved) exits with status 143."""
    try:
        main(args)
    except ConfigError as err:
        exit_with_error(err)
    except SIGTERMException:
        raise SystemExit(SIGTERM_EXIT_STATUS) from None
