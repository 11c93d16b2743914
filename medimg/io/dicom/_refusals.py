"""Why the images of one series cannot be read: broken files, bad headers, missing geometry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medimg.io.dicom._frames import DicomFrame
from medimg.io.dicom._validity import PROJECTION_MODALITIES, tag_label

__all__ = ["Broken", "refusal"]


@dataclass(frozen=True)
class Broken:
    """A DICOM file that is cut short or unreadable; ``uid`` is its series when it was read."""

    path: Path
    reason: str
    uid: str | None


def refusal(frames: Sequence[DicomFrame], broken: Sequence[Broken]) -> str:
    """Why the images of one series cannot be read as a volume or 2D image ('' if they can)."""
    n = len(frames)
    if broken:
        more = f" (and {len(broken) - 1} more such file(s))" if len(broken) > 1 else ""
        return (
            f"{broken[0].path}: {broken[0].reason}{more}; the series cannot be read complete "
            "without it: re-copy the file (or remove it if it is not part of this series)"
        )
    bad = [f for f in frames if f.problems]
    if bad:
        first = bad[0]
        extra = len(first.problems) - 1
        return (
            f"{first.path}: {first.problems[0]}"
            + (f" (and {extra} more problem(s) in this file)" if extra else "")
            + f" ({len(bad)} of {n} images have header problems); fix the header or "
            "re-export the series"
        )
    return _missing_geometry(frames)


def _how_many(lacking: Sequence[DicomFrame], frames: Sequence[DicomFrame]) -> str:
    """``3 of 20 images lack geometry``, or, for multi-frame files, counted once per file."""
    if all(f.frame_index is None for f in lacking):
        return f"{len(lacking)} of {len(frames)} images lack geometry"
    files = sorted({f.path for f in lacking})
    return (
        f"{len(files)} multi-frame file(s) of {len(frames)} frames in all lack geometry, "
        "no frame has its own Plane Position/Orientation"
    )


def _missing_geometry(frames: Sequence[DicomFrame]) -> str:
    modality = str(frames[0].dataset.get("Modality", "") or "")
    multi = [f for f in frames if f.frame_index is not None and f.missing]
    if modality.upper() in PROJECTION_MODALITIES and not multi:
        # a projection image without position is read as 2D; one with position is a slice
        frames = [f for f in frames if f.position_lps is not None and f.orientation is not None]
    lacking = [f for f in frames if f.missing]
    if not lacking:
        return ""
    first = lacking[0]
    missing = " and ".join(first.missing)
    verb = "is" if len(first.missing) == 1 else "are"
    if multi:
        return (
            f"{first.path}: {missing} {verb} missing ({_how_many(lacking, frames)}); a "
            f"{modality or 'no-Modality'} multi-frame image needs ImagePositionPatient, "
            "ImageOrientationPatient and PixelSpacing for each frame (shared or per-frame "
            "functional groups) to be placed in a volume: the geometry is not guessed. "
            "Re-export the series with its geometry from the scanner or PACS, or as one "
            "image per file"
        )
    return (
        f"{first.path}: {missing} {verb} missing ({_how_many(lacking, frames)}); a "
        f"{modality or 'no-Modality'} slice must have "
        "ImagePositionPatient, ImageOrientationPatient and PixelSpacing to be placed in a "
        f"volume, and only projection modalities ({', '.join(sorted(PROJECTION_MODALITIES))}) "
        "are read as 2D: the geometry is not guessed. Re-export the series with its geometry "
        f"from the scanner or PACS (or correct {tag_label('Modality')} if this is a "
        "radiograph)"
    )
