"""``EnsemblePopulation``: S independent Gaussian ensembles, one per seed, run as one batched ensemble."""

from __future__ import annotations

from itertools import chain

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mbpo_pl.nets.ensemble import GaussianEnsemble, InputNormalizer


class EnsemblePopulation(nn.Module):
    """``population`` :class:`~mbpo_pl.nets.ensemble.GaussianEnsemble` s with tensors of their own (``seeds[s]``, so
    an optimizer can leave one seed alone while the others train), run as one ``(S, E)`` ensemble: each call stacks
    the seeds' tensors and runs the shape-generic ensemble on them, one batched matmul per layer for all seeds.

    ``forward(inputs [S, E, B, input_size], members=None) -> (mean, logvar)``, each ``[S, E, B, output_size]``;
    ``forward_members(inputs [S, M, B, input_size], members [S, M])``.
    """

    def __init__(self, population: int, input_size: int, output_size: int, ensemble_size: int = 7,
                 hidden_size: int = 200, num_hidden_layers: int = 4) -> None:  # fmt: skip
        super().__init__()
        sizes = (input_size, output_size, ensemble_size, hidden_size, num_hidden_layers)
        self.seeds = nn.ModuleList(GaussianEnsemble(*sizes) for _ in range(population))
        self.input_size, self.output_size, self.ensemble_size = input_size, output_size, ensemble_size
        with torch.device("meta"):  # the computation only: its tensors are the seeds', stacked at each call
            batched = GaussianEnsemble(input_size, output_size, (population, ensemble_size), hidden_size,
                                       num_hidden_layers)  # fmt: skip
        object.__setattr__(self, "_batched", batched)  # not a submodule: nothing of it is saved or moved

    def _stacked(self, seeds: list[int] | None = None) -> dict[str, Tensor]:
        chosen = self.seeds if seeds is None else [self.seeds[s] for s in seeds]
        states = [dict(chain(seed.named_parameters(), seed.named_buffers())) for seed in chosen]
        return {name: torch.stack([state[name] for state in states]) for name in states[0]}

    def forward(self, inputs: Tensor, members: Tensor | None = None, seeds: list[int] | None = None
                ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """``seeds``: run only these seeds (``inputs [len(seeds), ...]``), e.g. those still training; their
        tensors alone enter the computation, so the others get no gradient."""
        return functional_call(self._batched, self._stacked(seeds), (inputs,), {"members": members})

    def forward_members(self, inputs: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
        return self(inputs, members)

    @property
    def normalizers(self) -> list[InputNormalizer]:
        return [seed.normalizer for seed in self.seeds]

    def logvar_bound_loss(self, seeds: list[int] | None = None) -> Tensor:
        """Each seed's :meth:`GaussianEnsemble.logvar_bound_loss`, ``[S]`` (or of ``seeds`` only)."""
        chosen = self.seeds if seeds is None else [self.seeds[s] for s in seeds]
        return torch.stack([seed.logvar_bound_loss() for seed in chosen])
