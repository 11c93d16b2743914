"""Find DICOM images under a folder and group them into volumes.

A folder straight from an archive mixes series, and one series can hold several volumes.
:func:`scan_dicom_folder` reads every file's header (recursively, or the files a ``DICOMDIR``
lists), groups images by SeriesInstanceUID and splits a series further where it is more than one
volume: by image orientation, by echo, and, when slice positions repeat, by temporal position,
by acquisition number or (as a last resort) by acquisition order. Each split and each file left
out is recorded with its reason, so ``medimg dicom ls`` can show it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.errors import DicomSeriesError
from medimg.io.dicom._files import candidate_files, not_an_image, read_header
from medimg.io.dicom._frames import DicomFrame, frames_of
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
    """

    folder: Path
    series_uid: str
    frames: tuple[DicomFrame, ...]
    part: int = 1
    n_parts: int = 1
    split_reason: str = ""
    notes: tuple[str, ...] = field(default=())

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
        """A 2D image without patient position (CR/DX X-ray, secondary capture)."""
        return self.frames[0].position_lps is None or self.frames[0].orientation is None

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
    by_series: dict[str, list[DicomFrame]] = defaultdict(list)
    for path in candidate_files(root, left_out):
        ds = read_header(path, pixels=pixels, left_out=left_out)
        if ds is None:
            continue
        reason = not_an_image(ds)
        if reason:
            left_out.append(f"{path}: {reason}")
            continue
        for frame in frames_of(ds, path):
            by_series[frame.series_uid].append(frame)
    if not by_series:
        raise DicomSeriesError(
            f"{root}: holds no DICOM image ({len(left_out)} files left out"
            + (f", e.g. {left_out[0]}" if left_out else "")
            + "); point to the folder that holds the series' .dcm files"
        )
    series: list[DicomSeries] = []
    for uid, frames in by_series.items():
        series.extend(_split_series(uid, frames, left_out))
    series.sort(key=lambda s: (s.series_number, s.series_uid, s.part))
    logger.debug("%s: %d volume candidates, %d left out", root, len(series), len(left_out))
    return DicomScan(root=root, series=tuple(series), left_out=tuple(left_out))


# --------------------------------------------------------------------------------------------
# splitting a series into volumes


def _folder_of(frames: Sequence[DicomFrame]) -> Path:
    parents = {f.path.parent for f in frames}
    if len(parents) == 1:
        return parents.pop()
    import os

    return Path(os.path.commonpath([str(p) for p in parents]))


def _split_series(uid: str, frames: list[DicomFrame], left_out: list[str]) -> list[DicomSeries]:
    notes: list[str] = []
    localizers = [f for f in frames if "LOCALIZER" in (t.upper() for t in f.image_type)]
    if localizers:
        notes.append(f"{len(localizers)} LOCALIZER image(s) left out")
        frames = [f for f in frames if f not in localizers]
    if not frames:
        left_out.append(f"series {uid}: only localizer images ({len(localizers)})")
        return []
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
