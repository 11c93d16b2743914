"""``medimg dicom seg LABELS --reference DICOM_DIR --out FILE.dcm``: a label map as DICOM SEG.

Registered inside the ``medimg dicom`` group (:mod:`medimg.cli.dicom` calls
:func:`register`). The label map must lie on the grid medimg reads the reference series on
(any axis order of it); segment names come from ``--label V=NAME``, a mapping file or a model
folder's outputs (``--model``, which also records the model as the algorithm).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run_seg"]


def _label(text: str) -> tuple[int, str]:
    value, sep, name = text.partition("=")
    if not sep or not value.strip().isdigit() or not name.strip():
        raise argparse.ArgumentTypeError(f"must be VALUE=NAME (e.g. 1=liver), got {text!r}")
    return int(value), name.strip()


def register(inner: Any) -> None:
    """Add ``seg`` to the ``medimg dicom`` group's subcommands ``inner``."""
    p: argparse.ArgumentParser = inner.add_parser(
        "seg",
        help="write a label map on a DICOM series as a DICOM SEG (and its volumes as SR)",
        description="Convert LABELS (a label map on the grid of the series in DICOM_DIR, as "
        "medimg reads it; NIfTI, NRRD, MetaImage or a SEG) into a DICOM SEG referring to that "
        "series: frame of reference, every source image, patient and study. Segment k is "
        "label value k, named by --label/--mapping/--model and coded with SNOMED CT (medimg's "
        "table of common organs, else the mapping file: a JSON object whose keys are label "
        'values or names, each {"name": ..., "category": {"value", "scheme", "meaning"}, '
        '"type": {...}}). Every declared label is a segment, empty or not, and every frame is '
        "written. Exit 2 when the labels are not on the series' grid, the folder is not one "
        "series or a label has no name or code.",
    )
    p.add_argument("labels", metavar="LABELS", help="label map file (0 = background)")
    p.add_argument("--reference", required=True, metavar="DICOM_DIR", help="the source series")
    p.add_argument("--out", required=True, metavar="FILE.dcm", help="the SEG file to write")
    p.add_argument("--label", action="append", type=_label, default=[], metavar="VALUE=NAME",
                   help="name of a label value (repeatable), e.g. --label 1=liver")  # fmt: skip
    p.add_argument("--mapping", type=Path, default=None, metavar="FILE.json",
                   help="label names; SNOMED CT codes of labels not in medimg's table")  # fmt: skip
    p.add_argument("--model", type=Path, default=None, metavar="DIR",
                   help="model folder whose outputs name the labels; recorded as the algorithm "
                   "(name, version, weights SHA-256)")  # fmt: skip
    p.add_argument("--type", choices=("binary", "labelmap"), default="binary",
                   dest="seg_type", help="segmentation type (default: binary)")  # fmt: skip
    p.add_argument("--sr", type=Path, default=None, metavar="FILE.dcm",
                   help="also write a TID 1500 SR of each segment's volume (mL)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=run_seg)


def _from_model(folder: Path) -> tuple[dict[int, str], Any]:
    import medimg
    from medimg.io.dicom.seg import AlgorithmInfo
    from medimg.tasks import resolve_model_dir
    from medimg.training.bundle import read_model_record

    record = read_model_record(resolve_model_dir(folder))
    names = {int(k): str(v) for k, v in record["outputs"].items() if int(k) != 0}
    network = record["network"].get("name", "network")
    algorithm = AlgorithmInfo(name=f"medimg-{network}", version=medimg.__version__,
                              sha256=str(record["checkpoint_sha256"]))  # fmt: skip
    return names, algorithm


def run_seg(args: argparse.Namespace) -> int:
    """Handle ``medimg dicom seg``."""
    from medimg.io.dicom.seg import SegOptions, write_seg

    names: dict[int, str] = {}
    algorithm = None
    if args.model is not None:
        names, algorithm = _from_model(args.model)
    names.update(dict(args.label))
    if args.sr is not None and args.sr.exists() and not args.force:
        from medimg.errors import OutputExistsError

        raise OutputExistsError(f"{args.sr}: exists; pass --force to replace it")
    options = SegOptions(segmentation_type=args.seg_type, algorithm=algorithm)
    written = write_seg(args.labels, args.reference, args.out, names=names, mapping=args.mapping,
                        options=options, overwrite=args.force, volumes_sr=args.sr)  # fmt: skip
    empty = [n for n, count in written.voxels.items() if count == 0]
    print(
        f"wrote {written.path}: {len(written.segments)} segment(s) ({args.seg_type}) on "
        f"{written.reference.series.label}"
        + (f"; empty: {', '.join(written.segments[n].label for n in empty)}" if empty else "")
    )
    if args.sr is not None:
        print(f"wrote {args.sr}")
    return 0
