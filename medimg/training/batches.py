"""Batches for an epoch from preprocessed samples and a random patch sampler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medimg.errors import ConfigError
from medimg.keys import Keys

if TYPE_CHECKING:
    import torch

__all__ = ["balanced_indices", "epoch_batches", "holdout_split"]


def epoch_batches(
    samples: Sequence[Mapping[str, Any]],
    sampler: Any,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    target_key: str = Keys.LABEL.value,
    rank: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffle ``samples``, draw patches with ``sampler`` and stack them into batches.

    The epoch's randomness (order and patch positions) comes from ``(seed, epoch)`` alone, so a
    resumed run draws exactly the batches an uninterrupted one would. A rank of a distributed
    run passes its training shard and its ``rank``: its own stream ``(seed, epoch, rank)``
    (rank 0's is one process's ``(seed, epoch)``).

    Parameters
    ----------
    samples : sequence of mapping
        Preprocessed samples with :attr:`Keys.IMAGE` and ``target_key``.
    sampler : MONAI randomizable transform
        Maps a sample to a sample or a list of samples (e.g. :func:`label_balanced_crop`); it is
        re-seeded here with ``set_random_state``.
    batch_size : int
        Patches per batch; the last batch may be smaller.
    seed, epoch : int
        The run's seed and the epoch index.
    target_key : str
        Sample key of the target (label map, or class index).
    rank : int
        This process's rank (:mod:`medimg.training.distributed`); 0 for one process.

    Returns
    -------
    list of (image, target) tensors
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng([seed, epoch] if rank == 0 else [seed, epoch, rank])
    sampler.set_random_state(seed=int(rng.integers(2**31)))
    patches: list[Mapping[str, Any]] = []
    for index in rng.permutation(len(samples)):
        drawn = sampler(dict(samples[int(index)]))
        patches.extend(drawn if isinstance(drawn, list) else [drawn])
    return [
        (_stack(Keys.IMAGE.value, chunk), _stack(target_key, chunk).long())
        for chunk in (patches[i : i + batch_size] for i in range(0, len(patches), batch_size))
    ]


def _stack(key: str, chunk: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    import torch

    return torch.stack([torch.as_tensor(p[key]).as_subclass(torch.Tensor) for p in chunk])


def holdout_split(
    items: Sequence[Any], *, fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """Split ``items`` into (kept, held out): ``round(n * fraction)`` held out, at least one.

    Nothing is held out when ``fraction`` is 0 or there are fewer than two items. The choice
    depends on ``seed`` only; both parts keep the input order.

    Examples
    --------
    >>> holdout_split(list("abcde"), fraction=0.4, seed=0)
    (['a', 'b', 'd'], ['c', 'e'])
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"fraction must be in [0, 1), got {fraction}")
    if fraction == 0 or len(items) < 2:
        return list(items), []
    n_held = max(1, round(len(items) * fraction))
    held = {int(i) for i in np.random.default_rng(seed).permutation(len(items))[:n_held]}
    kept = [x for i, x in enumerate(items) if i not in held]
    return kept, [x for i, x in enumerate(items) if i in held]


def balanced_indices(classes: Sequence[int], *, seed: int, epoch: int, rank: int = 0) -> list[int]:
    """An epoch of ``len(classes)`` indices drawn with replacement, each class equally likely.

    A case of class ``k`` is drawn with probability ``1 / (K * count_k)``: the class-balanced
    sampler (the alternative to a weighted loss). Depends on ``(seed, epoch)`` only (and on
    ``rank``, a distributed run's, drawing from its own shard's ``classes``).

    Raises
    ------
    ConfigError
        When ``classes`` is empty.

    Examples
    --------
    >>> picks = balanced_indices([0] * 90 + [1] * 10, seed=0, epoch=0)
    >>> len(picks), 40 < sum(i >= 90 for i in picks) < 60  # about half from the rare class
    (100, True)
    """
    labels = np.asarray(classes, dtype=np.int64)
    if labels.size == 0:
        raise ConfigError("classes must hold at least one case, got none")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    p = 1.0 / (counts.size * counts[inverse])
    rng = np.random.default_rng([seed, epoch, 1] if rank == 0 else [seed, epoch, 1, rank])
    return [int(i) for i in rng.choice(labels.size, size=labels.size, replace=True, p=p / p.sum())]
