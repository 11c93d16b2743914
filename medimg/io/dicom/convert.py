"""Convert every volume of a DICOM folder to NIfTI with a JSON sidecar of acquisition metadata.

The sidecar holds acquisition parameters and the geometry medimg worked out, never the
patient-identifying fields (names, IDs, dates, UIDs, institution) unless ``keep_phi`` is set.
A series that cannot be read, or is refused by the scan (truncated file, invalid header value,
missing slice geometry: see :mod:`medimg.io.dicom.discovery`), is recorded with its error and
never written; the others are still converted.

A 4D series (the time points of one stack: fMRI, diffusion) is written as one 4D NIfTI, time
the 4th axis, as dcm2niix and dicom2nifti do; ``split_4d`` writes one file per time point
instead, named ``<stem>_t001.nii.gz``, ``<stem>_t002.nii.gz``... (zero-padded to at least
three digits, so the names sort in time order).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import DicomSeriesError, ImageTooLargeError, OutputExistsError
from medimg.io.dicom._fourd import read_4d, time_groups
from medimg.io.dicom.discovery import DicomSeries, scan_dicom_folder
from medimg.io.dicom.options import DicomReadOptions
from medimg.io.dicom.reading import read_series
from medimg.io.dicom.selection import series_orientation
from medimg.io.volume import Volume
from medimg.io.writing import atomic_path, save_volume
from medimg.typing import PathLike

__all__ = ["ACQUISITION_FIELDS", "PHI_FIELDS", "ConvertResult", "convert_dicom_folder"]

logger = logging.getLogger(__name__)

ACQUISITION_FIELDS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "SeriesDescription",
    "SeriesNumber",
    "ProtocolName",
    "ImageType",
    "BodyPartExamined",
    "PatientPosition",
    "SliceThickness",
    "SpacingBetweenSlices",
    "PixelSpacing",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "KVP",
    "XRayTubeCurrent",
    "ConvolutionKernel",
    "ContrastBolusAgent",
    "PhotometricInterpretation",
    "BitsStored",
)
"""Header fields copied into the sidecar."""

PHI_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "AcquisitionDate",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
)
"""Patient-identifying fields, written only with ``keep_phi``."""


@dataclass(frozen=True)
class ConvertResult:
    """Outcome of :func:`convert_dicom_folder`.

    Attributes
    ----------
    written : tuple of Path
        NIfTI files written (each with a ``.json`` sidecar).
    failed : tuple of (str, str)
        ``(series label, error message)`` for each series that was not converted.
    """

    written: tuple[Path, ...]
    failed: tuple[tuple[str, str], ...]


def _value(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_value(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            continue
    return str(value)


def sidecar(
    series: DicomSeries, volume: Volume, *, keep_phi: bool, time_points: int = 1
) -> dict[str, Any]:
    """JSON-ready metadata of one converted series (``time_points`` > 1: a 4D file)."""
    ds = series.dataset
    fields = ACQUISITION_FIELDS + (PHI_FIELDS if keep_phi else ())
    record: dict[str, Any] = {k: _value(ds.get(k)) for k in fields if ds.get(k) not in (None, "")}
    syntax = ds.file_meta.get("TransferSyntaxUID")
    record["TransferSyntax"] = getattr(syntax, "name", "")
    record["medimg"] = {
        "images": len(series.frames) * time_points,
        "time_points": time_points,
        "mosaic": series.is_mosaic,
        "part": series.part,
        "parts": series.n_parts,
        "split_reason": series.split_reason,
        "notes": list(series.notes),
        "orientation": series_orientation(series),
        "geometry": volume.source.describe() | {"file": None},
    }
    return record


def _jobs(
    series: tuple[DicomSeries, ...], out_dir: Path, split_4d: bool
) -> list[tuple[list[DicomSeries], Path]]:
    """What to write: (the time points of one file, its path); stems made unique."""
    jobs: list[tuple[list[DicomSeries], str]] = []
    for group in time_groups(series):
        if len(group) > 1 and not split_4d:
            jobs.append((group, _stem_4d(group[0])))
        elif len(group) > 1:
            width = max(3, len(str(len(group))))
            jobs.extend(([s], f"{_stem_4d(s)}_t{s.time_point:0{width}d}") for s in group)
        else:
            jobs.append((group, group[0].stem))
    used: dict[str, int] = {}
    out = []
    for group, stem in jobs:
        used[stem] = used.get(stem, 0) + 1
        if used[stem] > 1:
            stem = f"{stem}_{used[stem]}"
        out.append((group, out_dir / f"{stem}.nii.gz"))
    return out


def _stem_4d(series: DicomSeries) -> str:
    """The stem of a stack's 4D file: the series stem, with ``_v<stack>`` when it has several."""
    base = series.stem.rsplit("_v", 1)[0] if series.n_parts > 1 else series.stem
    stacks = series.n_parts // max(series.time_points, 1)
    return f"{base}_v{series.stack}" if stacks > 1 else base


def convert_dicom_folder(
    folder: PathLike,
    out_dir: PathLike,
    *,
    options: DicomReadOptions | None = None,
    keep_phi: bool = False,
    overwrite: bool = False,
    split_4d: bool = False,
) -> ConvertResult:
    """Write one NIfTI (and one JSON sidecar) per volume found under ``folder``.

    Parameters
    ----------
    folder : path-like
        DICOM folder (recursive, DICOMDIR aware).
    out_dir : path-like
        Output folder, created when missing.
    options : DicomReadOptions, optional
        Checks and corrections; a series failing them, or refused by the scan, is reported in
        ``failed``, not written.
    keep_phi : bool
        Also write the patient-identifying fields (:data:`PHI_FIELDS`) to the sidecars.
    overwrite : bool
        Replace existing outputs; without it, existing outputs are refused before any work.
    split_4d : bool
        Write each time point of a 4D series to its own file (``<stem>_t001.nii.gz``...)
        instead of one 4D file.

    Returns
    -------
    ConvertResult

    Raises
    ------
    OutputExistsError
        When an output exists and ``overwrite`` is false (nothing is written).
    DicomSeriesError
        When ``folder`` holds no DICOM image.
    """
    out = Path(out_dir)
    scan = scan_dicom_folder(folder, pixels=True)
    readable = tuple(s for s in scan.series if not s.refused)
    jobs = _jobs(readable, out, split_4d)
    targets = [target for _group, target in jobs]
    existing = [p for p in targets if p.exists() or p.with_suffix("").with_suffix(".json").exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{existing[0]}: exists ({len(existing)} of {len(targets)} outputs do); "
            "pass --force (overwrite=True) to replace them"
        )
    written: list[Path] = []
    failed: list[tuple[str, str]] = []
    for series in scan.series:
        if series.refused:
            message = f"{series.folder}: {series.label}: refused: {series.refused}"
            logger.error("not converted: %s", message)
            failed.append((series.label, message))
    for group, target in jobs:
        series = group[0]
        try:
            volume = read_series(series, options) if len(group) == 1 else read_4d(group, options)
        except (DicomSeriesError, ImageTooLargeError) as exc:
            logger.error("not converted: %s", exc)
            failed.append((series.label, str(exc)))
            continue
        save_volume(volume.array, target, like=volume, overwrite=overwrite)
        record = sidecar(series, volume, keep_phi=keep_phi, time_points=len(group))
        meta = json.dumps(record, indent=2)
        with atomic_path(target.with_suffix("").with_suffix(".json"), overwrite=True) as tmp:
            tmp.write_text(meta + "\n")
        logger.info("wrote %s (%s)", target, series.label)
        written.append(target)
    return ConvertResult(tuple(written), tuple(failed))
