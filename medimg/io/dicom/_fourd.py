"""4D DICOM series (fMRI, diffusion, perfusion): the time points of one stack as one volume.

Discovery splits a stack whose slice positions repeat into time points
(:attr:`~medimg.io.dicom.DicomSeries.time_point`). :func:`time_groups` gathers them again and
:func:`read_4d` reads them as one :class:`~medimg.io.Volume` whose channel axis is time:
``(T, X, Y, Z)``, the layout ``medimg.io.load_volume(path, ndim=None)`` gives a 4D NIfTI, so a
4D series written by ``medimg convert`` reads back unchanged. 3D readers are not affected:
``load_dicom_series`` still returns one time point, chosen by the selection rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medimg.errors import DicomSeriesError, ImageTooLargeError
from medimg.io.dicom._series import DicomSeries
from medimg.io.dicom.options import DicomReadOptions
from medimg.io.volume import Volume

__all__ = ["read_4d", "time_groups"]

_AFFINE_TOLERANCE_MM = 1e-3


def time_groups(series: Sequence[DicomSeries]) -> list[list[DicomSeries]]:
    """Candidates grouped: the time points of one stack together (in time order), others alone.

    Refused candidates stay alone. Order follows ``series`` (first member of each group).
    """
    groups: dict[tuple[str, int], list[DicomSeries]] = {}
    out: list[list[DicomSeries]] = []
    for s in series:
        if s.refused or s.time_points < 2 or s.is_projection:
            out.append([s])
            continue
        key = (s.series_uid, s.stack)
        if key not in groups:
            groups[key] = []
            out.append(groups[key])
        groups[key].append(s)
    for group in out:
        group.sort(key=lambda s: s.time_point)
    return out


def read_4d(parts: Sequence[DicomSeries], options: DicomReadOptions | None = None) -> Volume:
    """Read the time points of one stack as a ``(T, X, Y, Z)`` volume (time as channels).

    Parameters
    ----------
    parts : sequence of DicomSeries
        One group of :func:`time_groups`, in time order (a single part gives ``T = 1``).
    options : DicomReadOptions, optional
        As for 3D reading; the memory limit applies to the whole 4D array.

    Returns
    -------
    Volume
        ``(T, X, Y, Z)`` on the grid of the first time point.

    Raises
    ------
    DicomSeriesError
        When a time point fails its checks or lies on another grid than the first (the
        message names both); ImageTooLargeError when the 4D array exceeds the limit.
    """
    from medimg.io.dicom.reading import read_series

    options = options or DicomReadOptions()
    volumes: list[Volume] = []
    for part in parts:
        volume = read_series(part, options)
        if volumes:
            _check_same_grid(volumes[0], volume, parts[0], part)
        volumes.append(volume)
        needed = sum(v.array.nbytes for v in volumes) * len(parts) // len(volumes)
        if needed > options.decode_limit_bytes():
            raise ImageTooLargeError(
                f"{part.folder}: {part.label}: {len(parts)} time points of "
                f"{volume.array.shape[1:]} voxels need about {needed / 1024**3:.2f} GiB, over "
                f"the limit of {options.decode_limit_bytes() / 1024**3:.2f} GiB; raise it "
                "(max_bytes=, --max-memory-gb) or write the time points apart (--split-4d)"
            )
    first = volumes[0]
    dtype = np.result_type(*[v.array.dtype for v in volumes])
    array = np.concatenate([v.array.astype(dtype, copy=False) for v in volumes], axis=0)
    return Volume(array=array, affine=first.affine, source=first.source)


def _check_same_grid(first: Volume, other: Volume, a: DicomSeries, b: DicomSeries) -> None:
    same_shape = first.array.shape[1:] == other.array.shape[1:]
    if same_shape and np.allclose(first.affine, other.affine, atol=_AFFINE_TOLERANCE_MM):
        return
    raise DicomSeriesError(
        f"{b.folder}: {b.label}: every time point of a 4D series must lie on one grid; time "
        f"point {b.time_point} is {other.array.shape[1:]} with affine "
        f"{np.round(other.affine, 3).tolist()}, time point {a.time_point} is "
        f"{first.array.shape[1:]} with {np.round(first.affine, 3).tolist()}; convert with "
        "--split-4d to write each time point on its own grid"
    )
