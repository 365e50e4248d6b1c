"""``PopulationDynamicsModule``: the dynamics ensembles of S seeds trained together, each exactly as it would alone.

Every seed draws its holdout split, bootstrap resamples and epoch orders from a generator of its own and keeps its own
early stopping (:class:`~mbpo_pl.holdout.BestMembers`). The seeds' minibatches run through one batched ensemble
(:class:`~mbpo_pl.nets.population.EnsemblePopulation`) and one optimizer step; a seed whose members stopped improving
is frozen, its parameters getting no gradient, so Adam leaves them and their state (moments and step count)
untouched while the others train on. Nothing a seed computes depends on another seed's data or stopping, and a seed
whose training becomes non-finite is reported, not raised, so that the others can go on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mbpo_pl.dynamics import DynamicsModule
from mbpo_pl.errors import ConfigError
from mbpo_pl.holdout import BestMembers, split_holdout
from mbpo_pl.manual_optimization import optimizer_step, own_optimizers
from mbpo_pl.model_io import input_size, target_size
from mbpo_pl.nets.ensemble import gaussian_nll
from mbpo_pl.nets.population import EnsemblePopulation


class PopulationDynamicsModule(DynamicsModule):
    """``population`` seeds' ensembles (the other arguments as :class:`~mbpo_pl.dynamics.DynamicsModule`'s).

    ``fit_ensemble(inputs [S, N, O+A], targets [S, N, 1+O], generators)`` trains every seed on its own data with its
    own generator; the statistics gain a leading seed dimension (``holdout_mse [S, E]``, ``epochs [S]``, ...) and
    the elites are ``[S, num_elites]``. One process trains all seeds (no gradient exchange between processes).
    """

    def __init__(self, obs_dim: int, act_dim: int, population: int, **kwargs: object) -> None:
        if population < 1:
            raise ConfigError(f"population={population} must be >= 1.")
        if kwargs.get("cuda_graphs") or kwargs.get("learn_termination"):
            raise ConfigError("a population of dynamics ensembles runs without CUDA graphs and learned termination.")
        super().__init__(obs_dim, act_dim, **{**kwargs, "cuda_graphs": False})
        single = self.model
        self.population = population
        sizes = input_size(obs_dim, act_dim), target_size(obs_dim), single.ensemble_size
        self.model = EnsemblePopulation(population, *sizes, single.hidden[0].out_features, len(single.hidden))
        self.elites = torch.arange(self.num_elites).repeat(population, 1)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """One Adam over every seed, a parameter group per layer (its weight-decay coefficient) as the single
        module's, and one for biases and log-variance bounds."""
        self.graphed_step.enabled, self.direct_steps = False, False
        layers = [seed.layers for seed in self.model.seeds]
        groups = [
            {"params": [seed[i].weight for seed in layers], "weight_decay": c} for i, c in enumerate(self.weight_decay)
        ]
        decayed = {id(group_param) for group in groups for group_param in group["params"]}
        groups.append({"params": [p for p in self.model.parameters() if id(p) not in decayed], "weight_decay": 0.0})
        return [torch.optim.Adam(groups, lr=self.lr, fused=self.fused_optimizer)]

    def fit_ensemble(self, inputs: Tensor, targets: Tensor, generators: list[torch.Generator] | None = None,
                     seeds: list[int] | None = None) -> dict[str, Tensor]:  # fmt: skip
        """Train seed ``seeds[i]`` on ``inputs[i] [N, O+A]``, ``targets[i] [N, 1+O]`` with ``generators[seeds[i]]``,
        each as :meth:`DynamicsModule.fit_ensemble` trains one ensemble (the official MBPO recipe); ``seeds``
        defaults to every seed. The other seeds are left as they are.

        A seed whose training loss or holdout MSE becomes non-finite stops training there; it is flagged in the
        returned ``failed [len(seeds)]`` and the others go on (a one-agent run raises instead)."""
        seeds = list(range(self.population)) if seeds is None else list(seeds)
        device, count = inputs.device, len(seeds)
        if generators is None or len(generators) != self.population:
            raise ValueError(f"fit_ensemble needs one generator per seed ({self.population})")
        if inputs.shape[0] != count:
            raise ValueError(f"inputs hold {inputs.shape[0]} seeds' data, expected {count} (seeds={seeds})")
        own = [generators[s] for s in seeds]
        splits = [split_holdout(inputs[i], targets[i], self.holdout_ratio, self.max_holdout, own[i])
                  for i in range(count)]  # fmt: skip
        train_in, train_tg, holdout_in, holdout_tg = (torch.stack(parts) for parts in zip(*splits))
        for s, data in zip(seeds, train_in):
            self.model.normalizers[s].fit(data)
        ensemble_size, num_train = self.model.ensemble_size, train_in.shape[1]
        bootstrap = torch.stack(
            [torch.randint(num_train, (ensemble_size, num_train), device=device, generator=g) for g in own]
        )  # fmt: skip  [S', E, N_train]
        best = [BestMembers([p for layer in self.model.seeds[s].layers for p in (layer.weight, layer.bias)],
                            self.patience, self.improvement_threshold) for s in seeds]  # fmt: skip
        active, failed = [True] * count, [False] * count
        epochs = torch.zeros(count, dtype=torch.long)
        loss_sums, steps = torch.zeros(count, device=device), torch.zeros(count, device=device)
        while any(active):
            training = [i for i in range(count) if active[i]]  # positions in `seeds` that compute this epoch
            epoch_loss, epoch_steps = self._run_population_epoch(
                train_in, train_tg, bootstrap, training, [seeds[i] for i in training], own
            )  # fmt: skip
            loss_sums[training] += epoch_loss
            steps[training] += epoch_steps
            epochs[training] += 1
            mse = self.holdout_mse(holdout_in[training], holdout_tg[training], seeds=[seeds[i] for i in training])
            finite = (torch.isfinite(loss_sums[training]) & torch.isfinite(mse).all(-1)).tolist()  # one sync/epoch
            for i, seed_mse, is_finite in zip(training, mse, finite):
                capped = self.max_epochs_per_train is not None and int(epochs[i]) >= self.max_epochs_per_train
                if not is_finite:
                    active[i], failed[i] = False, True
                elif best[i].update(seed_mse) or capped:
                    active[i] = False
        for seed_best in best:
            seed_best.restore()
        mse = self.holdout_mse(holdout_in, holdout_tg, seeds=seeds)
        self.elites[seeds] = mse.argsort(dim=-1)[..., : self.num_elites]
        return {
            "holdout_mse": mse,
            "train_loss": loss_sums / steps.clamp_min(1),
            "epochs": epochs,
            "num_train": torch.tensor(num_train),
            "num_holdout": torch.tensor(holdout_in.shape[1]),
            "failed": torch.tensor(failed),
        }

    def _run_population_epoch(self, train_in: Tensor, train_tg: Tensor, bootstrap: Tensor, training: list[int],
                              seeds: list[int], generators: list[torch.Generator]) -> tuple[Tensor, int]:  # fmt: skip
        """One pass over their bootstrap resamples in a fresh order (drawn from their generators) of the data at
        positions ``training`` of ``train_in [S', N, D]`` (and ``bootstrap``, ``generators``), which belong to the
        population's seeds ``seeds``; every other seed draws nothing, computes nothing and gets no update. Returns the
        training seeds' summed minibatch losses ``[len(training)]`` and the number of minibatches."""
        _, ensemble_size, num_train = bootstrap.shape
        orders = []
        for i in training:
            shuffle = torch.rand(ensemble_size, num_train, device=train_in.device, generator=generators[i])
            orders.append(bootstrap[i].gather(1, shuffle.argsort(dim=1)))
        epoch_in = torch.stack([train_in[i][order] for i, order in zip(training, orders)])  # [S'', E, N_train, D]
        epoch_tg = torch.stack([train_tg[i][order] for i, order in zip(training, orders)])
        frozen = [p for s, seed in enumerate(self.model.seeds) if s not in seeds for p in seed.parameters()]
        (optimizer,) = own_optimizers(self)
        loss_sums, minibatches = torch.zeros(len(training), device=train_in.device), 0
        for start in range(0, num_train, self.batch_size):
            batch = slice(start, start + self.batch_size)
            mean, logvar = self.model(epoch_in[:, :, batch], seeds=seeds)
            per_seed = gaussian_nll(mean, logvar, epoch_tg[:, :, batch]).sum(-1)
            per_seed = per_seed + self.logvar_bound_weight * self.model.logvar_bound_loss(seeds)  # [S'']
            optimizer_step(self, optimizer, per_seed.sum(), self._trainer is not None, skip=frozen)
            loss_sums += per_seed.detach()
            minibatches += 1
        return loss_sums, minibatches
