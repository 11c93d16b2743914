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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medimg.errors import DicomSeriesError
from medimg.io.dicom._files import candidate_files, not_an_image, read_header
from medimg.io.dicom._frames import DicomFrame, frames_of
from medimg.io.dicom._validity import (
    PROJECTION_MODALITIES,
    decode_values,
    header_extent,
    header_problems,
    quiet_pydicom,
    tag_label,
    truncation,
)
from medimg.typing import PathLike

__all__ = ["DicomScan", "DicomSeries", "scan_dicom_folder"]

logger = logging.getLogger(__name__)

_POSITION_DECIMALS = 2  # positions equal to 0.01 mm count as the same slice position
_ORIENTATION_DECIMALS = 4


@dataclass(frozen=True)
class DicomSeries:
    """The images of one volume (or one 2D image): a series, or one part of a split series.

    Attributes
    ----------
    folder : Path
        Deepest folder holding all of its files.
    series_uid : str
        SeriesInstanceUID.
    frames : tuple of DicomFrame
        Its images, in the order found (assembly sorts them by position).
    part : int
        1-based index of this volume within its series (1 when not split).
    n_parts : int
        How many volumes the series was split into.
    split_reason : str
        Why the series was split (empty when it was not).
    notes : tuple of str
        Images of the series left out, and why.
    refused : str
        Why the series cannot be read (file, tag, reason, fix); empty when it can. A refused
        series is listed by ``medimg dicom ls``, reported by ``medimg convert`` and never
        read, converted or chosen.
    """

    folder: Path
    series_uid: str
    frames: tuple[DicomFrame, ...]
    part: int = 1
    n_parts: int = 1
    split_reason: str = ""
    notes: tuple[str, ...] = field(default=())
    refused: str = ""

    @property
    def dataset(self) -> Any:
        """Header of the first image (pydicom Dataset)."""
        return self.frames[0].dataset

    @property
    def modality(self) -> str:
        """Modality (CT, MR, CR, DX...)."""
        return str(self.dataset.get("Modality", "") or "")

    @property
    def description(self) -> str:
        """SeriesDescription (empty when absent)."""
        return str(self.dataset.get("SeriesDescription", "") or "")

    @property
    def series_number(self) -> int:
        """SeriesNumber (0 when absent)."""
        try:
            return int(self.dataset.get("SeriesNumber", 0) or 0)
        except (TypeError, ValueError):
            return 0

    @property
    def label(self) -> str:
        """Short name for messages: ``series 3 'T1 SAG' (volume 2 of 2, split by echo)``."""
        text = f"series {self.series_number} {self.description!r} ({self.series_uid})"
        if self.n_parts > 1:
            text += f" volume {self.part} of {self.n_parts} ({self.split_reason})"
        return text

    @property
    def is_projection(self) -> bool:
        """A 2D projection image without patient position (CR, DX, MG... X-ray)."""
        first = self.frames[0]
        return not self.refused and (first.position_lps is None or first.orientation is None)

    def check_readable(self) -> None:
        """Raise the refusal of a refused series.

        Raises
        ------
        DicomSeriesError
            When :attr:`refused` is set; the message names the folder, the series, the file,
            the tag and the fix.
        """
        if self.refused:
            raise DicomSeriesError(f"{self.folder}: {self.label}: refused: {self.refused}")

    @property
    def stem(self) -> str:
        """File-name stem for outputs: ``s003_t1_sag`` or ``s003_t1_sag_v2``."""
        words = "".join(c if c.isalnum() else "_" for c in self.description.lower()).strip("_")
        stem = f"s{self.series_number:03d}" + (f"_{words}" if words else "")
        stem = "_".join(part for part in stem.split("_") if part)
        return f"{stem}_v{self.part}" if self.n_parts > 1 else stem


@dataclass(frozen=True)
class DicomScan:
    """Everything found under a folder.

    Attributes
    ----------
    root : Path
        The folder scanned.
    series : tuple of DicomSeries
        Volume candidates, ordered by series number, then part.
    left_out : tuple of str
        ``"<file or series>: <reason>"`` for each file or series that is not a candidate.
    """

    root: Path
    series: tuple[DicomSeries, ...]
    left_out: tuple[str, ...]


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
    broken: list[_Broken] = []
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
            series.extend(_split_series(uid, frames, left_out, mine))
    series.sort(key=lambda s: (s.series_number, s.series_uid, s.part))
    logger.debug("%s: %d volume candidates, %d left out", root, len(series), len(left_out))
    return DicomScan(root=root, series=tuple(series), left_out=tuple(left_out))


@dataclass(frozen=True)
class _Broken:
    """A DICOM file that is cut short or unreadable; ``uid`` is its series when it was read."""

    path: Path
    reason: str
    uid: str | None


def _read_frames(
    path: Path, pixels: bool, left_out: list[str], broken: list[_Broken]
) -> list[DicomFrame]:
    """The images of one file, or none (the reason is added to ``left_out``/``broken``)."""
    failed: list[tuple[Path, str]] = []
    ds = read_header(path, pixels=pixels, left_out=left_out, broken=failed)
    broken.extend(_Broken(p, reason, None) for p, reason in failed)
    if ds is None:
        return []
    cut = truncation(ds, path, pixels=pixels)
    if cut:
        left_out.append(f"{path}: {cut}; re-copy the file")
        uid = str(ds.get("SeriesInstanceUID", "") or "") or None
        broken.append(_Broken(path, cut, uid))
        return []
    header_end = header_extent(ds)
    undecodable = decode_values(ds)
    reason = not_an_image(ds)
    if reason:
        left_out.append(f"{path}: {reason}")
        return []
    return frames_of(ds, path, undecodable + header_problems(ds, path, header_end))


def _broken_of(
    uid: str, frames: Sequence[DicomFrame], broken: Sequence[_Broken], uids: set[str]
) -> list[_Broken]:
    """Broken files that belong (or, series unknown, may belong) to the series ``uid``.

    A file whose series could not be read (or whose SeriesInstanceUID is itself cut short
    and matches no series) counts for every series with an image in the same folder: a slice
    cut from either end of a stack leaves no gap to notice.
    """
    folders = {f.path.parent for f in frames}
    return [b for b in broken if b.uid == uid or (b.uid not in uids and b.path.parent in folders)]


def _refusal(frames: Sequence[DicomFrame], broken: Sequence[_Broken]) -> str:
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


def _missing_geometry(frames: Sequence[DicomFrame]) -> str:
    modality = str(frames[0].dataset.get("Modality", "") or "")
    if modality.upper() in PROJECTION_MODALITIES:
        # a projection image without position is read as 2D; one with position is a slice
        frames = [f for f in frames if f.position_lps is not None and f.orientation is not None]
    lacking = [f for f in frames if f.missing]
    if not lacking:
        return ""
    first = lacking[0]
    return (
        f"{first.path}: {' and '.join(first.missing)} "
        f"{'is' if len(first.missing) == 1 else 'are'} missing ({len(lacking)} of "
        f"{len(frames)} images lack geometry); a {modality or 'no-Modality'} slice must have "
        "ImagePositionPatient, ImageOrientationPatient and PixelSpacing to be placed in a "
        f"volume, and only projection modalities ({', '.join(sorted(PROJECTION_MODALITIES))}) "
        "are read as 2D: the geometry is not guessed. Re-export the series with its geometry "
        f"from the scanner or PACS (or correct {tag_label('Modality')} if this is a "
        "radiograph)"
    )


# --------------------------------------------------------------------------------------------
# splitting a series into volumes


def _folder_of(frames: Sequence[DicomFrame]) -> Path:
    parents = {f.path.parent for f in frames}
    if len(parents) == 1:
        return parents.pop()
    import os

    return Path(os.path.commonpath([str(p) for p in parents]))


def _split_series(
    uid: str, frames: list[DicomFrame], left_out: list[str], broken: Sequence[_Broken]
) -> list[DicomSeries]:
    notes: list[str] = []
    localizers = [f for f in frames if "LOCALIZER" in (t.upper() for t in f.image_type)]
    if localizers:
        notes.append(f"{len(localizers)} LOCALIZER image(s) left out")
        frames = [f for f in frames if f not in localizers]
    if not frames:
        left_out.append(f"series {uid}: only localizer images ({len(localizers)})")
        return []
    refused = _refusal(frames, broken)
    if refused:
        logger.info("series %s refused: %s", uid, refused)
        series = DicomSeries(_folder_of(frames), uid, tuple(frames), notes=tuple(notes))
        return [replace(series, refused=refused)]
    if any(f.position_lps is None or f.orientation is None for f in frames):
        # projection images (X-ray): each image is its own 2D "volume"
        return _parts(uid, [[f] for f in frames], "one 2D image each", notes)
    groups: list[tuple[list[DicomFrame], list[str]]] = [(frames, [])]
    for name, key in (("image orientation", _orientation_key), ("echo", _echo_key)):
        new_groups: list[tuple[list[DicomFrame], list[str]]] = []
        for frames_, reasons in groups:
            split = _split_by(frames_, key)
            tags = [*reasons, name] if len(split) > 1 else reasons
            new_groups.extend((part, tags) for part in split)
        groups = new_groups
    final: list[list[DicomFrame]] = []
    reasons_all: set[str] = set()
    for group, reasons in groups:
        parts, reason = _split_repeated_positions(group)
        final.extend(parts)
        reasons_all.update(reasons)
        if reason:
            reasons_all.add(reason)
    return _parts(uid, final, "split by " + " and ".join(sorted(reasons_all)), notes)


def _parts(
    uid: str, groups: list[list[DicomFrame]], reason: str, notes: list[str]
) -> list[DicomSeries]:
    n = len(groups)
    return [
        DicomSeries(
            folder=_folder_of(group),
            series_uid=uid,
            frames=tuple(group),
            part=i + 1,
            n_parts=n,
            split_reason=reason if n > 1 else "",
            notes=tuple(notes),
        )
        for i, group in enumerate(groups)
    ]


def _orientation_key(frame: DicomFrame) -> object:
    return tuple(round(v, _ORIENTATION_DECIMALS) + 0.0 for v in frame.orientation or ())


def _echo_key(frame: DicomFrame) -> object:
    return frame.echo


def _position_key(frame: DicomFrame) -> object:
    return tuple(round(v, _POSITION_DECIMALS) + 0.0 for v in frame.position_lps or ())


def _instance_key(frame: DicomFrame) -> tuple[str, int | None]:
    """The image's identity: the same SOPInstanceUID twice is a copy, not a time point."""
    return (str(frame.dataset.get("SOPInstanceUID", frame.path)), frame.frame_index)


def _sort_value(value: object) -> tuple[int, float, str]:
    try:
        return (0, float(str(value).split("\\")[0]), "")
    except ValueError:
        return (1, 0.0, str(value))


def _split_by(
    frames: Iterable[DicomFrame], key: Callable[[DicomFrame], object]
) -> list[list[DicomFrame]]:
    groups: dict[object, list[DicomFrame]] = defaultdict(list)
    for frame in frames:
        groups[key(frame)].append(frame)
    return [groups[k] for k in sorted(groups, key=_sort_value)]


def _has_repeats(frames: Sequence[DicomFrame]) -> bool:
    return len({_position_key(f) for f in frames}) < len(frames)


def _split_repeated_positions(
    frames: list[DicomFrame],
) -> tuple[list[list[DicomFrame]], str]:
    """Split a group whose slice positions repeat into volumes (a 4D acquisition).

    A split is kept only when it removes every repeat and leaves more than one slice in each
    volume, and never when the repeats are copies of the same image (same SOPInstanceUID);
    otherwise the group is returned whole and assembly reports the duplicates.
    """
    if not _has_repeats(frames):
        return [frames], ""
    for name, key in (
        ("temporal position", lambda f: f.temporal),
        ("acquisition number", lambda f: f.acquisition),
    ):
        parts = _split_by(frames, key)
        if len(parts) > 1 and all(len(p) > 1 and not _has_repeats(p) for p in parts):
            return parts, name
    by_position = _split_by(frames, _position_key)
    counts = {len(p) for p in by_position}
    copies = len({_instance_key(f) for f in frames}) < len(frames)
    if len(by_position) > 1 and len(counts) == 1 and counts != {1} and not copies:
        (k,) = counts
        ordered = [sorted(p, key=lambda f: (f.instance, str(f.path))) for p in by_position]
        return [[p[i] for p in ordered] for i in range(k)], "acquisition order (repeated positions)"
    return [frames], ""
