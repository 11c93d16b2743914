"""Seeding and the random-number-generator state that checkpoints save and restore.

:func:`seed_everything` is for pipelines, called once with the config's seed (library code
never seeds on its own); :func:`rng_state` and :func:`restore_rng_state` let a resumed run draw
the same random numbers as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

__all__ = ["restore_rng_state", "rng_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's legacy and torch's (CPU and CUDA) global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator MONAI draws from
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator's state, as types ``torch.load(weights_only=True)`` accepts."""
    import torch

    legacy = cast(
        tuple[str, NDArray[np.uint32], int, int, float],
        np.random.get_state(legacy=True),  # noqa: NPY002
    )
    name, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set every global generator back to ``state`` (from :func:`rng_state`)."""
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
