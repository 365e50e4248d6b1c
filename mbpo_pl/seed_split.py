"""A population over several processes (``--seeds [...] --trainer.devices N``): each process trains its own block of
``S / N`` seeds, and nothing else is shared.

Seeds do not exchange gradients, so :class:`SeedSplitStrategy` is Lightning's DDP strategy (launcher, process
group, collectives) without the ``DistributedDataParallel`` wrapper, which would broadcast rank 0's weights over every
rank's own seeds. Process ``r`` is a one-process population of its seeds (``population_block``); what it logs
goes through rank 0, and its checkpoint is gathered into rank 0's file in exactly the layout a one-process
population of all ``S`` seeds writes (:func:`merge_population_checkpoints`), so the tools, a resume and a resume
with another process count read it as any population checkpoint (:func:`split_population_checkpoint` gives each
process its block back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor

from mbpo_pl.errors import ConfigError
from mbpo_pl.population import POPULATION_KEY

DYNAMICS_SEED_PREFIX = "dynamics.model.seeds."


class SeedSplitStrategy(DDPStrategy):
    """DDP's processes and collectives for a population split over them: the module is not wrapped in
    ``DistributedDataParallel`` (no parameter broadcast, no gradient all-reduce): each process's seeds are its
    own."""

    independent_ranks = True  # read by mbpo_pl.manual_optimization: no gradient averaging over processes

    def configure_ddp(self) -> None:
        pass


def population_block(seeds: Sequence[int], rank: int, processes: int) -> list[int]:
    """The seeds process ``rank`` of ``processes`` trains: the ``rank``-th of ``processes`` equal contiguous blocks;
    refuses a seed count that does not split evenly."""
    if len(seeds) % processes:
        raise ConfigError(
            f"--seeds {list(seeds)}: {len(seeds)} seeds do not split evenly over {processes} processes "
            f"(--trainer.devices x --trainer.num_nodes); give a multiple of {processes} seeds or use as many devices "
            f"as divide {len(seeds)}."
        )
    size = len(seeds) // processes
    return list(seeds[rank * size : (rank + 1) * size])


def gather_objects(trainer: Trainer | None, obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` in one process); every process must call it."""
    if trainer is None or trainer.world_size == 1 or not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_to_zero(trainer: Trainer, obj: Any) -> list[Any] | None:
    """``obj`` of every process on rank 0 (``None`` elsewhere); every process must call it."""
    if trainer.world_size == 1 or not dist.is_initialized():
        return [obj]
    gathered: list[Any] | None = [None] * trainer.world_size if trainer.is_global_zero else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def to_cpu(tree: Any) -> Any:
    """``tree`` (nested dicts, lists, tuples) with every tensor moved to the CPU (for pickling between processes)."""
    if isinstance(tree, Tensor):
        return tree.cpu()
    if isinstance(tree, Mapping):
        return {key: to_cpu(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [to_cpu(value) for value in tree]
    if isinstance(tree, tuple):
        return tuple(to_cpu(value) for value in tree)
    return tree


def _dynamics_seed(name: str) -> tuple[int, str] | None:
    """``dynamics.model.seeds.3.layers.0.weight -> (3, "layers.0.weight")``; ``None`` for other names."""
    if not name.startswith(DYNAMICS_SEED_PREFIX):
        return None
    index, rest = name[len(DYNAMICS_SEED_PREFIX) :].split(".", 1)
    return int(index), rest


def _is_seed_stacked(name: str) -> bool:
    """Whether a population state-dict entry has a leading seed dimension (SAC tensors, the elites)."""
    return name.startswith("sac.") or name == "dynamics.elites"


def _optimizer_kinds(checkpoint: Mapping[str, Any]) -> list[str]:
    """How each optimizer of an MBPO population holds its seeds: SAC's Adam over seed-stacked tensors
    (``stacked``), the ensembles' Adam over each seed's own tensors, seed-major within every group (``per_seed``)."""
    return ["stacked", "per_seed"][: len(checkpoint.get("optimizer_states", []))]


def _merge_optimizer(parts: list[dict], kind: str, seeds_per_part: int) -> dict:
    if kind == "stacked":
        merged = {"param_groups": parts[0]["param_groups"], "state": {}}
        for pid, state in parts[0]["state"].items():
            merged["state"][pid] = {
                key: torch.cat([p["state"][pid][key] for p in parts]) if _stacked(value, seeds_per_part) else value
                for key, value in state.items()
            }  # fmt: skip
        return merged
    chosen = [[(part["state"], pid) for part in parts for pid in part["param_groups"][index]["params"]]
              for index in range(len(parts[0]["param_groups"]))]  # fmt: skip
    return _renumbered(parts[0]["param_groups"], chosen)


def _split_optimizer(optimizer: dict, kind: str, lo: int, hi: int, seeds: int) -> dict:
    if kind == "stacked":
        return {
            "param_groups": optimizer["param_groups"],
            "state": {pid: {key: value[lo:hi] if _stacked(value, seeds) else value for key, value in state.items()}
                      for pid, state in optimizer["state"].items()},
        }  # fmt: skip
    chosen = []
    for group in optimizer["param_groups"]:
        per_seed = len(group["params"]) // seeds  # the group's parameters are seed-major
        chosen.append([(optimizer["state"], pid) for pid in group["params"][lo * per_seed : hi * per_seed]])
    return _renumbered(optimizer["param_groups"], chosen)


def _renumbered(groups: list[dict], chosen: list[list[tuple[dict, int]]]) -> dict:
    """An optimizer state dict with ``groups``' settings whose group ``g`` holds the parameters ``chosen[g]``
    (``(source state, id there)`` each), numbered from 0 across the groups, each with its source's state (if any)."""
    renumbered, state, next_id = [], {}, 0
    for group, members in zip(groups, chosen, strict=True):
        ids = []
        for source, pid in members:
            if pid in source:
                state[next_id] = source[pid]
            ids.append(next_id)
            next_id += 1
        renumbered.append({**group, "params": ids})
    return {"state": state, "param_groups": renumbered}


def _stacked(value: Any, seeds: int) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == seeds


def merge_population_checkpoints(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One population checkpoint of all seeds from the checkpoints of the processes' blocks (in rank order): what a
    one-process population of every seed writes. Per-seed entries (SAC tensors and their Adam moments, each seed's
    ensemble and its Adam state, buffers, envs, generators, stopped seeds) are joined in seed order; the rest
    (loops, counters, callbacks' other states) is rank 0's."""
    parts = [to_cpu(part) for part in parts]
    first, size = parts[0], len(parts[0][POPULATION_KEY]["seeds"])
    merged = dict(first)
    state_dict = {}
    for name, value in first["state_dict"].items():
        if _is_seed_stacked(name):
            state_dict[name] = torch.cat([part["state_dict"][name] for part in parts])
        elif _dynamics_seed(name) is None:
            state_dict[name] = value
    for rank, part in enumerate(parts):
        for name, value in part["state_dict"].items():
            found = _dynamics_seed(name)
            if found is not None:
                state_dict[f"{DYNAMICS_SEED_PREFIX}{rank * size + found[0]}.{found[1]}"] = value
    merged["state_dict"] = state_dict
    if "optimizer_states" in first:
        merged["optimizer_states"] = [
            _merge_optimizer([part["optimizer_states"][i] for part in parts], kind, size)
            for i, kind in enumerate(_optimizer_kinds(first))
        ]  # fmt: skip
    merged[POPULATION_KEY] = {
        "seeds": [seed for part in parts for seed in part[POPULATION_KEY]["seeds"]],
        "generators": [state for part in parts for state in part[POPULATION_KEY]["generators"]],
        "stopped": {
            rank * size + index: record
            for rank, part in enumerate(parts)
            for index, record in part[POPULATION_KEY].get("stopped", {}).items()
        },  # fmt: skip
    }
    for key, value in first.items():
        if isinstance(value, Mapping) and "population" in value:  # the DataModule's buffers
            merged[key] = {**value, "population": [own for part in parts for own in part[key]["population"]]}
    if "callbacks" in first:
        merged["callbacks"] = {
            name: {**state, "runners": [runner for part in parts for runner in part["callbacks"][name]["runners"]]}
            if isinstance(state, Mapping) and "runners" in state else state
            for name, state in first["callbacks"].items()
        }  # fmt: skip
    return merged


def split_population_checkpoint(checkpoint: dict[str, Any], lo: int, hi: int) -> None:
    """Cut a population checkpoint (in place) down to the seeds at indices ``lo:hi``: the block one process of a
    split population trains (the inverse of :func:`merge_population_checkpoints`)."""
    population = checkpoint[POPULATION_KEY]
    seeds = len(population["seeds"])
    state_dict = {}
    for name, value in checkpoint["state_dict"].items():
        found = _dynamics_seed(name)
        if found is not None:
            if lo <= found[0] < hi:
                state_dict[f"{DYNAMICS_SEED_PREFIX}{found[0] - lo}.{found[1]}"] = value
        else:
            state_dict[name] = value[lo:hi] if _is_seed_stacked(name) else value
    checkpoint["state_dict"] = state_dict
    if "optimizer_states" in checkpoint:
        checkpoint["optimizer_states"] = [
            _split_optimizer(optimizer, kind, lo, hi, seeds)
            for optimizer, kind in zip(checkpoint["optimizer_states"], _optimizer_kinds(checkpoint))
        ]  # fmt: skip
    checkpoint[POPULATION_KEY] = {
        "seeds": population["seeds"][lo:hi],
        "generators": population["generators"][lo:hi],
        "stopped": {index - lo: record for index, record in population.get("stopped", {}).items() if lo <= index < hi},
    }
    for key, value in list(checkpoint.items()):
        if isinstance(value, Mapping) and "population" in value:
            checkpoint[key] = {**value, "population": value["population"][lo:hi]}
    for name, state in checkpoint.get("callbacks", {}).items():
        if isinstance(state, Mapping) and "runners" in state:
            checkpoint["callbacks"][name] = {**state, "runners": state["runners"][lo:hi]}
