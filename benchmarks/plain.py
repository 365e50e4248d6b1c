"""The plain formulations the fast path is compared with (same maths, none of the speed-ups)."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.losses import alpha_loss, polyak_update, soft_q_target
from mbpo_pl.manual_optimization import optimizer_step, own_optimizers
from mbpo_pl.sac import SACModule


class PlainDynamics(DynamicsModule):
    """L2 term computed in the loss every step, unfused Adam."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.model.parameters(), lr=self.lr)]

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total, nll = super().loss(inputs, targets)
        l2 = sum(c * layer.weight.square().sum() / 2 for c, layer in zip(self.weight_decay, self.model.layers))
        return total + l2, nll


class PlainSAC(SACModule):
    """Three unfused Adam optimizers stepped one after the other."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.critic.parameters(), lr=self.lr),
            torch.optim.Adam(self.actor.parameters(), lr=self.lr),
            torch.optim.Adam([self.log_alpha], lr=self.lr),
        ]

    def update(self, batch: TensorDict, through_lightning: bool = True) -> dict[str, torch.Tensor]:
        critic_opt, actor_opt, alpha_opt = own_optimizers(self)
        obs, action, next_obs = batch["observation"], batch["action"], batch["next", "observation"]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs)
            next_q = self.critic_target(next_obs, next_action)
            reward, terminated = batch["next", "reward"].squeeze(-1), batch["next", "terminated"].squeeze(-1)
            target_q = soft_q_target(reward, terminated, next_q, next_log_prob, alpha, self.gamma)
        critic_loss = 0.5 * (self.critic(obs, action) - target_q).square().mean(dim=1).sum()
        optimizer_step(self, critic_opt, critic_loss, through_lightning)
        new_action, log_prob = self.actor(obs)
        self.critic.requires_grad_(False)
        actor_loss = (alpha * log_prob - self.critic(obs, new_action).min(dim=0).values).mean()
        self.critic.requires_grad_(True)
        optimizer_step(self, actor_opt, actor_loss, through_lightning)
        optimizer_step(self, alpha_opt, alpha_loss(self.log_alpha, log_prob, self.target_entropy), through_lightning)
        polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.tau)
        return {"critic_loss": critic_loss.detach()}


@torch.no_grad()
def all_members_rollout_step(model, actor, elites, done, obs: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """One rollout step in the plain formulation: every member on every state, then pick each state's elite."""
    n = obs.shape[0]
    mean, logvar = model(torch.cat([obs, actor.act(obs)], -1).expand(model.ensemble_size, -1, -1))
    choice = elites[torch.randint(elites.numel(), (n,), device=obs.device)]
    rows = torch.arange(n, device=obs.device)
    picked = mean[choice, rows] + torch.randn_like(mean[0]) * (0.5 * logvar[choice, rows]).exp()
    return done(obs + picked[:, 1:])
