"""Segmentation output as DICOM: ``<case>.seg.dcm`` and ``<case>.sr.dcm`` for a DICOM case.

With ``output_format="seg"`` the label map is predicted onto the series' stored grid as usual
(:func:`~medimg.tasks._segmentation_predict.predict_case`, into a hidden scratch NIfTI in the
output folder, removed afterwards and by :func:`~medimg.io.integrity.remove_stale_temporaries`
after a kill), then written as a BINARY SEG referring to the series, with the model as the
algorithm (``medimg-<network>``, medimg's version, the checkpoint SHA-256), and the SR of the
segments' volumes beside it; the SR is written before the SEG is renamed into place, so a SEG
on disk always has its SR.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError
from medimg.manifests import ResolvedCase

__all__ = ["OUTPUT_FORMATS", "algorithm_of", "seg_outputs", "write_case_seg"]

OUTPUT_FORMATS = ("nifti", "seg")
"""Segmentation prediction outputs: NIfTI label maps, or DICOM SEG + SR (DICOM cases)."""


def seg_outputs(out_dir: Path, case_id: str) -> tuple[Path, Path]:
    """The SEG and SR paths of a case."""
    return out_dir / f"{case_id}.seg.dcm", out_dir / f"{case_id}.sr.dcm"


def algorithm_of(bundle: Any) -> Any:
    """The model of ``bundle`` as the SEG/SR algorithm: name, version, weights SHA-256."""
    import medimg
    from medimg.io.dicom.seg import AlgorithmInfo

    network = getattr(bundle.network, "name", "network")
    return AlgorithmInfo(
        name=f"medimg-{network}", version=medimg.__version__, sha256=bundle.checkpoint_sha256
    )


def write_case_seg(case: ResolvedCase, predict: Any, bundle: Any, out: Path) -> tuple[Path, Path]:
    """Predict ``case`` with ``predict(image_out)`` and write its SEG (``out``) and SR.

    Raises
    ------
    ConfigError
        When the case's image is not a DICOM series folder (a SEG refers to DICOM images).
    """
    from medimg.io.dicom.seg import SegOptions, write_seg

    image = Path(case.images[0])
    if not image.is_dir():
        raise ConfigError(
            f"case {case.case_id}: output_format 'seg' (--output-format seg) needs a DICOM "
            f"series folder as the image, got the file {image}; use --output-format nifti"
        )
    sr = seg_outputs(out.parent, case.case_id)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.nii.gz", dir=out.parent)
    os.close(fd)
    scratch = Path(name)
    try:
        predict(scratch)
        names = {int(k): str(v) for k, v in bundle.outputs.items() if int(k) != 0}
        algorithm = algorithm_of(bundle)
        write_seg(scratch, image, out, names=names, options=SegOptions(algorithm=algorithm),
                  overwrite=True, volumes_sr=sr)  # fmt: skip
    finally:
        scratch.unlink(missing_ok=True)
    return out, sr
