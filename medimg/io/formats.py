"""File formats medimg reads and writes, chosen by file-name suffix."""

from __future__ import annotations

from pathlib import Path

from medimg.errors import UnsupportedFormatError
from medimg.typing import PathLike

__all__ = ["SUPPORTED_SUFFIXES", "format_of"]

SUPPORTED_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".hdr": "analyze",
    ".img": "analyze",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "metaimage",
    ".mhd": "metaimage",
}
"""Suffix (lower case) to format name. ``.hdr``/``.img`` pairs are NIfTI-pair or Analyze 7.5."""


def format_of(path: PathLike) -> str:
    """Format name of ``path`` from its suffix.

    Raises
    ------
    UnsupportedFormatError
        When the suffix is not one of :data:`SUPPORTED_SUFFIXES`.

    Examples
    --------
    >>> format_of("ct/case_001.NII.GZ")
    'nifti'
    """
    name = Path(path).name.lower()
    for suffix, fmt in SUPPORTED_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    supported = ", ".join(SUPPORTED_SUFFIXES)
    raise UnsupportedFormatError(
        f"{path}: unknown image extension {Path(path).suffix or '(none)'!r}; "
        f"supported: {supported} (DICOM series are read from their folder)"
    )


def strip_suffix(path: PathLike) -> str:
    """File name of ``path`` without its image suffix (``case.nii.gz`` -> ``case``).

    Examples
    --------
    >>> strip_suffix("a/b/case_01.nii.gz")
    'case_01'
    """
    name = Path(path).name
    for suffix in SUPPORTED_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem
