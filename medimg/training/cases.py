"""Case handling shared by the pipelines: the training/validation split and running a chain.

:func:`split_cases` takes the manifest's own validation split when it has one, else holds out a
seeded share of the training cases; :func:`apply_chain` runs a MONAI chain and surfaces our own
errors (a :class:`~medimg.errors.MedimgError` or ``OSError``) from inside MONAI's
``RuntimeError`` wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medimg.errors import MedimgError
from medimg.manifests import ResolvedCase
from medimg.training.batches import holdout_split

__all__ = ["apply_chain", "split_cases"]


def split_cases(
    cases: Sequence[ResolvedCase], *, fraction: float, seed: int
) -> tuple[list[ResolvedCase], list[ResolvedCase]]:
    """(training, validation) cases: the manifest's validation split, else a seeded holdout.

    ``fraction`` of the training cases (at least one when there are two or more) is held out
    by :func:`~medimg.training.holdout_split` only when no case is in the ``validation`` split.
    """
    train = [c for c in cases if c.split == "training"]
    validation = [c for c in cases if c.split == "validation"]
    if validation:
        return train, validation
    return holdout_split(train, fraction=fraction, seed=seed)


def apply_chain(chain: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """Run a MONAI chain on ``data``, re-raising our own error from MONAI's ``RuntimeError``.

    MONAI wraps any exception inside a transform in ``RuntimeError("applying transform ...")``;
    the first :class:`~medimg.errors.MedimgError` or ``OSError`` in the cause chain is raised
    instead, so a bad file reads as an ``ImageReadError`` naming it. Other errors pass through.
    """
    try:
        result: dict[str, Any] = chain(dict(data))
    except RuntimeError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, MedimgError | OSError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None
    return result
