"""Segmentation output as DICOM: ``<case>.seg.dcm`` and ``<case>.sr.dcm`` for a DICOM case.

With ``output_format="seg"`` the label map is predicted onto the series' stored grid as usual
(:func:`~medimg.tasks._segmentation_predict.predict_case`, into a hidden scratch NIfTI in the
output folder, removed afterwards and by :func:`~medimg.io.integrity.remove_stale_temporaries`
after a kill), then written as a BINARY SEG referring to the series, with the model as the
algorithm (:func:`algorithm_of`: a package's file name, version and SHA-256, a folder's
network, medimg's version and weights-file SHA-256), and the SR of the segments' volumes beside
it; the SR is written before the SEG is renamed into place, so a SEG on disk always has its SR.
``seg_type="labelmap"`` writes a LABELMAP SEG instead of BINARY.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError
from medimg.manifests import ResolvedCase

__all__ = [
    "OUTPUT_FORMATS",
    "SEG_TYPES",
    "algorithm_of",
    "check_seg_type",
    "dicom_image_of",
    "seg_outputs",
    "write_case_seg",
]

OUTPUT_FORMATS = ("nifti", "seg")
"""Segmentation prediction outputs: NIfTI label maps, or DICOM SEG + SR (DICOM cases)."""

_FILE_FORMAT = {"seg": "nifti", "sr": "json"}  # what a file case writes instead

SEG_TYPES = ("binary", "labelmap")
"""The SEG types prediction writes (``seg_type``): BINARY (default) or LABELMAP."""


def seg_outputs(out_dir: Path, case_id: str) -> tuple[Path, Path]:
    """The SEG and SR paths of a case."""
    return out_dir / f"{case_id}.seg.dcm", out_dir / f"{case_id}.sr.dcm"


def algorithm_of(bundle: Any) -> Any:
    """The model of ``bundle`` as the SEG/SR algorithm (an :class:`AlgorithmInfo`).

    A model read from a package (``bundle.source.package``) is the package: its file name, the
    version it was packed as (``MANIFEST.json`` ``version``) and the SHA-256 of the whole file,
    what ``sha256sum model.medimg`` prints. A model folder is ``medimg-<network>``, medimg's
    version and the SHA-256 of its weights file (``checkpoint_sha256``: ``sha256sum best.pt``).
    """
    import medimg
    from medimg.io.dicom.seg import AlgorithmInfo

    source = getattr(bundle, "source", None)
    package = None if source is None else source.package
    if package is not None:
        version = str(package.manifest.get("version") or "1")
        return AlgorithmInfo(name=package.path.name[:64], version=version[:64],
                             sha256=str(package.sha256))  # fmt: skip
    network = getattr(bundle.network, "name", None) or "retinanet"  # a DetectorConfig: RetinaNet
    return AlgorithmInfo(
        name=f"medimg-{network}"[:64], version=medimg.__version__,
        sha256=str(bundle.checkpoint_sha256),
    )  # fmt: skip


def dicom_image_of(case: ResolvedCase, output_format: str) -> Path:
    """The DICOM series folder of ``case``, which a DICOM output (SEG, SR) refers to.

    Raises
    ------
    ConfigError
        When the case's image is a file: a SEG or SR refers to DICOM images.
    """
    image = Path(case.images[0])
    if not image.is_dir():
        raise ConfigError(
            f"case {case.case_id}: output_format {output_format!r} (--output-format "
            f"{output_format}) needs a DICOM series folder as the image, got the file {image}; "
            f"use --output-format {_FILE_FORMAT.get(output_format, 'nifti')}"
        )
    return image


def write_case_seg(
    case: ResolvedCase, predict: Any, bundle: Any, out: Path, *, seg_type: str = "binary"
) -> tuple[Path, Path]:
    """Predict ``case`` with ``predict(image_out)`` and write its SEG (``out``) and SR.

    ``seg_type`` is ``binary`` or ``labelmap`` (:class:`~medimg.io.dicom.seg.SegOptions`).

    Raises
    ------
    ConfigError
        When the case's image is not a DICOM series folder (a SEG refers to DICOM images).
    """
    from medimg.io.dicom.seg import SegOptions, write_seg

    image = dicom_image_of(case, "seg")
    sr = seg_outputs(out.parent, case.case_id)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.nii.gz", dir=out.parent)
    os.close(fd)
    scratch = Path(name)
    try:
        predict(scratch)
        names = {int(k): str(v) for k, v in bundle.outputs.items() if int(k) != 0}
        options = SegOptions(segmentation_type=seg_type, algorithm=algorithm_of(bundle))
        write_seg(scratch, image, out, names=names, options=options, overwrite=True,
                  volumes_sr=sr)  # fmt: skip
    finally:
        scratch.unlink(missing_ok=True)
    return out, sr


def check_seg_type(seg_type: str, output_format: str) -> None:
    """Refuse a ``seg_type`` that is no SEG type, or one given without ``output_format="seg"``.

    Raises
    ------
    ConfigError
        Naming the valid types, or the output format it needs.
    """
    if seg_type not in SEG_TYPES:
        raise ConfigError(f"seg_type must be binary or labelmap, got {seg_type!r}")
    if seg_type != "binary" and output_format != "seg":
        raise ConfigError(
            f"seg_type {seg_type!r} (--seg-type) applies to output_format 'seg' only, got "
            f"output_format {output_format!r}; add --output-format seg or drop --seg-type"
        )
