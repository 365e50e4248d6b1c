"""``SACModule``: soft actor-critic with twin critics, Polyak targets and automatic entropy tuning."""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
from lightning.pytorch import LightningModule
from tensordict import TensorDict
from torch import Tensor, nn

from mbpo_pl.cuda_graphs import CudaGraphStep, step_switches
from mbpo_pl.losses import alpha_loss, polyak_update, soft_q_target
from mbpo_pl.manual_optimization import clear_grads, optimizer_step, own_optimizers
from mbpo_pl.nets.sac import TanhGaussianActor, TwinQCritic


class SACModule(LightningModule):
    """SAC on ``[-1, 1]`` actions, trained by manual optimization.

    Critics, actor and temperature are updated simultaneously from the same parameters, as in the official MBPO
    code (softlearning runs the three update ops together): their three losses touch disjoint parameters (the
    actor's critic pass uses detached critic weights, the temperature loss a detached log-prob, the actor loss a
    detached alpha), so one backward of their sum and one Adam step give exactly the three separate gradient steps,
    with one backward, one optimizer step and, under DDP, one all-reduce per update.

    Args:
        obs_dim: observation size (linked from the env).
        act_dim: action size (linked from the env).
        hidden_size: units of the two hidden layers of actor and critics.
        num_hidden_layers: hidden layers of actor and critics.
        lr: Adam learning rate of actor, critics and temperature.
        gamma: discount.
        tau: Polyak coefficient of the target critics (updated after every SAC update).
        target_entropy: entropy target of the temperature; ``None`` means ``-act_dim``.
        init_alpha: initial temperature.
        fused_optimizer: use PyTorch's fused Adam kernels (same update, fewer kernel launches).
        cuda_graphs: run the ``G`` updates of each env step as one replayed CUDA graph: the same kernels, launched
            once instead of one by one, which is what bounds small-network updates on a GPU. ``None`` (default):
            on when training on one CUDA device without a gradient scaler (32-true or bf16-mixed), off otherwise;
            ``true`` where that is not the case is an error. Lightning's backward/optimizer-step hooks then run
            only while the graph is captured (the first two env steps), and ``trainer.global_step`` does not count
            the replayed optimizer steps.
        lightning_hooks_every_step: run each of the ``G`` updates of an env step through Lightning's
            ``manual_backward`` and optimizer ``step``, so that callbacks' ``on_before_backward``,
            ``on_after_backward`` and ``on_before_optimizer_step`` hooks and ``trainer.global_step`` see every update.
            ``false`` (default): only the first update of each env step does; the other ``G - 1`` run the same
            backward and Adam step directly, without Lightning's per-step hook dispatch (measured in
            docs/speed.md). Only where Lightning's path adds nothing but the
            hooks (one device; 32-true or bf16-mixed, no gradient scaler); any other run takes Lightning's path for
            every update.
        population: ``S`` independent agents in one module: every network weight and the temperature get a leading
            seed dimension, batches are ``[S, B]``, the statistics ``[S]``; one optimizer step updates every seed,
            each as it would alone (Adam is elementwise). ``None`` (default): one agent. The MBPO training loop
            runs one agent per process and refuses a population.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_size: int = 256,
        num_hidden_layers: int = 2,
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 5e-3,
        target_entropy: float | None = None,
        init_alpha: float = 1.0,
        fused_optimizer: bool = True,
        cuda_graphs: bool | None = None,
        lightning_hooks_every_step: bool = False,
        population: int | None = None,
    ) -> None:
        super().__init__()
        if population is not None and population < 1:
            raise ValueError(f"population={population} must be >= 1 (or None for a single agent)")
        self.automatic_optimization = False
        self.population = population
        seeds = () if population is None else (population,)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.lr, self.gamma, self.tau = lr, gamma, tau
        self.fused_optimizer = fused_optimizer
        self.cuda_graphs = cuda_graphs
        self.lightning_hooks_every_step = lightning_hooks_every_step
        # Whether updates after the first of a call may skip Lightning: resolved from the run with the optimizer.
        self.direct_steps = False
        self.optimizer_cache: tuple | None = None  # (trainer, this module's optimizers): see own_optimizers
        # A population's policy noise: one generator per seed, so a seed's draws never depend on another's (set by
        # the caller); None: the global stream.
        self.generators: list[torch.Generator] | None = None
        self.target_entropy = float(-act_dim if target_entropy is None else target_entropy)
        self.actor = TanhGaussianActor(obs_dim, act_dim, hidden_size, num_hidden_layers, seeds)
        self.critic = TwinQCritic(obs_dim, act_dim, hidden_size, num_hidden_layers, seeds)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.full(seeds, math.log(init_alpha)))  # one temperature per seed
        # Enabled from the run by configure_optimizers (`cuda_graphs` None: where graphs can run).
        self.graphed_step = CudaGraphStep(
            self._update_many, bool(cuda_graphs), before_capture=partial(clear_grads, self)
        )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self.graphed_step.enabled, self.direct_steps = step_switches(
            self._trainer, self.cuda_graphs, self.lightning_hooks_every_step, "model.sac.cuda_graphs"
        )
        params = [*self.critic.parameters(), *self.actor.parameters(), self.log_alpha]
        return [torch.optim.Adam(params, lr=self.lr, fused=self.fused_optimizer, capturable=self.graphed_step.enabled)]

    def update_many(self, batches: TensorDict) -> dict[str, Tensor]:
        """``G`` consecutive updates, one per minibatch of ``batches [G, B]``; returns each statistic of
        :meth:`update` summed over the ``G`` updates (a CUDA graph's own tensors with ``cuda_graphs``: read them
        before the next call)."""
        return self.graphed_step(batches)

    def _update_many(self, batches: TensorDict) -> dict[str, Tensor]:
        stats = [
            self.update(minibatch, through_lightning=i == 0 or not self.direct_steps)
            for i, minibatch in enumerate(batches.unbind(0))
        ]
        return {key: torch.stack([s[key] for s in stats]).sum(0) for key in stats[0]}

    def update(self, batch: TensorDict, through_lightning: bool = True) -> dict[str, Tensor]:
        """One SAC update on a ``[B]`` transition batch; returns detached scalar statistics (no host sync).

        ``through_lightning=False``: backward and optimizer step without Lightning's hooks (see
        ``lightning_hooks_every_step``; only where
        :func:`~mbpo_pl.manual_optimization.lightning_step_is_plain` holds)."""
        (optimizer,) = own_optimizers(self)
        obs, action = batch["observation"], batch["action"]
        reward = batch["next", "reward"].squeeze(-1)
        terminated = batch["next", "terminated"].squeeze(-1)
        next_obs = batch["next", "observation"]
        alpha = self.log_alpha.exp().detach().unsqueeze(-1)  # [..., 1]: one temperature per leading index

        # Critic: regress both Q heads onto the soft target from the target critics.
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs, self.generators)
            target_q = soft_q_target(
                reward, terminated, self.critic_target(next_obs, next_action), next_log_prob, alpha, self.gamma
            )
        q = self.critic(obs, action)
        critic_loss = 0.5 * (q - target_q.unsqueeze(-2)).square().mean(dim=-1).sum(dim=-1)
        # Actor: maximise min-Q minus the entropy cost, through frozen (detached) critic weights.
        new_action, log_prob = self.actor(obs, self.generators)
        actor_loss = (alpha * log_prob - self.critic(obs, new_action, frozen=True).min(dim=-2).values).mean(-1)
        # Temperature.
        temperature_loss = alpha_loss(self.log_alpha, log_prob, self.target_entropy)
        # One step for every seed: the seeds' parameters are disjoint, so the sum's gradient is each seed's own.
        optimizer_step(self, optimizer, (critic_loss + actor_loss + temperature_loss).sum(), through_lightning)

        polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.tau)
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha_loss": temperature_loss.detach(),
            "alpha": alpha.squeeze(-1),
            "entropy": -log_prob.detach().mean(-1),
            "q": q.detach().mean(dim=(-2, -1)),
        }
