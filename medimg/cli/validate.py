"""``medimg validate MANIFEST...``: check dataset manifests and their files before work starts."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from medimg.cli import add_max_memory_option

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``validate`` subcommand to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check dataset manifests: schema, files, grids, label values",
        description="Check each manifest and report every problem at once, each with the field "
        "path, the value found and a fix. A clean result means training will accept the "
        "data: every file is checked as training reads it (an image file, not a DICOM folder; "
        "inside the manifest's folder once links are resolved; no shear; 2D/3D as the "
        "modality; a supported voxel type; within the decode limit; finite voxels; compressed "
        "data intact). Headers are read for every file; voxels only of float images (for "
        "NaN/infinity) and of label maps (for their values); every .nii.gz and compressed "
        "NRRD/MetaImage body is decoded once, in chunks, to check its CRC. "
        "Exit 0 when all are clean, 2 otherwise.",
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="manifest JSON file")
    p.add_argument(
        "--schema-only",
        action="store_true",
        help="check only the manifest itself (no file access, so links, folders and the "
        "files' contents go unchecked), e.g. before data is generated",
    )
    p.add_argument(
        "--tolerance-mm",
        type=_tolerance_mm,
        default=1e-3,
        help="largest image/label grid difference in mm accepted (default: 0.001)",
    )
    p.add_argument(
        "--no-label-values",
        action="store_true",
        help="skip reading label maps' voxels to check their values are declared (and, "
        "for float label maps, finite)",
    )
    add_max_memory_option(
        p,
        what="decode limit of one volume in GiB, as training applies it: larger files are reported",
    )
    p.set_defaults(handler=run)


def _tolerance_mm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a distance in mm, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite distance >= 0 mm, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg validate``."""
    from medimg.errors import ManifestError
    from medimg.manifests import Tolerances, load_manifest

    tolerances = Tolerances(
        grid_mm=args.tolerance_mm,
        check_label_values=not args.no_label_values,
        max_bytes=args.max_bytes,
    )
    failed = 0
    for name in args.manifests:
        try:
            manifest = load_manifest(name, check_files=not args.schema_only, tolerances=tolerances)
        except ManifestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        n = len(manifest.cases())
        what = "schema ok" if args.schema_only else "ok"
        print(f"{name}: {what} ({n} cases, {manifest.task})")
    return 2 if failed else 0
