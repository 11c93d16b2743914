"""Turn a checked DICOM slice stack into a :class:`~medimg.io.Volume`.

Pixel data are decoded per file (uncompressed little-endian data straight from the file
buffer; compressed transfer syntaxes through pydicom's decoders, see :mod:`medimg.io.dicom`),
MONOCHROME1 is inverted so that higher always means brighter, and the modality LUT
(RescaleSlope/Intercept) is applied: CT comes out in Hounsfield units. The output dtype is the
stored integer type when no rescale is needed, the smallest signed integer that holds the
values when the rescale is integral (``int16`` for usual CT), otherwise float32.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import DicomSeriesError, ImageTooLargeError
from medimg.io.dicom._frames import DicomFrame
from medimg.io.dicom._series import DicomSeries
from medimg.io.dicom._validity import convert_errors
from medimg.io.dicom.checks import StackGeometry, stack_geometry
from medimg.io.dicom.options import DicomReadOptions
from medimg.io.geometry import SourceGeometry, lps_to_ras
from medimg.io.volume import Volume

__all__ = ["assemble_volume", "decode_frames", "rescale"]

logger = logging.getLogger(__name__)


def _native_dtype(ds: Any) -> np.dtype[Any] | None:
    """Dtype for reading PixelData directly, or None when pydicom must decode it."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax.is_compressed or not syntax.is_little_endian:
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if (
        int(ds.get("SamplesPerPixel", 1) or 1) != 1
        or bits not in (8, 16, 32)
        or int(ds.get("BitsStored", bits) or bits) != bits
        or "PixelData" not in ds
    ):
        return None
    kind = "i" if int(ds.get("PixelRepresentation", 0) or 0) else "u"
    return np.dtype(f"<{kind}{bits // 8}")


def _read_deferred(ds: Any, dtype: np.dtype[Any], count: int) -> NDArray[Any] | None:
    """Pixel data not yet read (deferred): read it from the file, without keeping a copy."""
    from pydicom.dataelem import RawDataElement

    element = ds.get_item(0x7FE00010)
    filename = getattr(ds, "filename", None)
    if not isinstance(element, RawDataElement) or element.value is not None or not filename:
        return None
    if element.length < count * dtype.itemsize:
        return None  # let the caller report the truncation
    values = np.fromfile(filename, dtype=dtype, count=count, offset=element.value_tell)
    return values if values.size == count else None


def decode_frames(ds: Any, label: str) -> NDArray[Any]:
    """All frames of one file as stored values, shape ``(frames, rows, columns)``.

    Raises
    ------
    DicomSeriesError
        When the pixel data cannot be decoded (no decoder for the transfer syntax, corrupt or
        truncated data); the message names the file and the transfer syntax.
    """
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    dtype = _native_dtype(ds)
    if dtype is not None:
        count = n * rows * cols
        direct = _read_deferred(ds, dtype, count)
        if direct is not None:
            return direct.reshape(n, rows, cols)
        buffer = ds.PixelData or b""
        if len(buffer) < count * dtype.itemsize:
            raise DicomSeriesError(
                f"{label}: pixel data must hold {count * dtype.itemsize} bytes for {n} x "
                f"{rows} x {cols} pixels, found {len(buffer)}; the file is truncated, re-copy it"
            )
        if len(buffer) > count * dtype.itemsize + 1:
            raise DicomSeriesError(
                f"{label}: pixel data must hold {count * dtype.itemsize} bytes for {n} x "
                f"{rows} x {cols} pixels (NumberOfFrames x Rows (0028,0010) x Columns "
                f"(0028,0011)), found {len(buffer)}; the header does not match the pixel "
                "data: fix Rows/Columns or re-export the file"
            )
        return np.frombuffer(buffer, dtype=dtype, count=count).reshape(n, rows, cols)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    errors: tuple[type[BaseException], ...] = (RuntimeError, OSError, *convert_errors())
    try:
        array = ds.pixel_array
    except errors as exc:
        name = getattr(syntax, "name", str(syntax))
        raise DicomSeriesError(
            f"{label}: pixel data ({name}) must be decodable, got {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}; install the "
            "decoders (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
            "pylibjpeg-rle pyjpegls) or re-export the series uncompressed"
        ) from None
    if array.ndim != (3 if n > 1 else 2) or array.shape[-2:] != (rows, cols):
        raise DicomSeriesError(
            f"{label}: one grayscale sample per pixel is required, got decoded shape "
            f"{array.shape} (colour or multi-sample images are not volumes)"
        )
    return np.asarray(array).reshape(n, rows, cols)


def _read_stack(frames: tuple[DicomFrame, ...], label: str) -> NDArray[Any]:
    """Stored values of the frames, shape ``(slices, rows, columns)``, in frame order."""
    first = frames[0]
    cache: dict[Any, NDArray[Any]] = {}
    out: NDArray[Any] | None = None
    for k, frame in enumerate(frames):
        key = frame.path
        if key not in cache:
            if len(cache) > 0 and frame.frame_index is None:
                cache.clear()  # single-frame files: keep one at a time
            cache[key] = decode_frames(frame.dataset, f"{label}: {frame.path.name}")
        pixels = cache[key][frame.frame_index or 0]
        if frame.tile is not None:  # one slice of a Siemens mosaic
            row0, col0 = frame.tile
            pixels = pixels[row0 : row0 + frame.rows, col0 : col0 + frame.columns]
        if out is None:
            out = np.empty((len(frames), first.rows, first.columns), dtype=pixels.dtype)
        out[k] = pixels
    return out if out is not None else np.empty((0, first.rows, first.columns))


def _invert_monochrome1(stack: NDArray[Any], ds: Any) -> NDArray[Any]:
    if str(ds.get("PhotometricInterpretation", "")).upper() != "MONOCHROME1":
        return stack
    bits = int(ds.get("BitsStored", 0) or stack.dtype.itemsize * 8)
    if stack.dtype.kind == "i":
        return np.asarray(-1 - stack, dtype=stack.dtype)
    return np.asarray((1 << bits) - 1 - stack, dtype=stack.dtype)


def rescale(
    stack: NDArray[Any],
    slopes: NDArray[np.float64],
    intercepts: NDArray[np.float64],
    *,
    inplace: bool = False,
) -> NDArray[Any]:
    """Apply per-slice RescaleSlope/Intercept to a ``(slices, ...)`` stack of stored values.

    With ``inplace``, an integral rescale that keeps the stored dtype reuses ``stack``.

    Examples
    --------
    >>> stored = np.array([[0, 1000], [24, 3000]], dtype=np.uint16)
    >>> out = rescale(stored, np.array([1.0, 1.0]), np.array([-1024.0, -1024.0]))
    >>> out.dtype.name, out.tolist()
    ('int16', [[-1024, -24], [-1000, 1976]])
    """
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return stack
    shape = (-1,) + (1,) * (stack.ndim - 1)
    integral = np.all(slopes == 1) and np.all(intercepts == np.round(intercepts))
    low = int(stack.min()) + int(intercepts.min()) if integral else 0
    high = int(stack.max()) + int(intercepts.max()) if integral else 0
    if integral and -(2**31) <= low and high < 2**31:  # else int32 would wrap: float below
        dtype = np.int16 if -(2**15) <= low and high < 2**15 else np.int32
        out: NDArray[Any] = stack if inplace and stack.dtype == dtype else stack.astype(dtype)
        np.add(out, intercepts.astype(dtype).reshape(shape), out=out)
        return out
    values = stack.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # inf is refused by the nonfinite policy
        values *= slopes.astype(np.float32).reshape(shape)
        values += intercepts.astype(np.float32).reshape(shape)
    return values


def _check_memory(series: DicomSeries, geometry: StackGeometry, options: DicomReadOptions) -> None:
    needed = int(np.prod(geometry.shape)) * 4  # float32 worst case
    limit = options.decode_limit_bytes()
    if needed > limit:
        raise ImageTooLargeError(
            f"{series.folder}: {series.label}: decoding {geometry.shape} voxels needs up to "
            f"{needed / 1024**3:.2f} GiB, over the limit of {limit / 1024**3:.2f} GiB; if the "
            "headers are right and the memory is there, raise the limit: max_bytes= in "
            "DicomReadOptions, or --max-memory-gb in medimg convert"
        )


def assemble_volume(series: DicomSeries, options: DicomReadOptions | None = None) -> Volume:
    """Read, check and stack the slices of one series into a channel-first RAS volume.

    Parameters
    ----------
    series : DicomSeries
        One volume candidate from :func:`~medimg.io.dicom.scan_dicom_folder`.
    options : DicomReadOptions, optional
        Checks and corrections (defaults refuse tilt, uneven spacing and < 3 slices).

    Returns
    -------
    Volume
        ``(1, columns, rows, slices)`` array, voxel-to-RAS affine, and a ``"dicom"``
        :class:`~medimg.io.SourceGeometry` whose path is the series folder.

    Raises
    ------
    DicomSeriesError, ImageTooLargeError
    """
    options = options or DicomReadOptions()
    geometry = stack_geometry(series, options)
    _check_memory(series, geometry, options)
    frames = geometry.frames
    stored = _read_stack(frames, f"{series.folder}: {series.label}")
    stored_dtype = stored.dtype.str
    stored = _invert_monochrome1(stored, series.dataset)
    values = rescale(
        stored,
        np.array([f.rescale_slope for f in frames]),
        np.array([f.rescale_intercept for f in frames]),
        inplace=True,
    )
    array = values.transpose(2, 1, 0)  # (slices, rows, columns) -> (X=columns, Y=rows, Z)
    affine_lps = geometry.affine_lps
    if geometry.needs_resampling:
        from medimg.io.dicom.resample import background_value, resample_stack

        fill = background_value(series.modality)
        array, affine_lps = resample_stack(array, geometry, fill=fill)
    affine = lps_to_ras(affine_lps)
    source = SourceGeometry(
        path=series.folder,
        format="dicom",
        shape=tuple(int(n) for n in array.shape),
        affine=affine,
        dtype=stored_dtype,
    )
    logger.debug("%s: %s -> %s %s", series.folder, series.label, array.shape, array.dtype)
    return Volume(array=array[np.newaxis], affine=affine, source=source)
