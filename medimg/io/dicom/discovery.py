"""Find DICOM images under a folder and group them into volumes.

A folder straight from an archive mixes series, and one series can hold several volumes.
:func:`scan_dicom_folder` reads every file's header (recursively, or the files a ``DICOMDIR``
lists), groups images by SeriesInstanceUID and splits a series further where it is more than one
volume: by image orientation, by echo, and, when slice positions repeat, by temporal position,
by acquisition number or (as a last resort) by acquisition order. Each split and each file left
out is recorded with its reason, so ``medimg dicom ls`` can show it.

A series whose headers cannot be trusted is kept as a *refused* candidate
(:attr:`DicomSeries.refused` says why) instead of being read or guessed: a file of it is
truncated or unreadable, a header value is invalid (see :mod:`medimg.io.dicom._validity`), or a
slice of a cross-sectional modality (CT, MR, PT, NM,
US...) lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing. Only projection
modalities (:data:`~medimg.io.dicom._validity.PROJECTION_MODALITIES`) are read as 2D images
without a patient position.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from medimg.errors import DicomSeriesError
from medimg.io.dicom._files import candidate_files, not_an_image, read_header
from medimg.io.dicom._frames import DicomFrame, frames_of
from medimg.io.dicom._refusals import Broken
from medimg.io.dicom._series import DicomScan, DicomSeries
from medimg.io.dicom._splitting import split_series
from medimg.io.dicom._validity import (
    decode_values,
    header_extent,
    header_problems,
    quiet_pydicom,
    truncation,
)
from medimg.typing import PathLike

__all__ = ["DicomScan", "DicomSeries", "scan_dicom_folder"]

logger = logging.getLogger(__name__)


def scan_dicom_folder(folder: PathLike, *, pixels: bool = False) -> DicomScan:
    """Read the headers under ``folder`` and group the images into volume candidates.

    Parameters
    ----------
    folder : path-like
        A folder of DICOM files (searched recursively), or one with a ``DICOMDIR``.
    pixels : bool
        Keep each file open for its pixel data (read later without parsing the header again).
        ``False`` reads headers only (``stop_before_pixels``).

    Returns
    -------
    DicomScan

    Raises
    ------
    DicomSeriesError
        When ``folder`` is not a folder or holds no DICOM image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DicomSeriesError(
            f"{root}: a DICOM series must be given as an existing folder; got "
            f"{'a file' if root.exists() else 'a path that does not exist'}"
        )
    left_out: list[str] = []
    broken: list[Broken] = []
    by_series: dict[str, list[DicomFrame]] = defaultdict(list)
    with quiet_pydicom():
        for path in candidate_files(root, left_out):
            for frame in _read_frames(path, pixels, left_out, broken):
                by_series[frame.series_uid].append(frame)
    if not by_series:
        raise DicomSeriesError(
            f"{root}: holds no DICOM image ({len(left_out)} files left out"
            + (f", e.g. {left_out[0]}" if left_out else "")
            + "); point to the folder that holds the series' .dcm files"
        )
    series: list[DicomSeries] = []
    with quiet_pydicom():
        for uid, frames in by_series.items():
            mine = _broken_of(uid, frames, broken, set(by_series))
            series.extend(split_series(uid, frames, left_out, mine))
    series.sort(key=lambda s: (s.series_number, s.series_uid, s.part))
    logger.debug("%s: %d volume candidates, %d left out", root, len(series), len(left_out))
    return DicomScan(root=root, series=tuple(series), left_out=tuple(left_out))


def _read_frames(
    path: Path, pixels: bool, left_out: list[str], broken: list[Broken]
) -> list[DicomFrame]:
    """The images of one file, or none (the reason is added to ``left_out``/``broken``)."""
    failed: list[tuple[Path, str]] = []
    ds = read_header(path, pixels=pixels, left_out=left_out, broken=failed)
    broken.extend(Broken(p, reason, None) for p, reason in failed)
    if ds is None:
        return []
    cut = truncation(ds, path, pixels=pixels)
    if cut:
        left_out.append(f"{path}: {cut}; re-copy the file")
        uid = str(ds.get("SeriesInstanceUID", "") or "") or None
        broken.append(Broken(path, cut, uid))
        return []
    header_end = header_extent(ds)
    undecodable = decode_values(ds)
    reason = not_an_image(ds)
    if reason:
        left_out.append(f"{path}: {reason}")
        return []
    return frames_of(ds, path, undecodable + header_problems(ds, path, header_end))


def _broken_of(
    uid: str, frames: Sequence[DicomFrame], broken: Sequence[Broken], uids: set[str]
) -> list[Broken]:
    """Broken files that belong (or, series unknown, may belong) to the series ``uid``.

    A file whose series could not be read (or whose SeriesInstanceUID is itself cut short
    and matches no series) counts for every series with an image in the same folder: a slice
    cut from either end of a stack leaves no gap to notice.
    """
    folders = {f.path.parent for f in frames}
    return [b for b in broken if b.uid == uid or (b.uid not in uids and b.path.parent in folders)]
