"""A population split over processes (``--seeds [...] --trainer.devices N``): each process's block of seeds trains
as in one process, bit for bit, and the processes' checkpoints join into one population checkpoint and back."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import torch
from tests_support import tiny_config_with_checkpoints

from mbpo_pl.cli import main
from mbpo_pl.report import load_scalars
from mbpo_pl.seed_split import merge_population_checkpoints, split_population_checkpoint


def _equal(a, b, where="checkpoint"):
    """Nested dicts/lists of tensors and plain values, equal to the last bit (asserts, naming the first difference)."""
    if isinstance(a, dict):  # dict or OrderedDict alike
        assert isinstance(b, dict), where
        assert a.keys() == b.keys(), (where, set(a) ^ set(b))
        for key in a:
            _equal(a[key], b[key], f"{where}[{key!r}]")
        return
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _scalars(folder):
    return {tag: values for tag, values in load_scalars(folder).items() if not tag.startswith("time/")}


def test_checkpoint_blocks_merge_back_into_the_population_checkpoint(tmp_path):
    config = tiny_config_with_checkpoints(tmp_path)
    main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path), "--seeds", "[4,5,6,7]",
          "--loop.total_env_steps", "200"])  # fmt: skip
    whole = torch.load(tmp_path / "InvertedPendulum-v5" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False)
    blocks = [copy.deepcopy(whole) for _ in range(2)]
    split_population_checkpoint(blocks[0], 0, 2)
    split_population_checkpoint(blocks[1], 2, 4)
    assert blocks[1]["mbpo_population"]["seeds"] == [6, 7]
    assert blocks[1]["state_dict"]["sac.log_alpha"].shape == (2,)
    assert torch.equal(blocks[1]["state_dict"]["dynamics.model.seeds.0.max_logvar"],
                       whole["state_dict"]["dynamics.model.seeds.2.max_logvar"])  # fmt: skip
    assert len(blocks[0]["optimizer_states"][1]["state"]) == len(whole["optimizer_states"][1]["state"]) // 2
    _equal(merge_population_checkpoints(blocks), whole)


def test_a_population_split_over_two_processes_trains_each_block_as_one_process_does(tmp_path):
    """Seeds [0,1,2,3] as 2 processes x 2 seeds (gloo), 200 env steps then resumed to 300, against one-process
    populations of [0,1] and of [2,3] trained to 300 at the same thread count: every seed's logged figures and every
    weight and buffer agree bit for bit, and the split run's one checkpoint is the two populations' joined. (The
    batched kernels' rounding depends on how many seeds share a call, so a block is compared with a population of
    its size.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(Path(__file__).parent / "ddp_population_fit.py")
    split = tmp_path / "split"
    run = split / "logs" / "InvertedPendulum-v5" / "version_0"
    for command in ([script, str(split), "200"], [script, str(split), "300", "--ckpt_path", str(run)]):
        result = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "4 seeds in 2 processes, 2 each" in result.stdout
    config = tiny_config_with_checkpoints(tmp_path)
    blocks = []
    for block in ("[0,1]", "[2,3]"):
        main(["fit", "--config", config, "--trainer.logger.init_args.save_dir", str(tmp_path / block), "--seeds",
              block, "--torch_threads", "1", "--loop.total_env_steps", "300"])  # fmt: skip
        blocks.append(tmp_path / block / "InvertedPendulum-v5" / "version_0")
    for seed in range(4):
        scalars = _scalars(run / f"seed_{seed}")
        assert [step for step, _ in scalars["eval/return"]] == [200, 300]
        assert scalars == _scalars(blocks[seed // 2] / f"seed_{seed}"), seed
        assert (run / f"seed_{seed}" / "config.yaml").is_file() and (run / f"seed_{seed}" / "provenance.yaml").is_file()
    means = [(step, value) for step, value in _scalars(run)["eval/return"]]
    returns = [[value for _, value in _scalars(run / f"seed_{seed}")["eval/return"]] for seed in range(4)]
    assert [value for _, value in means] == torch.tensor(returns).mean(0).tolist()  # the population's mean
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    joined = merge_population_checkpoints([torch.load(b / "checkpoints" / "last.ckpt", weights_only=False)
                                           for b in blocks])  # fmt: skip
    assert checkpoint["mbpo_population"]["seeds"] == [0, 1, 2, 3]
    for key in ("state_dict", "optimizer_states", "MBPODataModule", "mbpo_population"):
        _equal(checkpoint[key], joined[key], key)
    _equal(checkpoint["callbacks"]["MBPOLoop"]["runners"], joined["callbacks"]["MBPOLoop"]["runners"], "runners")
    resumed = main(["fit", "--config", config, "--seeds", "[0,1,2,3]", "--torch_threads", "1", "--ckpt_path", str(run),
                    "--loop.total_env_steps", "350"])  # fmt: skip  # in one process: the same checkpoint
    assert resumed.model.run.env_steps == 350 and _scalars(run / "seed_3")["train/env_steps"][-1] == (350, 350.0)

    # Both seeds of process 1 made non-finite at env step 160: they stop, process 1 goes on with nothing to train,
    # and process 0's seeds train on exactly as the one-process population of [0,1].
    poisoned = tmp_path / "poisoned"
    poison = ["--trainer.callbacks+=tests_support.PoisonSeeds", "--trainer.callbacks.at=160",
              "--trainer.callbacks.rank=1", "--trainer.callbacks.sac_seed=0",
              "--trainer.callbacks.dynamics_seed=1"]  # fmt: skip
    result = subprocess.run([sys.executable, script, str(poisoned), "300", *poison], env=env, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = poisoned / "logs" / "InvertedPendulum-v5" / "version_0"
    for seed in (0, 1):
        assert _scalars(run / f"seed_{seed}") == _scalars(blocks[0] / f"seed_{seed}"), seed
    # Seed 2 stops at its SAC statistics of the epoch to 200, seed 3 at the model training that starts the next; the
    # processes count the stops at each epoch's end.
    seed_2, seed_3 = _scalars(run / "seed_2"), _scalars(run / "seed_3")
    assert [step for step, _ in seed_2["train/env_steps"]] == [150] and "eval/return" not in seed_2
    assert [step for step, _ in seed_3["train/env_steps"]] == [150, 200]
    assert [step for step, _ in seed_3["eval/return"]] == [200]
    assert _scalars(run)["population/stopped_seeds"] == [(200, 1.0), (250, 2.0)]
    stopped = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["mbpo_population"]["stopped"]
    assert {index: record["env_steps"] for index, record in stopped.items()} == {2: 200, 3: 200}
