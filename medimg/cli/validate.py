"""``medimg validate MANIFEST...``: check dataset manifests and their files before work starts."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``validate`` subcommand to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check dataset manifests: schema, files, grids, label values",
        description="Check each manifest and report every problem at once, each with the field "
        "path, the value found and a fix. Reads image headers, and label-map voxels for the "
        "label-value check. Exit 0 when all are clean, 2 otherwise.",
    )
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="manifest JSON file")
    p.add_argument(
        "--schema-only",
        action="store_true",
        help="check only the manifest itself (no file access), e.g. before data is generated",
    )
    p.add_argument(
        "--tolerance-mm",
        type=float,
        default=1e-3,
        help="largest image/label grid difference in mm accepted (default: 0.001)",
    )
    p.add_argument(
        "--no-label-values",
        action="store_true",
        help="skip reading label maps' voxels to check their values are declared",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg validate``."""
    from medimg.errors import ManifestError
    from medimg.manifests import Tolerances, load_manifest

    tolerances = Tolerances(grid_mm=args.tolerance_mm, check_label_values=not args.no_label_values)
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
