"""Split the images of one SeriesInstanceUID into volumes, recording why.

A series is split by image orientation, echo and series number (two series sharing one UID)
into *stacks*; a stack whose slice positions repeat is split further into *time points*: by
image type (an ORIGINAL and a DERIVED copy of one acquisition), temporal position,
acquisition number, acquisition time or, as a last resort, acquisition order. A split is kept
only when it removes every repeat; otherwise the stack stays whole and assembly refuses it,
saying how the images at the repeated position differ.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from medimg.io.dicom._frames import DicomFrame
from medimg.io.dicom._refusals import Broken, refusal
from medimg.io.dicom._series import DicomSeries

__all__ = ["position_key", "split_series"]

logger = logging.getLogger(__name__)

_POSITION_DECIMALS = 2  # positions equal to 0.01 mm count as the same slice position
_ORIENTATION_DECIMALS = 4

_Group = tuple[list[DicomFrame], list[str]]


def _folder_of(frames: Sequence[DicomFrame]) -> Path:
    parents = {f.path.parent for f in frames}
    if len(parents) == 1:
        return parents.pop()
    return Path(os.path.commonpath([str(p) for p in parents]))


def split_series(
    uid: str, frames: list[DicomFrame], left_out: list[str], broken: Sequence[Broken]
) -> list[DicomSeries]:
    """The volume candidates of the images of one SeriesInstanceUID (see the module doc)."""
    notes: list[str] = []
    localizers = [f for f in frames if "LOCALIZER" in (t.upper() for t in f.image_type)]
    if localizers:
        notes.append(f"{len(localizers)} LOCALIZER image(s) left out")
        frames = [f for f in frames if f not in localizers]
    if not frames:
        left_out.append(f"series {uid}: only localizer images ({len(localizers)})")
        return []
    refused = refusal(frames, broken)
    if refused:
        logger.info("series %s refused: %s", uid, refused)
        series = DicomSeries(_folder_of(frames), uid, tuple(frames), notes=tuple(notes))
        return [replace(series, refused=refused)]
    if any(f.position_lps is None or f.orientation is None for f in frames):
        # projection images (X-ray): each image is its own 2D "volume"
        groups = [[f] for f in frames]
        return _parts(uid, [(g, 1, 0, 1) for g in groups], "one 2D image each", notes)
    stacks: list[_Group] = [(frames, [])]
    for name, key in (
        ("image orientation", _orientation_key),
        ("echo", _echo_key),
        ("series number", _series_number_key),
    ):
        new: list[_Group] = []
        for frames_, reasons in stacks:
            split = _split_by(frames_, key)
            tags = [*reasons, name] if len(split) > 1 else reasons
            new.extend((part, tags) for part in split)
        stacks = new
    final: list[tuple[list[DicomFrame], int, int, int]] = []
    reasons_all: set[str] = set()
    for stack, (group, reasons) in enumerate(stacks, start=1):
        parts, reason = _split_repeated_positions(group)
        n_time = len(parts)
        for t, part in enumerate(parts, start=1):
            final.append((part, stack, t if n_time > 1 else 0, n_time))
        reasons_all.update(reasons)
        if reason:
            reasons_all.add(reason)
    return _parts(uid, final, "split by " + " and ".join(sorted(reasons_all)), notes)


def _parts(
    uid: str,
    groups: list[tuple[list[DicomFrame], int, int, int]],
    reason: str,
    notes: list[str],
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
            stack=stack,
            time_point=time_point,
            time_points=time_points,
        )
        for i, (group, stack, time_point, time_points) in enumerate(groups)
    ]


def _series_number_key(frame: DicomFrame) -> object:
    return str(frame.dataset.get("SeriesNumber", "") or "")


def _orientation_key(frame: DicomFrame) -> object:
    return tuple(round(v, _ORIENTATION_DECIMALS) + 0.0 for v in frame.orientation or ())


def _echo_key(frame: DicomFrame) -> object:
    return frame.echo


def position_key(frame: DicomFrame) -> tuple[float, ...]:
    """ImagePositionPatient rounded to 0.01 mm: equal keys are one slice position."""
    return tuple(round(v, _POSITION_DECIMALS) + 0.0 for v in frame.position_lps or ())


def _instance_key(frame: DicomFrame) -> tuple[str, int | None, tuple[int, int] | None]:
    """The image's identity: the same SOPInstanceUID twice is a copy, not a time point."""
    uid = str(frame.dataset.get("SOPInstanceUID", frame.path))
    return (uid, frame.frame_index, frame.tile)


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
    return len({position_key(f) for f in frames}) < len(frames)


_TIME_KEYS: tuple[tuple[str, Callable[[DicomFrame], object]], ...] = (
    ("image type", lambda f: "\\".join(f.image_type)),
    ("temporal position", lambda f: f.temporal),
    ("acquisition number", lambda f: f.acquisition),
    ("acquisition time", lambda f: f.acquired),
)


def _split_repeated_positions(
    frames: list[DicomFrame],
) -> tuple[list[list[DicomFrame]], str]:
    """Split a stack whose slice positions repeat into volumes (a 4D acquisition).

    A split is kept only when it removes every repeat and leaves more than one slice in each
    volume, and never when the repeats are copies of the same image (same SOPInstanceUID);
    otherwise the stack is returned whole and assembly reports the duplicates.
    """
    if not _has_repeats(frames):
        return [frames], ""
    for name, key in _TIME_KEYS:
        parts = _split_by(frames, key)
        if len(parts) > 1 and all(len(p) > 1 and not _has_repeats(p) for p in parts):
            return parts, name
    by_position = _split_by(frames, position_key)
    counts = {len(p) for p in by_position}
    copies = len({_instance_key(f) for f in frames}) < len(frames)
    if len(by_position) > 1 and len(counts) == 1 and counts != {1} and not copies:
        (k,) = counts
        ordered = [
            sorted(p, key=lambda f: (f.instance, str(f.path), f.tile or (0, 0)))
            for p in by_position
        ]
        return [[p[i] for p in ordered] for i in range(k)], "acquisition order (repeated positions)"
    return [frames], ""
