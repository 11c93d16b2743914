"""Geometry-true image IO.

:func:`load_volume` reads NIfTI (``.nii``, ``.nii.gz``), Analyze/NIfTI pairs (``.hdr``/``.img``),
NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) into a channel-first array with a
voxel-to-RAS affine; :func:`save_volume` writes an array onto a given grid atomically;
:func:`read_header` reads the grid without the voxels (``verify=True`` also checks a compressed
body); :func:`verify_compressed` checks every gzip/zlib/bzip2 stream of a file (CRC, length);
:func:`intensity_range` streams the voxels in chunks; :func:`default_max_bytes` is the decode
limit used when none is given.

:func:`read_image` and :func:`read_image_header` are the one read path of case images: a file
as above, or a DICOM series folder (:mod:`medimg.io.dicom`) under the same policies. Manifest
checks, the fingerprint, the preprocessing chains and inference all read through them.
"""

from __future__ import annotations

from medimg.io.formats import SUPPORTED_SUFFIXES, format_of
from medimg.io.geometry import SourceGeometry, reorient
from medimg.io.read import read_image, read_image_header
from medimg.io.volume import (
    DEFAULT_MAX_BYTES,
    Volume,
    default_max_bytes,
    intensity_range,
    load_volume,
    read_header,
    verify_compressed,
)
from medimg.io.writing import atomic_path, save_volume

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_SUFFIXES",
    "SourceGeometry",
    "Volume",
    "atomic_path",
    "default_max_bytes",
    "format_of",
    "intensity_range",
    "load_volume",
    "read_header",
    "read_image",
    "read_image_header",
    "reorient",
    "save_volume",
    "verify_compressed",
]
