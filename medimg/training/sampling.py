"""Foreground/background-balanced patch sampling per label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medimg.errors import ConfigError
from medimg.keys import Keys

__all__ = ["label_balanced_crop"]


def label_balanced_crop(
    roi_size_vox: Sequence[int],
    *,
    num_classes: int,
    num_samples: int = 2,
    ratios: Sequence[float] | None = None,
) -> Any:
    """A MONAI ``RandCropByLabelClassesd`` drawing patches centred on each class in turn.

    Each of the ``num_samples`` patches is centred on a voxel of a class drawn with
    probability proportional to ``ratios`` (equal by default, background included), so small
    structures such as lesions are seen as often as the background. A class absent from a case
    is skipped silently (its probability goes to the others). Image and label are cropped
    together; an image smaller than ``roi_size_vox`` is first padded (image with its minimum,
    label with background).

    Parameters
    ----------
    roi_size_vox : sequence of int
        Patch size per spatial axis.
    num_classes : int
        Classes in the label map, background included.
    num_samples : int
        Patches per case and call.
    ratios : sequence of float, optional
        Relative frequency of each class as a patch centre.

    Returns
    -------
    monai.transforms.Compose
        ``SpatialPadd`` then ``RandCropByLabelClassesd`` over :attr:`Keys.IMAGE` and
        :attr:`Keys.LABEL`; returns a list of ``num_samples`` sample dictionaries.

    Raises
    ------
    ConfigError
        When the sizes, counts or ratios are invalid.
    """
    from monai.transforms.compose import Compose
    from monai.transforms.croppad.dictionary import RandCropByLabelClassesd, SpatialPadd

    if any(int(s) < 1 for s in roi_size_vox) or num_classes < 2 or num_samples < 1:
        raise ConfigError(
            f"roi_size_vox must be positive, num_classes >= 2 and num_samples >= 1, got "
            f"{tuple(roi_size_vox)}, {num_classes} and {num_samples}"
        )
    if ratios is not None and (len(ratios) != num_classes or min(ratios) < 0 or sum(ratios) <= 0):
        raise ConfigError(
            f"ratios must be {num_classes} values >= 0 with a positive sum, got {tuple(ratios)}"
        )
    keys = [Keys.IMAGE.value, Keys.LABEL.value]
    size = [int(s) for s in roi_size_vox]
    pad = SpatialPadd(keys=keys, spatial_size=size, mode="minimum")
    crop = RandCropByLabelClassesd(
        keys=keys,
        label_key=Keys.LABEL.value,
        spatial_size=size,
        num_classes=num_classes,
        num_samples=num_samples,
        ratios=None if ratios is None else [float(r) for r in ratios],
        warn=False,
    )
    return Compose([pad, crop])
