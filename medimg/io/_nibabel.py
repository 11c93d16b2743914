"""nibabel reading (NIfTI, Analyze): headers checked first, gzip bodies verified on the way."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ImageReadError
from medimg.io._compressed import (
    compressed_data,
    iter_decompressed,
    iter_file,
    read_decompressed_range,
    region_pieces,
    verify_stream,
)
from medimg.io._header_checks import affine_field, check_affine, check_nifti_fields
from medimg.io._policies import check_dtype, check_memory, corrupt
from medimg.io.geometry import SourceGeometry


def nibabel_header(path: Path, fmt: str) -> tuple[SourceGeometry, Any]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    check_nifti_fields(path)
    try:
        img: Any = nib.load(str(path), mmap=False)
        shape = tuple(int(n) for n in img.shape)
        dtype = np.dtype(img.get_data_dtype())
        affine = np.asarray(img.affine, dtype=np.float64)
    except (ImageFileError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        for stream in compressed_data(path, fmt, None):
            verify_stream(stream)  # a damaged small .nii.gz fails nibabel's sniffing: say why
        raise corrupt(path, exc) from None
    except (HeaderDataError, ValueError, OverflowError) as exc:
        raise ImageReadError(
            f"{path}: invalid header ({type(exc).__name__}: {exc}); the header is damaged or "
            "was written by a faulty tool: re-export the image"
        ) from None
    if not shape or (len(shape) > 4 and any(n > 1 for n in shape[4:])):
        raise ImageReadError(f"{path}: unsupported image shape {shape}; expected 2D, 3D or 4D")
    check_dtype(path, dtype)
    spatial = shape[:3] if len(shape) >= 3 else shape
    n_channels = shape[3] if len(shape) >= 4 else 1
    check_affine(path, affine, affine_field(img.header), len(spatial))
    geometry = SourceGeometry(
        path=path, format=fmt, shape=spatial, affine=affine, dtype=dtype.str, n_channels=n_channels
    )
    return geometry, img


def read_nibabel(path: Path, fmt: str, max_bytes: int) -> tuple[SourceGeometry, NDArray[Any]]:
    geometry, img = nibabel_header(path, fmt)
    proxy = img.dataobj
    slope, inter = nibabel_scaling(proxy)
    out_dtype = np.dtype(np.float32) if (slope, inter) != (1.0, 0.0) else np.dtype(geometry.dtype)
    check_memory(path, tuple(img.shape), out_dtype, max_bytes)
    check_uncompressed_size(path, img)
    if path.name.lower().endswith(".gz"):
        raw = read_gzip_voxels(path, proxy)
    else:
        try:
            raw = np.asarray(proxy.get_unscaled())
        except (OSError, ValueError) as exc:
            raise corrupt(path, exc) from None
    if out_dtype == raw.dtype:
        return geometry, raw
    data = raw.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused by the policy
        data *= np.float32(slope)
        data += np.float32(inter)
    return geometry, data


def read_gzip_voxels(path: Path, proxy: Any) -> NDArray[Any]:
    """Voxels of a ``.nii.gz``, decoded once into their final buffer, the trailer verified."""
    (stream,) = compressed_data(path, "nifti", None)
    dtype = np.dtype(proxy.dtype)
    shape = tuple(int(n) for n in proxy.shape)
    buffer = read_decompressed_range(stream, int(proxy.offset), math.prod(shape) * dtype.itemsize)
    return np.ndarray(shape, dtype=dtype, buffer=buffer, order=proxy.order)


def nibabel_scaling(proxy: Any) -> tuple[float, float]:
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    return slope, inter


def check_uncompressed_size(path: Path, img: Any) -> None:
    """Refuse an uncompressed file shorter than its header says (nibabel would zero-fill)."""
    if path.name.lower().endswith(".gz"):
        return
    image_file = Path(img.file_map["image"].filename)
    offset = int(getattr(img.dataobj, "offset", 0))
    expected = offset + math.prod(img.shape) * np.dtype(img.get_data_dtype()).itemsize
    actual = image_file.stat().st_size
    if actual < expected:
        raise ImageReadError(
            f"{image_file}: file is truncated: the header promises {expected} bytes "
            f"(offset {offset} + voxels), the file has {actual}"
        )


def scaled_chunk(chunk: NDArray[Any], slope: float, inter: float) -> NDArray[np.float32]:
    """NIfTI scaling in float32 exactly as :func:`load_volume` applies it."""
    data = chunk.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        data *= np.float32(slope)
        data += np.float32(inter)
    return data


def voxel_chunks(path: Path, img: Any) -> Iterator[NDArray[Any]]:
    """The stored voxels of a nibabel image as flat arrays of a few MiB each."""
    proxy = img.dataobj
    dtype = np.dtype(proxy.dtype)
    offset = int(proxy.offset)
    nbytes = math.prod(int(n) for n in proxy.shape) * dtype.itemsize
    if path.name.lower().endswith(".gz"):
        (stream,) = compressed_data(path, "nifti", None)
        pieces = region_pieces(iter_decompressed(stream), offset, nbytes)
    else:
        image_file = Path(img.file_map["image"].filename)
        pieces = region_pieces(iter_file(image_file, 0), offset, nbytes)
    carry = b""
    seen = 0
    for piece in pieces:
        data = carry + piece
        usable = len(data) - len(data) % dtype.itemsize
        carry = data[usable:]
        seen += usable
        yield np.frombuffer(data[:usable], dtype=dtype)
    if seen < nbytes:
        raise ImageReadError(
            f"{path}: file is truncated: the header promises {offset + nbytes} bytes (offset "
            f"{offset} + voxels), the data holds {offset + seen}; the file is damaged: re-copy "
            "or re-export it"
        )
