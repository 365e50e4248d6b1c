"""One round of the side-by-side benchmark for one side, in that side's own interpreter (``benchmarks/peer.py`` runs
it under our venv and under mbrl-lib's, which pins an older Gymnasium): the same work on the same data, timed.

    python benchmarks/peer_worker.py {ours,ours-bf16,mbrl} DATA.npz --threads 2

Prints one JSON line: ``sac_update_ms`` (one SAC update with its minibatch sampling, from G = 20 updates per env
step), ``model_epoch_s`` (one ensemble training epoch over the data with its holdout evaluation, from two calls of
5 epochs), ``rollout_s`` (a 1-step rollout from 100,000 start states sampled from the data, into a model buffer of
4 such batches, full when the SAC updates are timed). Sizes are the paper's Hopper settings on both sides: SAC
2 x 256, batch 256, target entropy -1, Polyak every update; ensemble 7 x 4 x 200 SiLU, 20 % holdout, batch 256.
Nothing of mbrl-lib is copied: its classes are imported from its installed package.

    python benchmarks/peer_worker.py {ours,ours-bf16,mbrl,mbrl-flush} --state STATE.pt --threads 1

times only the SAC update, starting from a run's late state (networks, Adam moments and replay data written by
``peer.py --state``; mbrl-lib's SAC gets the same weights and moments, member by member): ours with denormals
flushed to zero as our CLI trains, mbrl-lib as it trains (IEEE denormals) and, as ``mbrl-flush``, with them flushed
too.
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


def ours_late(state: dict, bf16: bool, repeats: int) -> dict[str, float]:
    """Our SAC update from ``state`` (see :func:`mbrl_late`), sampled by the DataModule as a run samples."""
    from contextlib import nullcontext

    from lightning.pytorch.plugins.precision import MixedPrecision
    from tensordict import TensorDict

    from mbpo_pl.data import MBPODataModule
    from mbpo_pl.manual_optimization import own_optimizers
    from mbpo_pl.sac import SACModule

    torch.set_flush_denormal(True)  # as the CLI trains (--flush_denormal, default true)
    context = MixedPrecision("bf16-mixed", "cpu").forward_context if bf16 else nullcontext

    def transitions(part: dict) -> TensorDict:
        flags = part["next.terminated"].reshape(-1, 1)
        return TensorDict({"observation": part["observation"], "action": part["action"],
                           "next": {"observation": part["next.observation"], "reward": part["next.reward"],
                                    "terminated": flags, "truncated": torch.zeros_like(flags), "done": flags}},
                          batch_size=[len(flags)])  # fmt: skip

    real, model = transitions(state["real"]), transitions(state["model"])
    datamodule = MBPODataModule(state["env_id"], updates_per_step=G, batch_size=BATCH, real_buffer_size=len(real))
    datamodule.setup("fit")
    datamodule.add_real(real)
    datamodule.resize_model_buffer(len(model))
    datamodule.add_model(model)
    sac = SACModule(state["obs_dim"], state["act_dim"], hidden_size=state["hidden"])
    sac.load_state_dict(state["sac"])
    own_optimizers(sac)[0].load_state_dict(state["optimizer"])

    def env_step_updates() -> None:
        with context():
            sac.update_many(datamodule.sample_sac_batches())

    return {"sac_update_ms": 1000 * timed(env_step_updates, repeats) / G}


def mbrl_sac(state: dict):  # noqa: ANN201 (mbrl-lib's SAC)
    """mbrl-lib's SAC holding ``state``'s networks and Adam moments: our twin critic's member ``m`` becomes its Q
    network ``m + 1`` (``linear1-3``, ``linear4-6``), our actor's hidden layers its policy's, our head's first and
    second halves its mean and log-std layers; the moments and step count follow their weights."""
    import gymnasium as gym
    import omegaconf
    from mbrl.third_party.pytorch_sac_pranz24.sac import SAC

    obs_dim, act_dim, ours = state["obs_dim"], state["act_dim"], state["sac"]
    moments = state["optimizer"]["state"]  # by our parameter order: critic (6), actor (6), log_alpha
    args = omegaconf.OmegaConf.create({
        "gamma": 0.99, "tau": 0.005, "alpha": 1.0, "policy": "Gaussian", "target_update_interval": 1,
        "automatic_entropy_tuning": True, "target_entropy": -act_dim, "hidden_size": state["hidden"],
        "device": "cpu", "lr": 3e-4,
    })  # fmt: skip
    space = gym.spaces.Box(-1.0, 1.0, (act_dim,), dtype=np.float32)
    sac = SAC(obs_dim, space, args)
    pairs = []  # (their parameter, our tensor, our moment index, how to cut ours)
    for network, prefix, with_moments in ((sac.critic, "critic", True), (sac.critic_target, "critic_target", False)):
        for member in range(2):
            for layer in range(3):
                linear = getattr(network, f"linear{3 * member + layer + 1}")
                weight, bias = ours[f"{prefix}.layers.{layer}.weight"], ours[f"{prefix}.layers.{layer}.bias"]
                pairs.append((linear.weight, weight, 2 * layer if with_moments else None, lambda t, m=member: t[m].T))
                pairs.append((linear.bias, bias, 2 * layer + 1 if with_moments else None, lambda t, m=member: t[m, 0]))
    policy = sac.policy
    for name, index in (("linear1", 0), ("linear2", 2)):
        for kind, offset in (("weight", 0), ("bias", 1)):
            pairs.append((getattr(getattr(policy, name), kind), ours[f"actor.net.{index}.{kind}"], 6 + index + offset,
                          lambda t: t))  # fmt: skip
    for name, half in (("mean_linear", 0), ("log_std_linear", 1)):
        for kind, offset in (("weight", 0), ("bias", 1)):
            pairs.append((getattr(getattr(policy, name), kind), ours[f"actor.net.4.{kind}"], 10 + offset,
                          lambda t, h=half: t.chunk(2, dim=0)[h]))  # fmt: skip
    pairs.append((sac.log_alpha, ours["log_alpha"], 12, lambda t: t.reshape(1)))
    optimizer_of = {id(p): opt for opt in (sac.critic_optim, sac.policy_optim, sac.alpha_optim)
                    for group in opt.param_groups for p in group["params"]}  # fmt: skip
    with torch.no_grad():
        for theirs, tensor, index, cut in pairs:
            theirs.copy_(cut(tensor))
            if index is not None:
                moment = moments[index]
                optimizer_of[id(theirs)].state[theirs] = {
                    "step": torch.as_tensor(moment["step"], dtype=torch.float32).clone(),
                    "exp_avg": cut(moment["exp_avg"]).clone().contiguous(),
                    "exp_avg_sq": cut(moment["exp_avg_sq"]).clone().contiguous(),
                }
    sac.alpha = sac.log_alpha.exp().detach()
    # The mapping, checked: Q network 1 against our critic's member 0 computed from our tensors.
    obs, action = state["model"]["observation"][:64], state["model"]["action"][:64]
    h = torch.cat([obs, action], dim=-1)
    for layer in range(3):
        h = h @ ours[f"critic.layers.{layer}.weight"][0] + ours[f"critic.layers.{layer}.bias"][0]
        h = torch.relu(h) if layer < 2 else h
    with torch.no_grad():
        q1 = sac.critic(obs, action)[0]
    if not torch.allclose(q1, h, rtol=1e-4, atol=1e-3):
        raise SystemExit(f"mbrl-lib's critic does not reproduce ours (max difference {(q1 - h).abs().max():.3g})")
    return sac


def mbrl_late(state: dict, flush: bool, repeats: int) -> dict[str, float]:
    """mbrl-lib's SAC update from ``state`` (:func:`mbrl_sac`), on batches from all of its transitions."""
    from mbrl.util.replay_buffer import ReplayBuffer

    torch.set_flush_denormal(flush)
    sac, obs_dim, act_dim = mbrl_sac(state), state["obs_dim"], state["act_dim"]
    pool = {key: torch.cat([state["real"][key], state["model"][key]]).numpy() for key in state["real"]}
    n = len(pool["observation"])
    buffer = ReplayBuffer(n, (obs_dim,), (act_dim,), rng=np.random.default_rng(0))
    buffer.add_batch(pool["observation"], pool["action"], pool["next.observation"], pool["next.reward"].reshape(-1),
                     pool["next.terminated"].reshape(-1), np.zeros(n, dtype=bool))  # fmt: skip
    updates = [0]

    def env_step_updates() -> None:
        for _ in range(G):
            sac.update_parameters(buffer, BATCH, updates[0], reverse_mask=True)
            updates[0] += 1

    return {"sac_update_ms": 1000 * timed(env_step_updates, repeats) / G}


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
    parser.add_argument("side", choices=["ours", "ours-bf16", "mbrl", "mbrl-flush"])
    parser.add_argument("data", nargs="?", help="the .npz of transitions both sides use")
    parser.add_argument("--state", default=None, help="a late run state (peer.py --state): time the SAC update only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="timed env steps of G SAC updates")
    parser.add_argument("--rollout-starts", type=int, default=100_000, help="start states per rollout (paper: 100k)")
    args = parser.parse_args()
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.state is not None:
        state = torch.load(args.state, weights_only=True)
        if args.side.startswith("mbrl"):
            results = mbrl_late(state, args.side == "mbrl-flush", args.repeats)
        else:
            results = ours_late(state, args.side == "ours-bf16", args.repeats)
    elif args.side == "mbrl":
        results = mbrl(dict(np.load(args.data)), args.repeats, args.rollout_starts)
    else:
        results = ours(dict(np.load(args.data)), args.side == "ours-bf16", args.repeats, args.rollout_starts)
    print(json.dumps({"side": args.side, "threads": torch.get_num_threads(), "torch": torch.__version__, **results}))


if __name__ == "__main__":
    main()
