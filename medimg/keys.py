"""Dictionary keys used inside MONAI transform chains, defined once."""

from __future__ import annotations

from enum import Enum

__all__ = ["Keys"]


class Keys(str, Enum):
    """Keys of the sample dictionaries that flow through medimg's transform chains."""

    IMAGE = "image"
    LABEL = "label"
    CLASS = "class"
    CASE_ID = "case_id"
    RECORD = "preprocess_record"
    """The :class:`~medimg.transforms.PreprocessRecord` a chain keeps (every grid passed)."""
    HISTORY = "augment_history"
    """List of ``{"name", "applied", **sampled parameters}`` entries of the augmentations drawn."""

    def __str__(self) -> str:
        return self.value
