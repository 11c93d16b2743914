"""DICOM SEG: label maps out (:func:`write_seg`) and in (:func:`read_seg`), with highdicom.

Writing
-------
:func:`write_seg` turns a label map on a DICOM series' grid into a Segmentation that refers to
that series: its frame of reference, every source instance (one frame per source slice, in
the slice order medimg's reader stacked them, so the frames lie on the source geometry), and
patient and study copied from the source. Segment ``k`` is label value ``k``; its label is the
label's name, its codes come from a mapping file or medimg's SNOMED CT table of common organs
(:mod:`medimg.io.dicom._seg_codes`), and the algorithm (name, version, and the model's
sha256 as an AlgorithmParameters entry) is recorded when given. ``BINARY`` is the default
(1 bit per pixel, read by every SEG viewer); ``LABELMAP`` (Label Map Segmentation Storage,
one frame per slice, RLE-compressed) on request.

Empty segments and frames: every label the model or the names declare is a segment, also
when the label map holds none of it, so segment numbers stay the label values (BINARY needs
1..N) and a reader learns that the label was looked for and not found. Every frame is written,
empty ones too (``omit_empty_frames=False``): a SEG that leaves them out cannot say where its
source's first and last slices lie, and medimg reads SEGs without their source images. The
cost is ``rows x columns / 8`` bytes per slice and segment for BINARY (32 KiB for 512 x 512).

Reading
-------
:func:`read_seg` (and :func:`medimg.io.load_volume`, which dispatches SEG files here) gives
the label map on the grid of the referenced series, resolved from the SEG's own plane
positions, orientation and pixel spacing (:mod:`medimg.io.dicom._seg_read`). Overlapping
segments are refused by default (``overlap="error"``): a label map has one label per voxel,
and letting one segment silently hide another would lose a structure; the message names the
segments and how many voxels they share. :func:`read_seg_segments` returns one mask per
segment for such files.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError, ImageReadError
from medimg.io.dicom._seg_codes import SegmentCodes, label_codes, load_mapping
from medimg.io.dicom._seg_read import (
    SegmentInfo,
    decode_seg,
    is_seg_file,
    read_seg_dataset,
    seg_grid,
    seg_segments,
)
from medimg.io.dicom._seg_reference import ReferenceSeries, quiet_highdicom, reference_series
from medimg.io.dicom._seg_write import descriptions, label_values, on_grid
from medimg.io.geometry import SourceGeometry
from medimg.io.volume import Volume, default_max_bytes
from medimg.typing import PathLike

__all__ = [
    "AlgorithmInfo",
    "SegOptions",
    "SegWritten",
    "SegmentInfo",
    "is_seg_file",
    "load_seg_volume",
    "read_seg",
    "read_seg_header",
    "read_seg_segments",
    "seg_info",
    "write_seg",
]

logger = logging.getLogger(__name__)

OverlapPolicy = Literal["error"]


@dataclass(frozen=True, kw_only=True)
class AlgorithmInfo:
    """The algorithm that made a segmentation: name, version and the model's SHA-256."""

    name: str
    version: str
    sha256: str = ""


@dataclass(frozen=True, kw_only=True)
class SegOptions:
    """How a SEG is written.

    Attributes
    ----------
    segmentation_type : {"binary", "labelmap"}
        BINARY (default) or LABELMAP.
    algorithm : AlgorithmInfo, optional
        Recorded as the segments' algorithm (``AUTOMATIC``); without it the segments are
        recorded as ``MANUAL`` (a label map of unknown origin).
    series_number : int
        SeriesNumber of the SEG series.
    series_description : str
        SeriesDescription of the SEG series.
    """

    segmentation_type: str = "binary"
    algorithm: AlgorithmInfo | None = None
    series_number: int = 300
    series_description: str = "medimg segmentation"

    def __post_init__(self) -> None:
        if self.segmentation_type not in ("binary", "labelmap"):
            raise ConfigError(
                f"segmentation_type must be binary or labelmap, got {self.segmentation_type!r}"
            )


@dataclass(frozen=True)
class SegWritten:
    """A written SEG: where, its UIDs, its segments and their voxel counts."""

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    segments: dict[int, SegmentCodes]
    voxels: dict[int, int]
    voxel_volume_mm3: float
    reference: ReferenceSeries
    dataset: Any = field(repr=False, compare=False)


def write_seg(
    labels: Volume | PathLike,
    reference: PathLike | ReferenceSeries,
    out: PathLike,
    *,
    names: Mapping[int, str] | None = None,
    mapping: PathLike | Mapping[str, Any] | None = None,
    options: SegOptions | None = None,
    overwrite: bool = False,
    volumes_sr: PathLike | None = None,
) -> SegWritten:
    """Write a label map on a DICOM series' grid as a DICOM SEG referring to that series.

    Parameters
    ----------
    labels : Volume or path-like
        Integer label map (0 background) on the series' grid (any axis order of it); a
        path is read with :func:`medimg.io.load_volume`.
    reference : path-like or ReferenceSeries
        Folder holding the one source series.
    out : path-like
        The SEG file to write (atomically).
    names : mapping of int to str, optional
        Label value -> name (the segment labels); values 1..max of these become segments.
    mapping : path-like or mapping, optional
        A mapping file (see :mod:`medimg.io.dicom._seg_codes`) for names and codes.
    options : SegOptions, optional
        Segmentation type, algorithm, series number and description.
    overwrite : bool
        Replace an existing ``out`` (and ``volumes_sr``).
    volumes_sr : path-like, optional
        Also write the segments' volumes there as SR (:func:`~medimg.io.dicom.sr.
        write_volumes_sr`), before the SEG is renamed into place: a SEG on disk has its SR.

    Returns
    -------
    SegWritten

    Raises
    ------
    GeometryError
        When the label map is not on the reference grid.
    DicomSeriesError
        When the reference folder is not one usable series.
    ConfigError
        For a label without a name or codes (outside the mapping), non-integer labels,
        or BINARY segment numbers that are not 1..N.
    OutputExistsError
        When ``out`` exists and ``overwrite`` is false.
    """
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    import medimg
    from medimg.io.volume import load_volume
    from medimg.io.writing import atomic_path

    options = options or SegOptions()
    ref = reference if isinstance(reference, ReferenceSeries) else reference_series(reference)
    volume = labels if isinstance(labels, Volume) else load_volume(labels)
    where = str(volume.source.path)
    array = on_grid(volume, ref, where)
    present = label_values(array, where)
    table = load_mapping(mapping if isinstance(mapping, Mapping | None) else Path(mapping))
    names = dict(names or {})
    declared = set(names) | {int(k) for k in table if k.isdigit()} | set(present)
    numbers = list(range(1, max(declared, default=0) + 1))
    if options.segmentation_type == "labelmap":
        numbers = sorted(declared)
    missing = [v for v in numbers if v not in declared]
    if missing:
        raise ConfigError(
            f"{where}: BINARY SEG segment numbers run 1..N, so every label value up to "
            f"{numbers[-1]} needs a name; {missing} have none: name them or write "
            "segmentation_type='labelmap' (--type labelmap)"
        )
    if not numbers:
        raise ConfigError(f"{where}: the label map holds no label and no names declare any")
    codes = label_codes(numbers, names, table, where=where)
    dtype = np.uint8 if numbers[-1] < 256 else np.uint16
    pixels = np.ascontiguousarray(array.astype(dtype).transpose(2, 1, 0))  # (frames, rows, cols)
    if ref.frame_order:  # a multi-frame source: its frames in file order
        in_file = np.empty_like(pixels)
        in_file[ref.frame_order] = pixels
        pixels = in_file
    labelmap = options.segmentation_type == "labelmap"
    with warnings.catch_warnings(record=True) as caught, quiet_highdicom():
        warnings.simplefilter("always")
        seg = hd.seg.Segmentation(
            source_images=ref.datasets, pixel_array=pixels,
            segmentation_type="LABELMAP" if labelmap else "BINARY",
            segment_descriptions=descriptions(codes, options),
            series_instance_uid=hd.UID(), series_number=options.series_number,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medimg",
            manufacturer_model_name=options.algorithm.name if options.algorithm else "medimg",
            software_versions=medimg.__version__, device_serial_number="none",
            series_description=options.series_description, omit_empty_frames=False,
            transfer_syntax_uid=RLELossless if labelmap else ExplicitVRLittleEndian,
        )  # fmt: skip
    for warning in caught:  # highdicom's advice on the source's values, first sentence
        logger.warning("%s: highdicom: %s", ref.folder, str(warning.message).split(". ")[0])
    counts = np.bincount(array.astype(np.int64).ravel(), minlength=numbers[-1] + 1)
    written = SegWritten(
        Path(out), str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID), codes,
        {n: int(counts[n]) for n in numbers}, float(np.prod(ref.geometry.spacing_mm)), ref, seg,
    )  # fmt: skip
    with atomic_path(out, overwrite=overwrite) as tmp:
        seg.save_as(tmp)
        if volumes_sr is not None:
            from medimg.io.dicom.sr import write_volumes_sr

            write_volumes_sr(written, volumes_sr, algorithm=options.algorithm, overwrite=overwrite)
    logger.info("wrote %s: %d segments on %s", out, len(numbers), ref.folder)
    return written


def read_seg_header(path: PathLike) -> SourceGeometry:
    """The grid :func:`read_seg` returns, from the SEG's headers (no pixel data read).

    Raises
    ------
    ImageReadError
        When the file is no SEG or its frames do not form one grid.
    """
    path = Path(path)
    return seg_grid(read_seg_dataset(path, pixels=False), path)[0]


def seg_info(path: PathLike) -> tuple[SegmentInfo, ...]:
    """The segments a SEG file describes (headers only)."""
    return seg_segments(read_seg_dataset(Path(path), pixels=False))


def read_seg(
    path: PathLike, *, overlap: OverlapPolicy = "error", max_bytes: int | None = None
) -> Volume:
    """Read a SEG file as a label map on its referenced grid.

    Parameters
    ----------
    path : path-like
        A DICOM SEG file (BINARY, FRACTIONAL: at least half the maximum, or LABELMAP).
    overlap : {"error"}
        Segments that share voxels are refused (see the module docstring).
    max_bytes : int, optional
        Decode limit; default :func:`~medimg.io.default_max_bytes`.

    Returns
    -------
    Volume
        ``(1, columns, rows, slices)`` uint8 (uint16 past 255 segments), each voxel its
        segment number (0 outside every segment); source format ``"dicom-seg"``.

    Raises
    ------
    ImageReadError
        For a file that is no SEG, is inconsistent, or has overlapping segments.
    ImageTooLargeError
        When it would decode to more than ``max_bytes``.
    """
    path = Path(path)
    if overlap != "error":
        raise ConfigError(f"overlap must be 'error', got {overlap!r}")
    decoded = decode_seg(path, default_max_bytes() if max_bytes is None else max_bytes)
    geometry = decoded.geometry
    labels = np.zeros(geometry.shape, dtype=np.dtype(geometry.dtype))
    shared: Counter[tuple[int, int]] = Counter()
    first: dict[tuple[int, int], tuple[int, int, int]] = {}
    for number, k, plane in decoded.planes():
        current = labels[:, :, k]
        clash = plane & (current != 0) & (current != number)
        if clash.any():
            for other in np.unique(current[clash]).tolist():
                pair = (min(int(other), number), max(int(other), number))
                where_clash = clash & (current == other)
                shared[pair] += int(np.count_nonzero(where_clash))
                x, y = np.argwhere(where_clash)[0]
                first.setdefault(pair, (int(x), int(y), k))
        current[plane] = number
    if shared:
        named = {s.number: s.label for s in decoded.segments}
        listing = "; ".join(
            f"{a} {named.get(a, '')!r} and {b} {named.get(b, '')!r} share {n} voxels "
            f"(first at voxel {first[(a, b)]})"
            for (a, b), n in sorted(shared.items())
        )
        raise ImageReadError(
            f"{path}: its segments overlap ({listing}); a label map holds one label per voxel, "
            "and medimg refuses to let one segment hide another: read the masks one by one "
            "with medimg.io.dicom.seg.read_seg_segments, or split the SEG into files whose "
            "segments do not overlap"
        )
    return Volume(array=labels[np.newaxis], affine=geometry.affine, source=geometry)


def read_seg_segments(
    path: PathLike, *, max_bytes: int | None = None
) -> tuple[SourceGeometry, tuple[SegmentInfo, ...], dict[int, NDArray[np.bool_]]]:
    """Each segment of a SEG as its own ``(X, Y, Z)`` mask on the referenced grid.

    Overlapping segments are fine here. Memory is one boolean volume per segment.

    Raises
    ------
    ImageReadError, ImageTooLargeError
        As :func:`read_seg`, except for overlaps.
    """
    path = Path(path)
    decoded = decode_seg(path, default_max_bytes() if max_bytes is None else max_bytes)
    masks = {s.number: np.zeros(decoded.geometry.shape, dtype=bool) for s in decoded.segments}
    for number, k, plane in decoded.planes():
        masks[number][:, :, k] |= plane
    return decoded.geometry, decoded.segments, masks


def load_seg_volume(path: Path, *, ndim: int | None, max_bytes: int) -> Volume:
    """:func:`read_seg` under :func:`medimg.io.load_volume`'s ``ndim`` rule (its dispatch)."""
    from medimg.io._policies import squeeze_geometry, to_channel_first

    volume = read_seg(path, max_bytes=max_bytes)
    array = to_channel_first(volume.array[0], volume.source, ndim)
    geometry = squeeze_geometry(volume.source, array.ndim - 1)
    return Volume(array=array, affine=geometry.affine, source=geometry)
