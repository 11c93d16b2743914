"""Geometry-true image IO.

:func:`load_volume` reads NIfTI (``.nii``, ``.nii.gz``), Analyze/NIfTI pairs (``.hdr``/``.img``),
NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) into a channel-first array with a
voxel-to-RAS affine; :func:`save_volume` writes an array onto a given grid atomically;
:func:`read_header` reads the grid without the voxels.
"""

from __future__ import annotations

from medimg.io.formats import SUPPORTED_SUFFIXES, format_of
from medimg.io.geometry import SourceGeometry, reorient
from medimg.io.volume import DEFAULT_MAX_BYTES, Volume, load_volume, read_header
from medimg.io.writing import atomic_path, save_volume

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_SUFFIXES",
    "SourceGeometry",
    "Volume",
    "atomic_path",
    "format_of",
    "load_volume",
    "read_header",
    "reorient",
    "save_volume",
]
