"""Write known arrays as DICOM files, so DICOM reading can be tested against exact answers.

:func:`write_dicom_series` writes a 3D array on a given voxel-to-RAS grid as one file per slice
(ImagePositionPatient, ImageOrientationPatient and PixelSpacing worked out from the affine; the
affine's third column is the step between slices, so a non-perpendicular one makes a
gantry-tilted series). :func:`write_xray_dicom` writes a 2D projection image (CR/DX) without a
patient position. UIDs are derived from ``seed``, so the same call writes the same files.
:func:`set_raw_tag` then corrupts one tag of a written file (any bytes, or removed), for tests
of what the reader refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medimg.errors import ConfigError
from medimg.typing import PathLike

__all__ = ["DicomSeriesSpec", "set_raw_tag", "write_dicom_series", "write_xray_dicom"]

_SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
}
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, kw_only=True)
class DicomSeriesSpec:
    """Header values of a synthetic series.

    Attributes
    ----------
    modality : str
        ``"CT"``, ``"MR"``, ``"DX"`` or ``"CR"``.
    description : str
        SeriesDescription.
    series_number : int
        SeriesNumber.
    rescale_slope, rescale_intercept : float
        Stored values are ``round((value - intercept) / slope)``.
    photometric : str
        ``"MONOCHROME2"``, or ``"MONOCHROME1"`` (stored inverted: ``2**bits_stored - 1 - v``).
    bits_stored : int
        BitsStored (16 bits are allocated).
    signed : bool
        PixelRepresentation 1 (int16) instead of 0 (uint16).
    temporal_position : int, optional
        TemporalPositionIdentifier (to write the volumes of a 4D series).
    seed : int
        Seed of the UIDs; a 4D series uses one seed for all its volumes.
    """

    modality: str = "CT"
    description: str = "synthetic"
    series_number: int = 1
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    photometric: str = "MONOCHROME2"
    bits_stored: int = 16
    signed: bool = True
    temporal_position: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.modality not in _SOP_CLASS:
            raise ConfigError(
                f"modality must be one of {sorted(_SOP_CLASS)}, got {self.modality!r}"
            )
        if self.photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ConfigError(
                f"photometric must be MONOCHROME1 or MONOCHROME2, got {self.photometric!r}"
            )


def _uid(spec: DicomSeriesSpec, *parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(spec.seed), *map(str, parts)]))


def _stored(values: NDArray[Any], spec: DicomSeriesSpec) -> NDArray[Any]:
    stored = np.round((values.astype(np.float64) - spec.rescale_intercept) / spec.rescale_slope)
    if spec.photometric == "MONOCHROME1":
        stored = (2**spec.bits_stored - 1) - stored if not spec.signed else -1 - stored
    dtype = np.int16 if spec.signed else np.uint16
    info = np.iinfo(dtype)
    low, high = (info.min, info.max)
    if spec.bits_stored < 16:
        low, high = (0, 2**spec.bits_stored - 1) if not spec.signed else (low, high)
    if stored.min() < low or stored.max() > high:
        raise ConfigError(
            f"values must fit {spec.bits_stored}-bit {'signed' if spec.signed else 'unsigned'} "
            f"storage after rescale, got stored range {stored.min():g}..{stored.max():g}; "
            "change rescale_slope/rescale_intercept"
        )
    return stored.astype(dtype)


def _base_dataset(spec: DicomSeriesSpec, sop_uid: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(_SOP_CLASS[spec.modality])
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _SOP_CLASS[spec.modality]
    ds.SOPInstanceUID = sop_uid
    ds.Modality = spec.modality
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = f"SYN{spec.seed:04d}"
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = _uid(spec, "study")
    ds.SeriesInstanceUID = _uid(spec, "series", spec.series_number)
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.description
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.BitsAllocated = 16
    ds.BitsStored = spec.bits_stored
    ds.HighBit = spec.bits_stored - 1
    ds.PixelRepresentation = 1 if spec.signed else 0
    if (spec.rescale_slope, spec.rescale_intercept) != (1.0, 0.0) or spec.modality == "CT":
        ds.RescaleSlope = f"{spec.rescale_slope:g}"
        ds.RescaleIntercept = f"{spec.rescale_intercept:g}"
    return ds


def _ds_number(value: float) -> str:
    """A DS string (at most 16 characters) for ``value``."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.1e}"


def write_dicom_series(
    array: ArrayLike,
    affine: NDArray[np.float64],
    out_dir: PathLike,
    spec: DicomSeriesSpec | None = None,
    *,
    shuffle_seed: int | None = None,
) -> list[Path]:
    """Write an ``(X, Y, Z)`` array on a voxel-to-RAS grid as one DICOM file per slice.

    Parameters
    ----------
    array : (X, Y, Z) or (1, X, Y, Z) array-like
        Values (HU for CT); X runs along a row (columns), Y down a column (rows), Z across
        slices.
    affine : (4, 4) ndarray
        Voxel-to-RAS affine of ``array``.
    out_dir : path-like
        Folder to write into (created).
    spec : DicomSeriesSpec, optional
        Header values.
    shuffle_seed : int, optional
        Give files and InstanceNumbers a shuffled order (slice k is not file k), so a reader
        that sorts by name or instance number fails.

    Returns
    -------
    list of Path
        The files, slice by slice (slice k first).
    """
    spec = spec or DicomSeriesSpec()
    data = np.asarray(array)
    data = data[0] if data.ndim == 4 and data.shape[0] == 1 else data
    if data.ndim != 3:
        raise ConfigError(f"array must be (X, Y, Z), got shape {data.shape}")
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :2], axis=0)
    cosines = lps[:3, :2] / spacing
    stored = _stored(data, spec)
    n = data.shape[2]
    order = np.arange(n)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(n)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    tag = "" if spec.temporal_position is None else f"t{spec.temporal_position}_"
    for k in range(n):
        ds = _base_dataset(spec, _uid(spec, "slice", spec.temporal_position, k))
        ds.FrameOfReferenceUID = _uid(spec, "frame of reference")  # a SEG must share it
        ds.ImageOrientationPatient = [_ds_number(v) for v in cosines.T.ravel()]
        ds.ImagePositionPatient = [_ds_number(v) for v in lps[:3, 3] + k * lps[:3, 2]]
        ds.PixelSpacing = [_ds_number(spacing[1]), _ds_number(spacing[0])]
        ds.SliceThickness = _ds_number(float(np.linalg.norm(lps[:3, 2])))
        ds.InstanceNumber = int(order[k]) + 1
        if spec.temporal_position is not None:
            ds.TemporalPositionIdentifier = spec.temporal_position
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = out / f"{tag}{int(order[k]) + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_xray_dicom(
    array: ArrayLike,
    affine: NDArray[np.float64],
    path: PathLike,
    spec: DicomSeriesSpec | None = None,
) -> Path:
    r"""Write a 2D ``(X, Y)`` projection image (no patient position) as one DICOM file.

    The pixel size goes to ImagerPixelSpacing and the directions of the affine's first two
    columns to PatientOrientation (their dominant anatomical letter, e.g. ``L\H``).
    """
    spec = spec or DicomSeriesSpec(modality="DX", signed=False, bits_stored=12)
    data = np.asarray(array)
    data = data[0] if data.ndim == 3 and data.shape[0] == 1 else data
    if data.ndim != 2:
        raise ConfigError(f"array must be (X, Y), got shape {data.shape}")
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :2], axis=0)
    letters = []
    for column in lps[:3, :2].T:
        axis = int(np.argmax(np.abs(column)))
        letters.append(("RL", "AP", "FH")[axis][int(column[axis] > 0)])
    ds = _base_dataset(spec, _uid(spec, "xray"))
    ds.PatientOrientation = letters
    ds.ImagerPixelSpacing = [_ds_number(spacing[1]), _ds_number(spacing[0])]
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = data.shape[1], data.shape[0]
    stored = _stored(data, spec)
    ds.PixelData = np.ascontiguousarray(stored.T).tobytes()
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def set_raw_tag(path: PathLike, keyword: str, value: bytes | None) -> None:
    r"""Rewrite one tag of a DICOM file with raw bytes, bypassing pydicom's value checks.

    Parameters
    ----------
    path : path-like
        A file written by :func:`write_dicom_series` or :func:`write_xray_dicom`.
    keyword : str
        DICOM keyword (``"ImagePositionPatient"``); a file-meta keyword (group 0002) edits the
        file meta header.
    value : bytes or None
        The value as stored (``b"nan\0\0"`` for a DS triple; padded to even length with a
        space, or a NUL for UIDs and binary VRs); ``None`` removes the tag.
    """
    import pydicom
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ConfigError(f"keyword must be a DICOM keyword, got {keyword!r}")
    ds = pydicom.dcmread(path)
    meta = tag >> 16 == 0x0002
    target = ds.file_meta if meta else ds
    if value is None:
        if tag in target:
            del target[tag]
    else:
        vr = dictionary_VR(tag).split(" or ")[0]
        if len(value) % 2:
            value += b"\0" if vr in ("UI", "OB", "OW", "US", "UL", "SS", "SL") else b" "
        target[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
    if not meta:
        ds.save_as(path)
        return
    # a new meta header before the unchanged data set (pydicom would re-encode the data set
    # for the new transfer syntax, or refuse to)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    old = Path(path).read_bytes()
    meta_end = 144 + int.from_bytes(old[140:144], "little")  # after (0002,0000) group length
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    del ds.file_meta[0x00020000]
    write_file_meta_info(buffer, ds.file_meta, enforce_standard=False)
    group = buffer.getvalue()
    length = len(group).to_bytes(4, "little")
    header = b"\x02\x00\x00\x00UL\x04\x00" + length
    Path(path).write_bytes(old[:132] + header + group + old[meta_end:])
