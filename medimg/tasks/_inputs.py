"""What a task's chain is given for one image: a path (file or DICOM folder) or a Volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["chain_input"]


def chain_input(image: Any) -> Any:
    """``image`` as the chain's loader takes it: a :class:`~medimg.io.Volume` as it is, else text.

    The loader (:class:`~medimg.transforms.steps.LoadVolumed`) reads a path with
    :func:`~medimg.io.read_image` and takes a Volume on its stored grid directly.

    Examples
    --------
    >>> chain_input(Path("case.nii.gz"))
    'case.nii.gz'
    """
    from medimg.io import Volume

    return image if isinstance(image, Volume) else str(Path(image))
