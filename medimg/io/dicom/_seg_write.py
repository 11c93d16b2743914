"""Helpers of :func:`medimg.io.dicom.seg.write_seg`: grid, label values, segment descriptions.

The label map is brought onto the reference's stored order (axis permutations and flips of
its grid are accepted, anything else refused); its values must be whole and 0..65535.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError, GeometryError
from medimg.io.dicom._seg_codes import SegmentCodes
from medimg.io.dicom._seg_reference import ReferenceSeries
from medimg.io.geometry import SourceGeometry
from medimg.io.volume import Volume

__all__ = ["descriptions", "label_values", "on_grid"]

_GRID_TOLERANCE_MM = 0.01
"""How far apart (corner voxel centres) a label map's grid and the series' may lie."""


def on_grid(volume: Volume, ref: ReferenceSeries, where: str) -> NDArray[Any]:
    """The label array in the reference's stored order; axis permutations and flips allowed."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    if volume.array.ndim != 4 or volume.array.shape[0] != 1:
        raise GeometryError(
            f"{where}: a label map must be one 3D volume, got shape {volume.array.shape[1:]} "
            f"with {volume.array.shape[0]} channel(s)"
        )
    array, affine = volume.array[0], volume.affine
    transform = ornt_transform(io_orientation(affine), io_orientation(ref.geometry.affine))
    moved = apply_orientation(array, transform)
    moved_affine = affine @ inv_ornt_aff(transform, array.shape)
    label = SourceGeometry(volume.source.path, volume.source.format, tuple(moved.shape),
                           moved_affine, volume.source.dtype)  # fmt: skip
    if not label.same_grid(ref.geometry, tolerance_mm=_GRID_TOLERANCE_MM):
        from medimg.io.geometry import grid_difference_mm

        detail = (
            f"corner voxel centres up to {grid_difference_mm(label, ref.geometry):.3f} mm apart"
            if label.shape == ref.geometry.shape
            else f"shape {tuple(array.shape)}, the series {ref.geometry.shape}"
        )
        raise GeometryError(
            f"{where}: the label map must lie on the grid of the reference series "
            f"{ref.folder} ({ref.series.label}), got {detail}; resample the labels onto the "
            "series (medimg predict writes them there) or give the series they were made on"
        )
    return np.asarray(moved)


def label_values(array: NDArray[Any], where: str) -> list[int]:
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ConfigError(f"{where}: a label map must hold whole numbers, it holds fractions")
    values = np.unique(array)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ConfigError(
            f"{where}: label values must be 0..65535, got {values.min():g}..{values.max():g}"
        )
    return [int(v) for v in values if v != 0]


def descriptions(codes: dict[int, SegmentCodes], options: Any) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    algorithm = None
    if options.algorithm is not None:
        params = {"sha256": options.algorithm.sha256} if options.algorithm.sha256 else None
        algorithm = hd.AlgorithmIdentificationSequence(
            name=options.algorithm.name, version=options.algorithm.version,
            family=dcm_codes.DCM.ArtificialIntelligence, source="medimg", parameters=params,
        )  # fmt: skip
    out = []
    for number, seg in sorted(codes.items()):
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=seg.label[:64],
            segmented_property_category=hd.sr.CodedConcept(*seg.category),
            segmented_property_type=hd.sr.CodedConcept(*seg.type),
            algorithm_type="AUTOMATIC" if algorithm is not None else "MANUAL",
            algorithm_identification=algorithm,
        )  # fmt: skip
        if seg.modifier is not None:
            item = description.SegmentedPropertyTypeCodeSequence[0]
            item.SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept(*seg.modifier)]
        out.append(description)
    return out
