"""Random-number streams: seeded generators and the global torch streams a checkpoint saves and restores."""

from __future__ import annotations

import torch


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def global_rng_state() -> dict[str, object]:
    """The global torch RNG streams (CPU and every CUDA device), for a checkpoint."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_global_rng_state(state: dict[str, object]) -> None:
    """Restore what :func:`global_rng_state` returned (CUDA streams only where CUDA is available)."""
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
