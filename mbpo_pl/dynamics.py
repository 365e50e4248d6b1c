"""``DynamicsModule``: trains the probabilistic ensemble with holdout early stopping and picks the elites."""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from mbpo_pl.cuda_graphs import CudaGraphStep, step_switches
from mbpo_pl.errors import ConfigError, NonFiniteError
from mbpo_pl.holdout import BestMembers, split_holdout
from mbpo_pl.learned_termination import fit_termination
from mbpo_pl.manual_optimization import all_mean, clear_grads, is_distributed, optimizer_step, own_optimizers
from mbpo_pl.model_io import input_size, model_input, model_target, target_size
from mbpo_pl.nets.ensemble import GaussianEnsemble, TerminationClassifier, gaussian_nll

# Official MBPO per-layer L2 coefficients for the 4 hidden layers + output layer.
DEFAULT_WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


class DynamicsModule(LightningModule):
    """Learns ``p(r, s' - s | s, a)`` with an ensemble of Gaussian MLPs (manual optimization, one Adam).

    One call of :meth:`fit_ensemble` is one model-training period of MBPO: refit the input normalizer, split a
    holdout set, train each member on its own bootstrap resample until no member's holdout MSE improved by more
    than ``improvement_threshold`` (relative) for more than ``patience`` epochs, restore each member's best
    weights, and choose the ``num_elites`` members with the lowest holdout MSE. Weights and optimizer state are
    kept between calls (warm start).

    Args:
        obs_dim: observation size (linked from the env).
        act_dim: action size (linked from the env).
        ensemble_size: number of members.
        num_elites: members used for rollouts.
        hidden_size: units per hidden layer (200; 400 for Humanoid in the paper).
        num_hidden_layers: hidden layers per member.
        lr: Adam learning rate.
        weight_decay: L2 coefficient per layer (hidden layers then output layer) on the weights (not biases), as
            the official ``c * ||W||^2 / 2`` loss term; applied as Adam's (coupled) ``weight_decay`` of that layer's
            parameter group, which adds the same gradient ``c * W`` without computing the term every step.
        logvar_bound_weight: weight of ``sum(max_logvar) - sum(min_logvar)`` in the loss.
        batch_size: minibatch size per member.
        holdout_ratio: fraction of the real data held out for early stopping and elite selection.
        max_holdout: cap on the holdout size.
        patience: epochs without improvement tolerated before stopping (official: stop when exceeded).
        improvement_threshold: relative holdout-MSE decrease that counts as an improvement.
        max_epochs_per_train: optional cap on epochs per training call (``None``: early stopping only, as the paper).
        fused_optimizer: use PyTorch's fused Adam kernel (same update, fewer kernel launches; set ``false`` on a
            device without one).
        cuda_graphs: run each ensemble training step as a replayed CUDA graph (one per minibatch shape): the same
            kernels, launched once instead of one by one. ``None`` (default): on when training on one CUDA device
            without a gradient scaler, off otherwise (as ``model.sac.cuda_graphs``).
        lightning_hooks_every_step: run every ensemble training step through Lightning's ``manual_backward`` and
            optimizer ``step`` (callbacks' backward/optimizer-step hooks see each one). ``false`` (default): the
            first step of each training call does, the others run the same backward and Adam step directly (as
            ``model.sac.lightning_hooks_every_step``; only where Lightning's path adds nothing but the hooks).
        learn_termination: also learn ``p(terminated | next_obs)`` from the real ``terminated`` flags and use it to
            stop model rollouts, for envs with no registered termination function (a hand-written one is exact;
            prefer it where it exists).
        termination_steps: gradient steps (minibatches of ``batch_size``) per training call of the termination
            classifier (warm-started between calls).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        ensemble_size: int = 7,
        num_elites: int = 5,
        hidden_size: int = 200,
        num_hidden_layers: int = 4,
        lr: float = 1e-3,
        weight_decay: list[float] = list(DEFAULT_WEIGHT_DECAY),
        logvar_bound_weight: float = 0.01,
        batch_size: int = 256,
        holdout_ratio: float = 0.2,
        max_holdout: int = 5000,
        patience: int = 5,
        improvement_threshold: float = 0.01,
        max_epochs_per_train: int | None = None,
        fused_optimizer: bool = True,
        cuda_graphs: bool | None = None,
        lightning_hooks_every_step: bool = False,
        learn_termination: bool = False,
        termination_steps: int = 500,
    ) -> None:
        super().__init__()
        if not 1 <= num_elites <= ensemble_size:
            raise ConfigError(f"num_elites={num_elites} must be in [1, ensemble_size={ensemble_size}].")
        if len(weight_decay) != num_hidden_layers + 1:
            raise ConfigError(
                f"weight_decay needs {num_hidden_layers + 1} coefficients (one per hidden layer plus the output "
                f"layer), got {len(weight_decay)}."
            )
        if not 0.0 < holdout_ratio < 1.0:
            raise ConfigError(f"holdout_ratio={holdout_ratio} must be in (0, 1).")
        self.automatic_optimization = False
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.num_elites = num_elites
        self.lr = lr
        self.weight_decay = list(weight_decay)
        self.logvar_bound_weight = logvar_bound_weight
        self.batch_size = batch_size
        self.holdout_ratio, self.max_holdout = holdout_ratio, max_holdout
        self.patience, self.improvement_threshold = patience, improvement_threshold
        self.max_epochs_per_train = max_epochs_per_train
        self.fused_optimizer = fused_optimizer
        self.cuda_graphs = cuda_graphs
        self.lightning_hooks_every_step = lightning_hooks_every_step
        # Whether steps after the first of a call may skip Lightning: resolved from the run with the optimizers.
        self.direct_steps = False
        self.optimizer_cache: tuple | None = None  # (trainer, this module's optimizers): see own_optimizers
        self.model = GaussianEnsemble(input_size(obs_dim, act_dim), target_size(obs_dim), ensemble_size, hidden_size,
                                       num_hidden_layers)  # fmt: skip
        self.register_buffer("elites", torch.arange(num_elites))
        self.termination_steps = termination_steps
        self.termination = TerminationClassifier(obs_dim) if learn_termination else None
        # Enabled from the run by configure_optimizers (`cuda_graphs` None: where graphs can run).
        self.graphed_step = CudaGraphStep(
            self._train_step, bool(cuda_graphs), before_capture=partial(clear_grads, self)
        )

    @property
    def learn_termination(self) -> bool:
        return self.termination is not None

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self.graphed_step.enabled, self.direct_steps = step_switches(
            self._trainer, self.cuda_graphs, self.lightning_hooks_every_step, "model.dynamics.cuda_graphs"
        )
        layers = self.model.layers
        groups = [{"params": [layer.weight], "weight_decay": c} for c, layer in zip(self.weight_decay, layers)]
        decayed = {id(layer.weight) for layer in layers}
        groups.append({"params": [p for p in self.model.parameters() if id(p) not in decayed], "weight_decay": 0.0})
        capturable = self.graphed_step.enabled  # a CUDA graph replays the optimizer step too
        optimizers = [torch.optim.Adam(groups, lr=self.lr, fused=self.fused_optimizer, capturable=capturable)]
        if self.termination is not None:
            optimizers.append(torch.optim.Adam(self.termination.parameters(), lr=self.lr, fused=self.fused_optimizer))
        return optimizers

    @torch.no_grad()
    def predict_termination(self, next_obs: Tensor) -> Tensor:
        """Learned termination, ``bool [N]`` (needs ``learn_termination``); non-finite states count as terminal."""
        return (self.termination(next_obs) > 0) | ~torch.isfinite(next_obs).all(-1)

    def fit_termination(self, next_obs: Tensor, terminated: Tensor) -> dict[str, Tensor]:
        """Train the classifier on real ``next_obs [N, O]``, ``terminated [N]`` (:mod:`mbpo_pl.learned_termination`)."""
        return fit_termination(self, self.termination, own_optimizers(self)[1], next_obs, terminated,
                               self.termination_steps, self.batch_size)  # fmt: skip

    @staticmethod
    def make_dataset(obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor) -> tuple[Tensor, Tensor]:
        """``inputs [N, O + A]`` and ``targets [N, 1 + O]`` (:mod:`mbpo_pl.model_io`) of real transitions."""
        return model_input(obs, action), model_target(obs, reward, next_obs)

    def loss(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Training loss and per-member NLL ``[..., E]`` on ``inputs [..., E, B, O+A]``, ``targets [..., E, B, 1+O]``.

        The loss is ``sum_E NLL + logvar_bound_weight * logvar_bound_loss``; the L2 term is applied by the optimizer.
        """
        mean, logvar = self.model(inputs)
        nll = gaussian_nll(mean, logvar, targets)
        return nll.sum() + self.logvar_bound_weight * self.model.logvar_bound_loss(), nll

    def _train_step(self, inputs: Tensor, targets: Tensor, through_lightning: bool = True) -> dict[str, Tensor]:
        """One Adam step on a minibatch ``inputs [E, b, O+A]``, ``targets [E, b, 1+O]`` (one row set per member);
        ``through_lightning=False`` skips Lightning's hooks (see ``lightning_hooks_every_step``)."""
        total, _ = self.loss(inputs, targets)
        optimizer_step(self, own_optimizers(self)[0], total, through_lightning)
        return {"loss": total.detach()}

    @torch.no_grad()
    def holdout_mse(self, inputs: Tensor, targets: Tensor, **model_kwargs: object) -> Tensor:
        """Each member's mean-prediction MSE ``[..., E]`` on ``inputs [..., N, O+A]``, ``targets [..., N, 1+O]``
        (``model_kwargs``: passed to the model, e.g. a population's ``seeds``)."""
        inputs = inputs.unsqueeze(-3)
        mean, _ = self.model(inputs.expand(*inputs.shape[:-3], self.model.ensemble_size, *inputs.shape[-2:]),
                             **model_kwargs)  # fmt: skip
        return (mean - targets.unsqueeze(-3)).square().mean(dim=(-2, -1))

    def _member_tensors(self) -> list[Tensor]:
        """Parameters with one slice per member (snapshotted per member); the shared logvar bounds are not."""
        return [p for layer in self.model.layers for p in (layer.weight, layer.bias)]

    def fit_ensemble(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Train on ``inputs [N, O+A]``, ``targets [N, 1+O]``; returns statistics (``holdout_mse [E]`` etc.).

        The official MBPO recipe as named steps: split a holdout set, refit the input normalizer, run bootstrap
        epochs keeping each member's best weights by holdout MSE (:class:`~mbpo_pl.holdout.BestMembers`) until no
        member improves for more than ``patience`` epochs, restore the best weights and pick the elites.
        """
        self._check_equal_sizes_across_ranks(inputs)
        train_in, train_tg, holdout_in, holdout_tg = split_holdout(inputs, targets, self.holdout_ratio,
                                                                   self.max_holdout)  # fmt: skip
        self.model.normalizer.fit(train_in, average=lambda t: all_mean(self, t))
        ensemble_size, num_train = self.model.ensemble_size, train_in.shape[0]
        bootstrap = torch.randint(num_train, (ensemble_size, num_train), device=inputs.device)  # [E, N_train]
        best = BestMembers(self._member_tensors(), self.patience, self.improvement_threshold)
        epoch, steps = 0, 0
        loss_sum = torch.zeros((), device=inputs.device)
        while True:
            epoch_loss, steps = self._run_epoch(train_in, train_tg, bootstrap, steps)
            loss_sum += epoch_loss
            epoch += 1
            # Averaged over ranks (each holds out its own data), so every rank takes the same stopping decision.
            mse = all_mean(self, self.holdout_mse(holdout_in, holdout_tg))
            self._check_finite(loss_sum, mse, epoch, num_train)
            if best.update(mse) or (self.max_epochs_per_train is not None and epoch >= self.max_epochs_per_train):
                break
        best.restore()
        mse = all_mean(self, self.holdout_mse(holdout_in, holdout_tg))
        self.elites.copy_(mse.argsort(dim=-1)[..., : self.num_elites])
        return {
            "holdout_mse": mse,
            "train_loss": loss_sum / max(steps, 1),
            "epochs": torch.tensor(epoch),
            "num_train": torch.tensor(num_train),
            "num_holdout": torch.tensor(holdout_in.shape[0]),
        }

    def _check_equal_sizes_across_ranks(self, inputs: Tensor) -> None:
        if is_distributed(self):
            sizes = self.trainer.strategy.all_gather(torch.tensor(inputs.shape[0], device=inputs.device))
            if sizes.min() != sizes.max():
                raise RuntimeError(f"every rank must train on as many transitions; got {sizes.tolist()}")

    def _run_epoch(self, train_in: Tensor, train_tg: Tensor, bootstrap: Tensor, steps: int) -> tuple[Tensor, int]:
        """One pass over each member's bootstrap resample in a fresh order; returns the summed minibatch losses and
        the steps taken in this call so far (its first step goes through Lightning, see ``direct_steps``)."""
        ensemble_size, num_train = bootstrap.shape
        order = bootstrap.gather(1, torch.rand(ensemble_size, num_train, device=train_in.device).argsort(dim=1))
        # One gather per epoch ([E, N_train, D]); every minibatch is then a view of it.
        epoch_in, epoch_tg = train_in[order], train_tg[order]
        direct = self.direct_steps and not self.graphed_step.enabled  # replayed graphs skip the hooks anyway
        loss_sum = torch.zeros((), device=train_in.device)
        for start in range(0, num_train, self.batch_size):
            minibatch = epoch_in[:, start : start + self.batch_size], epoch_tg[:, start : start + self.batch_size]
            if direct and steps > 0:
                loss_sum += self._train_step(*minibatch, through_lightning=False)["loss"]
            else:
                loss_sum += self.graphed_step(*minibatch)["loss"]
            steps += 1
        return loss_sum, steps

    @staticmethod
    def _check_finite(loss_sum: Tensor, mse: Tensor, epoch: int, num_train: int) -> None:
        if not (torch.isfinite(loss_sum) and torch.isfinite(mse).all()):  # one host sync per epoch
            raise NonFiniteError(
                f"dynamics model: non-finite training loss ({float(loss_sum)}) or holdout MSE ({mse.tolist()}) in "
                f"epoch {epoch} of this training call ({num_train} transitions). Check the real data for NaN/inf "
                "observations or rewards, or lower model.dynamics.lr."
            )
