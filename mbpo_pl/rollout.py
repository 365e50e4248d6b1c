"""Branched model rollouts (MBPO Alg. 2, lines 7-9); their schedule is :mod:`mbpo_pl.schedule`.

Transitions use TorchRL's key names: ``observation``, ``action``, ``("next", "observation")``,
``("next", "reward")`` ``[N, 1]``, ``("next", "terminated")`` / ``("next", "truncated")`` / ``("next", "done")``
``[N, 1]`` bool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torch import Tensor

from mbpo_pl.model_io import apply_prediction, model_input
from mbpo_pl.nets.ensemble import GaussianEnsemble
from mbpo_pl.nets.population import EnsemblePopulation
from mbpo_pl.nets.sac import TanhGaussianActor, seed_actor, standard_normal
from mbpo_pl.termination import TerminationFn


def make_transitions(
    obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: Tensor, truncated: Tensor
) -> TensorDict:
    """Pack ``[N, ...]`` tensors into a TorchRL-keyed transition TensorDict of batch size ``[N]``."""
    terminated = terminated.reshape(-1, 1).bool()
    truncated = truncated.reshape(-1, 1).bool()
    return TensorDict(
        {
            "observation": obs,
            "action": action,
            "next": {
                "observation": next_obs,
                "reward": reward.reshape(-1, 1),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[obs.shape[0]],
    )


@dataclass
class RolloutResult:
    transitions: TensorDict  # [M] transitions from all k steps (empty once they went into a buffer)
    num_transitions: int  # M, kept when ``transitions`` is emptied
    steps_alive: Tensor  # [k] number of rollouts still running at each step (scalar tensors, no host sync)
    dropped_nonfinite: Tensor  # scalar: transitions dropped because the model produced non-finite values


@torch.no_grad()
def branched_rollout(
    ensemble: GaussianEnsemble,
    actor: TanhGaussianActor,
    elites: Tensor,
    termination_fn: TerminationFn,
    start_obs: Tensor,
    length: int,
    generator: torch.Generator | None = None,
) -> RolloutResult:
    """Roll ``length`` steps from ``start_obs`` ``[N, O]`` through the model with the current stochastic policy;
    every random draw (elite assignment, model and policy noise) from ``generator`` (default: the global stream).

    Each sample at each step goes through one random elite (a fresh random permutation split evenly across the
    elites, so every sample's member is uniform over ``elites`` and the batch runs as one ``[n_elites, N/n_elites]``
    batched matmul through only its chosen members). Next state and reward are *sampled* from that member's
    Gaussian; a rollout stops after its first terminal transition (which is still stored).
    """
    if length < 1 or start_obs.shape[0] == 0:
        raise ValueError(f"a rollout needs length >= 1 and at least one start state (got {length}, {start_obs.shape})")
    num_elites = elites.numel()
    obs = start_obs
    chunks: list[TensorDict] = []
    steps_alive = []
    dropped = torch.zeros((), dtype=torch.long, device=start_obs.device)
    for _ in range(length):
        n = obs.shape[0]
        if n == 0:
            break
        steps_alive.append(torch.tensor(n, device=obs.device))
        action = actor.act(obs, generators=generator)
        inputs = model_input(obs, action)
        per_member = -(-n // num_elites)  # ceil
        perm = torch.randperm(n, device=obs.device, generator=generator)
        # Pad to num_elites * per_member rows by cycling through perm (n may be smaller than the padding itself);
        # padded rows are discarded below.
        padded = perm[torch.arange(per_member * num_elites, device=obs.device) % n]
        grouped = inputs[padded].reshape(num_elites, per_member, -1)
        mean, logvar = ensemble.forward_members(grouped, elites)
        sample = mean + standard_normal(mean, generator) * (0.5 * logvar).exp()
        sample = sample.reshape(num_elites * per_member, -1)[:n]
        prediction = torch.empty_like(sample)
        prediction[perm] = sample  # undo the permutation: row i is sample i's prediction
        reward, next_obs = apply_prediction(obs, prediction)
        finite = torch.isfinite(next_obs).all(-1) & torch.isfinite(reward)
        dropped += (~finite).sum()
        terminated = termination_fn(next_obs)
        obs_f, action_f, reward_f, next_f, term_f = (t[finite] for t in (obs, action, reward, next_obs, terminated))
        chunks.append(make_transitions(obs_f, action_f, reward_f, next_f, term_f, torch.zeros_like(term_f)))
        obs = next_f[~term_f]
    transitions = torch.cat(chunks)
    return RolloutResult(
        transitions=transitions,
        num_transitions=transitions.shape[0],
        steps_alive=torch.stack(steps_alive),
        dropped_nonfinite=dropped,
    )


def population_rollouts(
    ensembles: EnsemblePopulation, actor: TanhGaussianActor, elites: Tensor, termination_fn: TerminationFn,
    start_obs: Tensor, length: int, generators: list[torch.Generator], seeds: list[int] | None = None,
) -> list[RolloutResult]:  # fmt: skip
    """The :func:`branched_rollout` of seed ``seeds[i]`` (default: every seed) from its ``start_obs[i] [N, O]``,
    through its own ensemble, elites (``elites [S, K]``) and policy (``actor`` with a leading seed dimension),
    drawing from ``generators[seeds[i]]``: each seed's rollouts exactly as if the other seeds were not there."""
    seeds = list(range(len(ensembles.seeds))) if seeds is None else seeds
    return [
        branched_rollout(
            ensembles.seeds[s], seed_actor(actor, s), elites[s], termination_fn, start_obs[i], length, generators[s]
        )  # fmt: skip
        for i, s in enumerate(seeds)
    ]
