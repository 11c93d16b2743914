"""What a worker writes besides the label map for a job whose upload was a DICOM series.

* ``result/image.nii.gz``: the uploaded series read by medimg's reader
  (:func:`medimg.io.read_image`) and written on its stored grid, the grid of the label map,
  so the page can show the image under the labels (a browser cannot read a DICOM zip);
* ``result/labels.seg.dcm`` and ``result/labels.sr.dcm`` (segmentation): the DICOM SEG of
  the label map referring to the uploaded series and the SR of its segments' volumes, written
  by :func:`medimg.tasks._segmentation_dicom.write_case_seg`, the code ``medimg predict
  --output-format seg`` runs, on the very label map the job's NIfTI holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_dicom_results"]


def write_dicom_results(
    series: Path, model: Any, prediction: Any, out_dir: Path, *, seg_type: str = "binary"
) -> dict[str, Path]:
    """Write the image NIfTI (and, for a label map, SEG and SR) of `series` into `out_dir`.

    ``seg_type`` is the SEG's type, ``binary`` or ``labelmap`` (the job's option).

    Returns the files written by name: ``image``, and ``seg`` and ``sr`` when the
    prediction has a label map.

    Raises
    ------
    MedimgError
        From the reader or the SEG writer (e.g. a series the SEG cannot refer to).
    """
    from medimg.io import read_image, save_volume
    from medimg.manifests import ResolvedCase
    from medimg.tasks._segmentation_dicom import seg_outputs, write_case_seg

    out_dir.mkdir(parents=True, exist_ok=True)
    image = read_image(series)
    written = {"image": save_volume(image.array, out_dir / "image.nii.gz", like=image,
                                    overwrite=True)}  # fmt: skip
    labels = prediction.labels_nifti
    if labels is None:
        return written
    case = ResolvedCase(split="test", case_id="labels", images=(series,))

    def predicted(scratch: Path) -> Path:
        scratch.write_bytes(labels)
        return scratch

    seg = seg_outputs(out_dir, case.case_id)[0]
    written["seg"], written["sr"] = write_case_seg(
        case, predicted, model.bundle, seg, seg_type=seg_type
    )
    return written
