"""``PopulationDynamicsModule``: the dynamics ensembles of S seeds trained together, each exactly as it would alone.

Every seed draws its holdout split, bootstrap resamples and epoch orders from a generator of its own and keeps its own
early stopping (:class:`~mbpo_pl.holdout.BestMembers`). The seeds' minibatches run through one batched ensemble
(:class:`~mbpo_pl.nets.population.EnsemblePopulation`) and one optimizer step; a seed whose members stopped improving
is frozen, its parameters getting no gradient, so Adam leaves them and their state (moments and step count)
untouched while the others train on. Nothing a seed computes depends on another seed's data or stopping.
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

    def fit_ensemble(self, inputs: Tensor, targets: Tensor, generators: list[torch.Generator] | None = None
                     ) -> dict[str, Tensor]:  # fmt: skip
        """Train seed ``s`` on ``inputs[s] [N, O+A]``, ``targets[s] [N, 1+O]`` with ``generators[s]``, each as
        :meth:`DynamicsModule.fit_ensemble` trains one ensemble (the official MBPO recipe)."""
        population, device = self.population, inputs.device
        if generators is None or len(generators) != population:
            raise ValueError(f"fit_ensemble needs one generator per seed ({population})")
        splits = [split_holdout(inputs[s], targets[s], self.holdout_ratio, self.max_holdout, generators[s])
                  for s in range(population)]  # fmt: skip
        train_in, train_tg, holdout_in, holdout_tg = (torch.stack(parts) for parts in zip(*splits))
        for normalizer, data in zip(self.model.normalizers, train_in):
            normalizer.fit(data)
        ensemble_size, num_train = self.model.ensemble_size, train_in.shape[1]
        bootstrap = torch.stack(
            [torch.randint(num_train, (ensemble_size, num_train), device=device, generator=g) for g in generators]
        )  # fmt: skip  [S, E, N_train]
        seeds = self.model.seeds
        best = [BestMembers([p for layer in seed.layers for p in (layer.weight, layer.bias)], self.patience,
                            self.improvement_threshold) for seed in seeds]  # fmt: skip
        active = [True] * population
        epochs = torch.zeros(population, dtype=torch.long)
        loss_sums, steps = torch.zeros(population, device=device), torch.zeros(population, device=device)
        while any(active):
            training = [s for s in range(population) if active[s]]  # only these seeds compute this epoch
            epoch_loss, epoch_steps = self._run_population_epoch(train_in, train_tg, bootstrap, training, generators)
            loss_sums[training] += epoch_loss
            steps[training] += epoch_steps
            epochs[training] += 1
            mse = self.holdout_mse(holdout_in[training], holdout_tg[training], seeds=training)  # [len(training), E]
            self._check_finite(loss_sums.sum(), mse, int(epochs.max()), num_train)
            for s, seed_mse in zip(training, mse):
                capped = self.max_epochs_per_train is not None and int(epochs[s]) >= self.max_epochs_per_train
                if best[s].update(seed_mse) or capped:
                    active[s] = False
        for seed_best in best:
            seed_best.restore()
        mse = self.holdout_mse(holdout_in, holdout_tg)
        self.elites.copy_(mse.argsort(dim=-1)[..., : self.num_elites])
        return {
            "holdout_mse": mse,
            "train_loss": loss_sums / steps.clamp_min(1),
            "epochs": epochs,
            "num_train": torch.tensor(num_train),
            "num_holdout": torch.tensor(holdout_in.shape[1]),
        }

    def _run_population_epoch(self, train_in: Tensor, train_tg: Tensor, bootstrap: Tensor, training: list[int],
                              generators: list[torch.Generator]) -> tuple[Tensor, int]:  # fmt: skip
        """One pass of the ``training`` seeds over their bootstrap resamples in a fresh order (drawn from their
        generators); the other (frozen) seeds draw nothing, compute nothing and get no update. Returns the training
        seeds' summed minibatch losses ``[len(training)]`` and the number of minibatches."""
        _, ensemble_size, num_train = bootstrap.shape
        orders = []
        for s in training:
            shuffle = torch.rand(ensemble_size, num_train, device=train_in.device, generator=generators[s])
            orders.append(bootstrap[s].gather(1, shuffle.argsort(dim=1)))
        epoch_in = torch.stack([train_in[s][order] for s, order in zip(training, orders)])  # [S', E, N_train, D]
        epoch_tg = torch.stack([train_tg[s][order] for s, order in zip(training, orders)])
        frozen = [p for s, seed in enumerate(self.model.seeds) if s not in training for p in seed.parameters()]
        (optimizer,) = own_optimizers(self)
        loss_sums, minibatches = torch.zeros(len(training), device=train_in.device), 0
        for start in range(0, num_train, self.batch_size):
            batch = slice(start, start + self.batch_size)
            mean, logvar = self.model(epoch_in[:, :, batch], seeds=training)
            per_seed = gaussian_nll(mean, logvar, epoch_tg[:, :, batch]).sum(-1)
            per_seed = per_seed + self.logvar_bound_weight * self.model.logvar_bound_loss(training)  # [S']
            optimizer_step(self, optimizer, per_seed.sum(), self._trainer is not None, skip=frozen)
            loss_sums += per_seed.detach()
            minibatches += 1
        return loss_sums, minibatches
