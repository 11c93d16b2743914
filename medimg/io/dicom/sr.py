"""Findings as DICOM SR: TID 1500 Measurement Reports (highdicom Comprehensive 3D SR).

:func:`write_volumes_sr` reports the volume of each segment of a SEG written by
:func:`~medimg.io.dicom.seg.write_seg`: one volumetric ROI group (TID 1411) per segment,
referring to the segment (SEG SOP instance and segment number, source series), whose finding
type is the segment's coded type and whose measurement is its Volume (SCT 118565006) in mL
(voxel count x voxel volume on the source grid). Empty segments are reported with 0 mL.

:func:`write_boxes_sr` reports detection boxes. A box is axis-aligned in world RAS+ mm
(:class:`~medimg.manifests.Box`); in the SR each box is a volumetric ROI whose volume
surface is the SCOORD3D ``ELLIPSOID`` the box bounds (its three axes' end points, in the
series' frame of reference, DICOM LPS), with Length, Width and Depth measurements (the full
extent along patient x, y and z, mm) and the detector's score as a Probability
(DCM 122157). Why an ellipsoid and not a polyline of the box's edges: SCOORD3D has no box type,
a polyline is a curve, not a region, that no TID 1500 reader can measure, and a point alone
loses the extent; the ellipsoid is a volumetric graphic type TID 1411 defines, the box is its
exact bounding box (nothing is lost), and medimg already carries boxes between grids as the
ellipsoids they bound (:mod:`medimg.tasks._detection_boxes`). With no box at all the report
holds one TID 1501 group of finding type Finding (SCT 404684003) evaluated as Finding: Absent
(SCT 272519000): TID 1500 needs a measurement group, and "nothing found" is a result a reader
should see.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.io.dicom._seg_codes import label_codes
from medimg.io.dicom._seg_reference import ReferenceSeries, quiet_highdicom, reference_series
from medimg.io.dicom.seg import AlgorithmInfo, SegWritten
from medimg.typing import PathLike

__all__ = ["ReportedBox", "write_boxes_sr", "write_volumes_sr"]

logger = logging.getLogger(__name__)

_ML = ("ml", "UCUM", "milliliter")
_SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class ReportedBox:
    """A detected box: centre and full size in world RAS+ mm, class name and score."""

    center_mm: tuple[float, float, float]
    size_mm: tuple[float, float, float]
    class_name: str
    score: float


def _context(algorithm: AlgorithmInfo | None) -> Any:
    import highdicom as hd

    name = algorithm.name if algorithm else "medimg"
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name=name[:64])
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=hd.sr.CodedConcept("121007", "DCM", "Device"),
            observer_identifying_attributes=device,
        )
    )


def _algorithm(algorithm: AlgorithmInfo | None) -> Any:
    import highdicom as hd

    if algorithm is None:
        return None
    params = [f"sha256={algorithm.sha256}"] if algorithm.sha256 else None
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, parameters=params
    )


def _save(groups: list[Any], evidence: list[Any], out: Path, algorithm: AlgorithmInfo | None,
          *, overwrite: bool, title: str) -> Path:  # fmt: skip
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import medimg
    from medimg.io.writing import atomic_path

    report = hd.sr.MeasurementReport(
        observation_context=_context(algorithm),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    with warnings.catch_warnings(record=True) as caught, quiet_highdicom():
        warnings.simplefilter("always")
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence, content=report[0], series_number=301,
            series_instance_uid=hd.UID(), sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="medimg", series_description=title,
            software_versions=medimg.__version__,
        )  # fmt: skip
    for warning in caught:  # highdicom's advice on the source's values, first sentence
        logger.warning("%s: highdicom: %s", out, str(warning.message).split(". ")[0])
    with atomic_path(out, overwrite=overwrite) as tmp:
        sr.save_as(tmp)
    return out


def write_volumes_sr(
    seg: SegWritten, out: PathLike, *, algorithm: AlgorithmInfo | None = None,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write a TID 1500 report of each segment's volume (mL), referring to the SEG.

    Parameters
    ----------
    seg : SegWritten
        The SEG, as :func:`~medimg.io.dicom.seg.write_seg` returned it.
    out : path-like
        The SR file (written atomically).
    algorithm : AlgorithmInfo, optional
        The model, recorded as the measurements' algorithm.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    seg_ds = seg.dataset
    series = hd.sr.SourceSeriesForSegmentation(seg.reference.series.series_uid)
    groups = []
    for number, codes in sorted(seg.segments.items()):
        volume_ml = seg.voxels[number] * seg.voxel_volume_mm3 / 1000.0
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(), identifier=f"segment {number} {codes.label}"[:64]
            ),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=str(seg_ds.SOPClassUID), sop_instance_uid=seg.sop_instance_uid,
                segment_number=number, source_series=series,
            ),
            finding_type=hd.sr.CodedConcept(*codes.type),
            finding_category=hd.sr.CodedConcept(*codes.category),
            algorithm_id=_algorithm(algorithm),
            measurements=[hd.sr.Measurement(
                name=dcm_codes.SCT.Volume, value=round(volume_ml, 6),
                unit=hd.sr.CodedConcept(*_ML),
            )],
        ))  # fmt: skip
    return _save(groups, [seg_ds], Path(out), algorithm, overwrite=overwrite,
                 title="medimg segmentation volumes")  # fmt: skip


def _ellipsoid_lps(box: ReportedBox) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The end points of the three axes of the ellipsoid a world RAS+ box bounds, in LPS."""
    centre = np.array(box.center_mm, dtype=np.float64) * (-1.0, -1.0, 1.0)
    half = np.array(box.size_mm, dtype=np.float64) / 2
    points = []
    for axis in range(3):
        offset = np.zeros(3)
        offset[axis] = half[axis]
        points += [centre - offset, centre + offset]
    return np.array(points, dtype=np.float64)


def write_boxes_sr(
    boxes: Sequence[ReportedBox], reference: PathLike | ReferenceSeries, out: PathLike, *,
    algorithm: AlgorithmInfo | None = None, overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write a TID 1500 report of detection boxes on a DICOM series (see the module notes).

    Parameters
    ----------
    boxes : sequence of ReportedBox
        World RAS+ boxes; a class name in medimg's SNOMED CT table is coded (``nodule``:
        SCT 27925004), any other is reported as a Finding (SCT 404684003).
    reference : path-like or ReferenceSeries
        The series' folder: frame of reference, patient and study.
    out : path-like
        The SR file.
    algorithm : AlgorithmInfo, optional
        The model.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Path

    Raises
    ------
    DicomSeriesError
        When the reference is not one usable series.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medimg.errors import ConfigError

    ref = reference if isinstance(reference, ReferenceSeries) else reference_series(reference)
    frame_of_reference = str(ref.datasets[0].FrameOfReferenceUID)
    mm = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
    groups = []
    for k, box in enumerate(boxes, start=1):
        try:
            finding = hd.sr.CodedConcept(
                *label_codes([1], {1: box.class_name}, {}, where="")[1].type
            )
        except ConfigError:
            finding = hd.sr.CodedConcept(codes.SCT.Finding.value, "SCT", codes.SCT.Finding.meaning)
        sizes = [(codes.SCT.Length, box.size_mm[0]), (codes.SCT.Width, box.size_mm[1]),
                 (codes.SCT.Depth, box.size_mm[2])]  # fmt: skip
        measurements = [hd.sr.Measurement(name=n, value=round(float(v), 4), unit=mm)
                        for n, v in sizes]  # fmt: skip
        measurements.append(hd.sr.Measurement(
            name=codes.DCM.Probability, value=round(float(box.score), 6),
            unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
        ))  # fmt: skip
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"box {k}"),
            referenced_volume_surface=hd.sr.VolumeSurface(
                graphic_type="ELLIPSOID", graphic_data=_ellipsoid_lps(box),
                frame_of_reference_uid=frame_of_reference,
                source_series=hd.sr.SourceSeriesForSegmentation(ref.series.series_uid),
            ),
            finding_type=finding, algorithm_id=_algorithm(algorithm), measurements=measurements,
        ))  # fmt: skip
    if not groups:  # TID 1500 needs a group: one that says nothing was found
        groups.append(_no_findings(codes))
    return _save(groups, ref.datasets[:1], Path(out), algorithm, overwrite=overwrite,
                 title="medimg detections")  # fmt: skip


def _no_findings(codes: Any) -> Any:
    """A TID 1501 group of finding type Finding whose evaluation is Finding: Absent (no box)."""
    import highdicom as hd

    finding = hd.sr.CodedConcept(codes.SCT.Finding.value, "SCT", codes.SCT.Finding.meaning)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="no boxes"),
        finding_type=finding,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=finding,
            value=hd.sr.CodedConcept(codes.SCT.Absent.value, "SCT", codes.SCT.Absent.meaning),
        )],
    )  # fmt: skip
