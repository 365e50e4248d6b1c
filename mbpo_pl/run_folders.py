"""Run folders: where a run's logs and checkpoints live, and which checkpoint ``--ckpt_path`` means.

Every run writes into ``<save_dir>/<name>/version_N/`` (TensorBoard or CSV logger; ``name`` is the env id in the
shipped configs), its checkpoints into that folder's ``checkpoints/``. ``--ckpt_path last`` is the newest run's
``last.ckpt``, ``--ckpt_path RUN_DIR`` that run's, ``--ckpt_path FILE`` the file itself; every one is checked to
exist and to be a readable checkpoint archive before training starts.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch
from jsonargparse import Namespace

from mbpo_pl.errors import ConfigError
from mbpo_pl.population import POPULATION_KEY, seed_checkpoint
from mbpo_pl.seed_loggers import seed_of

RUN_LOGGERS = ("TensorBoardLogger", "CSVLogger")  # loggers with save_dir/name/version_N run folders


def run_loggers(trainer_config: Namespace) -> list[Namespace]:
    """The configured loggers (unparsed) that write ``save_dir/name/version`` run folders."""
    loggers = trainer_config.get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    return [lg for lg in loggers if isinstance(lg, Namespace) and lg.class_path.rsplit(".", 1)[-1] in RUN_LOGGERS]


def _version_number(run_dir: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", run_dir.name)
    return int(match.group(1)) if match else -1


def newest_run_checkpoint(runs_root: Path) -> Path:
    """``last.ckpt`` of the highest-numbered ``version_N`` under ``runs_root`` (``<save_dir>/<env id>``) having one."""
    candidates = sorted(runs_root.glob("version_*/checkpoints/last.ckpt"), key=lambda p: _version_number(p.parents[1]))
    if not candidates:
        raise ConfigError(
            f"--ckpt_path last: no run under {runs_root} has a checkpoints/last.ckpt to resume. Give the run folder "
            "or the checkpoint file explicitly (--ckpt_path logs/ENV/version_N), or start a new run without "
            "--ckpt_path."
        )
    return candidates[-1]


class CheckpointNotFoundError(ConfigError, FileNotFoundError):
    """No checkpoint file where one was asked for (a :class:`ConfigError` and a ``FileNotFoundError``)."""


def resolve_checkpoint(
    ckpt_path: str, runs_root: Path | None, option: str = "--ckpt_path", resuming: bool = True
) -> Path:
    """``last`` (the newest run under ``runs_root``), a run folder (its ``checkpoints/last.ckpt``) or a file,
    checked to exist and to be a readable checkpoint archive.

    ``option`` names what the user gave the path as (``--ckpt_path``, or a tool's argument); ``resuming`` words the
    fix for ``fit`` (start a new run) rather than for the tools that read a checkpoint (give another one).
    """
    if ckpt_path == "last":
        if runs_root is None:
            raise ConfigError(f"{option} last needs a TensorBoard or CSV logger (run folders); give a file instead.")
        path = newest_run_checkpoint(runs_root)
    else:
        path = Path(ckpt_path)
        if resuming and population_seed_folder(path) is not None:
            raise ConfigError(
                f"{option}: {path} is one seed's folder of a population run; resume the whole population with "
                f"{option} {path.parent} and the same --seeds."
            )
        if path.is_dir():
            path = path / "checkpoints" / "last.ckpt" if (path / "checkpoints").is_dir() else path / "last.ckpt"
    new_run = ", or start a new run without --ckpt_path" if resuming else ""
    if not path.is_file():
        raise CheckpointNotFoundError(f"{option}: no checkpoint file at {path}. Check the path (runs keep theirs in "
                                      f"<run folder>/checkpoints/){new_run}.")  # fmt: skip
    try:
        with zipfile.ZipFile(path) as archive:  # reads the archive's directory only, not the tensors
            bad = archive.testzip() if path.stat().st_size < 2**20 else None
    except (zipfile.BadZipFile, OSError) as err:
        bad = str(err)
    if bad is not None:
        raise ConfigError(
            f"{option}: {path} is truncated or corrupt ({bad}), so it cannot be loaded. "
            + ("Resume from" if resuming else "Use")
            + f" another checkpoint of that run (the epoch=N.ckpt files beside it){new_run}."
        )
    return path


def read_checkpoint(path: Path, option: str = "checkpoint", map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint at ``path`` with its tensors memory-mapped, not read: a caller that uses only the policy's
    weights reads only those pages, however large the replay buffers stored beside them. Only tensors and plain
    containers are unpickled (``weights_only``)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{option}: {path} cannot be read as a checkpoint ({first_line}).") from err


def population_seed_folder(path: Path) -> int | None:
    """The seed of a population's seed folder (``<run>/seed_<s>``: no checkpoints of its own, the population's
    beside it), ``None`` for any other path."""
    seed = seed_of(path)
    if (
        seed is not None
        and path.is_dir()
        and not (path / "checkpoints").is_dir()
        and (path.parent / "checkpoints").is_dir()
    ):
        return seed
    return None


def read_agent_checkpoint(source: str | Path, option: str = "checkpoint") -> tuple[Path, dict]:
    """One agent's checkpoint: a run folder's ``last.ckpt``, a checkpoint file, or a population seed's folder
    (``<run>/seed_<s>``), whose agent is cut out of the population's checkpoint
    (:func:`~mbpo_pl.population.seed_checkpoint`). Returns the file and the checkpoint."""
    source = Path(str(source))
    seed = population_seed_folder(source)
    path = resolve_checkpoint(str(source.parent if seed is not None else source), None, option=option,
                              resuming=False)  # fmt: skip
    checkpoint = read_checkpoint(path, option=option)
    population = checkpoint.get(POPULATION_KEY)
    if population is None:
        return path, checkpoint
    seeds = list(population["seeds"])
    if seed is None:
        raise ConfigError(f"{option}: {path} holds a population of seeds {seeds}; give one seed's folder, e.g. "
                          f"{path.parents[1] / ('seed_' + str(seeds[0]))}.")  # fmt: skip
    if seed not in seeds:
        raise ConfigError(f"{option}: {source} names seed {seed}, but {path} holds seeds {seeds}.")
    index = seeds.index(seed)
    lone = seed_checkpoint(checkpoint, index)
    stopped = population.get("stopped", {}).get(index)
    if stopped is not None:
        print(f"{option}: seed {seed} stopped training at env step {stopped['env_steps']} ({stopped['reason']}); "
              "reading its state at the stop.")  # fmt: skip
    return path, lone
