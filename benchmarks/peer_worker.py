"""One round of the side-by-side benchmark for one side, in that side's own interpreter (``benchmarks/peer.py`` runs
it under our venv and under mbrl-lib's, which pins an older Gymnasium): the same work on the same data, timed.

    python benchmarks/peer_worker.py {ours,ours-bf16,mbrl} DATA.npz --threads 2

Prints one JSON line: ``sac_update_ms`` (one SAC update with its minibatch sampling, from G = 20 updates per env
step), ``model_epoch_s`` (one ensemble training epoch over the data with its holdout evaluation, from two calls of
5 epochs), ``rollout_s`` (a 1-step rollout from 100,000 start states sampled from the data, into a model buffer of
4 such batches, full when the SAC updates are timed). Sizes are the paper's Hopper settings on both sides: SAC
2 x 256, batch 256, target entropy -1, Polyak every update; ensemble 7 x 4 x 200 SiLU, 20 % holdout, batch 256.
Nothing of mbrl-lib is copied: its classes are imported from its installed package.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

G, BATCH = 20, 256
EPOCHS = 5  # epochs per timed model-training call (per-epoch seconds are reported)


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    """Median seconds per call over ``repeats`` calls (after one warm-up call)."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def ours(data: dict[str, np.ndarray], bf16: bool, repeats: int, starts: int) -> dict[str, float]:
    from contextlib import nullcontext

    from lightning.pytorch.plugins.precision import MixedPrecision
    from tensordict import TensorDict

    from callbacks.model_data import refill_model_buffer
    from mbpo_pl.data import MBPODataModule
    from mbpo_pl.dynamics import DynamicsModule
    from mbpo_pl.sac import SACModule
    from mbpo_pl.schedule import MBPOSchedule
    from mbpo_pl.termination import get_termination_fn

    context = MixedPrecision("bf16-mixed", "cpu").forward_context if bf16 else nullcontext
    obs, act, next_obs = (torch.as_tensor(data[k]) for k in ("obs", "act", "next_obs"))
    reward, terminated = torch.as_tensor(data["reward"]), torch.as_tensor(data["terminated"])
    n, obs_dim, act_dim = obs.shape[0], obs.shape[1], act.shape[1]
    datamodule = MBPODataModule("Hopper-v5", updates_per_step=G, batch_size=BATCH, real_buffer_size=n)
    datamodule.setup("fit")
    # Hopper's schedule with `starts` start states: k = 1 keeps 4 rollout batches (a rollout every 250 of 1000 steps)
    datamodule.run.schedule = MBPOSchedule(5000, 250, starts, (20, 100, 1, 15), 1000, 1)
    flags = terminated.reshape(-1, 1)
    datamodule.add_real(TensorDict({
        "observation": obs, "action": act,
        "next": {"observation": next_obs, "reward": reward.reshape(-1, 1), "terminated": flags,
                 "truncated": torch.zeros_like(flags), "done": flags},
    }, batch_size=[n]))  # fmt: skip
    dynamics = DynamicsModule(obs_dim, act_dim, max_epochs_per_train=EPOCHS, patience=10**6)
    sac = SACModule(obs_dim, act_dim, target_entropy=-1)
    inputs, targets = dynamics.make_dataset(obs, act, reward, next_obs)
    termination = get_termination_fn("Hopper-v5")

    def fit() -> None:
        with context():
            dynamics.fit_ensemble(inputs, targets)

    def rollout() -> None:
        with context():
            refill_model_buffer(datamodule, dynamics, sac.actor, termination, 1)

    results = {"model_epoch_s": timed(fit, 2) / EPOCHS, "rollout_s": timed(rollout, 3)}
    for _ in range(4):  # a full model buffer, as late in a run
        rollout()

    def env_step_updates() -> None:
        with context():
            sac.update_many(datamodule.sample_sac_batches())

    results["sac_update_ms"] = 1000 * timed(env_step_updates, repeats) / G
    return results


def mbrl(data: dict[str, np.ndarray], repeats: int, starts: int) -> dict[str, float]:
    import gymnasium as gym
    import omegaconf
    from mbrl.algorithms.mbpo import rollout_model_and_populate_sac_buffer
    from mbrl.env.termination_fns import hopper
    from mbrl.models import GaussianMLP, ModelEnv, ModelTrainer, OneDTransitionRewardModel
    from mbrl.planning.sac_wrapper import SACAgent
    from mbrl.third_party.pytorch_sac_pranz24.sac import SAC
    from mbrl.util.common import get_basic_buffer_iterators
    from mbrl.util.replay_buffer import ReplayBuffer

    obs, act = data["obs"], data["act"]
    n, obs_dim, act_dim = obs.shape[0], obs.shape[1], act.shape[1]
    rng = np.random.default_rng(0)
    real = ReplayBuffer(n, (obs_dim,), (act_dim,), rng=rng)
    real.add_batch(obs, act, data["next_obs"], data["reward"], data["terminated"], np.zeros(n, dtype=bool))
    member = GaussianMLP(obs_dim + act_dim, obs_dim + 1, "cpu", num_layers=4, ensemble_size=7, hid_size=200,
                         deterministic=False, propagation_method="random_model",
                         activation_fn_cfg=omegaconf.OmegaConf.create({"_target_": "torch.nn.SiLU"}))  # fmt: skip
    model = OneDTransitionRewardModel(member, target_is_delta=True, normalize=True, learned_rewards=True,
                                      num_elites=5)  # fmt: skip
    trainer = ModelTrainer(model, optim_lr=1e-3, weight_decay=5e-5)
    train_iter, val_iter = get_basic_buffer_iterators(real, BATCH, 0.2, ensemble_size=7, shuffle_each_epoch=True)
    model.update_normalizer(real.get_all())

    def fit() -> None:
        model.update_normalizer(real.get_all())
        trainer.train(train_iter, val_iter, num_epochs=EPOCHS, patience=None, silent=True)

    results = {"model_epoch_s": timed(fit, 2) / EPOCHS}
    args = omegaconf.OmegaConf.create({
        "gamma": 0.99, "tau": 0.005, "alpha": 1.0, "policy": "Gaussian", "target_update_interval": 1,
        "automatic_entropy_tuning": True, "target_entropy": -1, "hidden_size": 256, "device": "cpu", "lr": 3e-4,
    })  # fmt: skip
    env = gym.make("Hopper-v4")
    sac = SAC(obs_dim, env.action_space, args)
    agent = SACAgent(sac)
    model_env = ModelEnv(env, model, hopper, generator=torch.Generator().manual_seed(0))
    sac_buffer = ReplayBuffer(4 * starts, (obs_dim,), (act_dim,), rng=rng)

    def rollout() -> None:
        rollout_model_and_populate_sac_buffer(model_env, real, agent, sac_buffer, True, 1, starts)

    results["rollout_s"] = timed(rollout, 3)
    for _ in range(4):
        rollout()
    updates = [0]

    def env_step_updates() -> None:
        for _ in range(G):
            sac.update_parameters(sac_buffer, BATCH, updates[0], reverse_mask=True)
            updates[0] += 1

    results["sac_update_ms"] = 1000 * timed(env_step_updates, repeats) / G
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", choices=["ours", "ours-bf16", "mbrl"])
    parser.add_argument("data", help="the .npz of transitions both sides use")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="timed env steps of G SAC updates")
    parser.add_argument("--rollout-starts", type=int, default=100_000, help="start states per rollout (paper: 100k)")
    args = parser.parse_args()
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = dict(np.load(args.data))
    if args.side == "mbrl":
        results = mbrl(data, args.repeats, args.rollout_starts)
    else:
        results = ours(data, args.side == "ours-bf16", args.repeats, args.rollout_starts)
    print(json.dumps({"side": args.side, "threads": torch.get_num_threads(), "torch": torch.__version__, **results}))


if __name__ == "__main__":
    main()
