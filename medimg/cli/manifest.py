"""``medimg manifest {import,splits,schema}``: convert, split and describe manifests."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``manifest`` subcommand group to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "manifest",
        help="import MSD/nnU-Net dataset.json, make k-fold splits, export the JSON Schema",
        description="Work with dataset manifests.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="convert an MSD or nnU-Net v2 dataset.json into a medimg manifest",
        description="Convert an MSD or nnU-Net v2 dataset.json into a manifest, validate it "
        "(schema and paths) and write it. Paths are rewritten relative to OUT.",
    )
    imp.add_argument("source", metavar="DATASET_JSON", help="MSD or nnU-Net v2 dataset.json")
    imp.add_argument(
        "-o", "--out", help="manifest to write (default: manifest.json beside DATASET_JSON)"
    )
    imp.add_argument(
        "--modality",
        choices=["CT", "MR", "XR"],
        help="modality of every channel, when the "
        "channel names do not say (nnU-Net 'zscore', 'noNorm', ...)",
    )
    imp.add_argument("--force", action="store_true", help="overwrite OUT")
    imp.set_defaults(handler=run_import)
    spl = actions.add_parser(
        "splits",
        help="make or update the k-fold splits stored beside a manifest",
        description="Assign training cases to folds (seeded, stratified by class) and store "
        "<stem>.splits.json beside the manifest. Existing assignments are kept; new cases are "
        "placed, so appending cases never moves one.",
    )
    spl.add_argument("manifest", metavar="MANIFEST")
    spl.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    spl.add_argument("--seed", type=int, default=0, help="placement seed (default 0)")
    spl.add_argument("--force", action="store_true", help="discard saved assignments")
    spl.set_defaults(handler=run_splits)
    sch = actions.add_parser(
        "schema",
        help="write the manifest JSON Schema (for editors)",
        description="Write the JSON Schema of manifests, e.g. to data_manifests/schema.json.",
    )
    sch.add_argument("out", metavar="OUT", help="file to write")
    sch.add_argument("--force", action="store_true", help="overwrite OUT")
    sch.set_defaults(handler=run_schema)


def run_import(args: argparse.Namespace) -> int:
    """Handle ``medimg manifest import``."""
    from pathlib import Path

    from medimg.manifests.importers import write_converted_manifest
    from medimg.modality import Modality

    source = Path(args.source)
    out = Path(args.out) if args.out else source.with_name("manifest.json")
    modality = Modality(args.modality) if args.modality else None
    path = write_converted_manifest(source, out, modality=modality, overwrite=args.force)
    print(f"wrote {path}; check the files with: medimg validate {path}")
    return 0


def run_splits(args: argparse.Namespace) -> int:
    """Handle ``medimg manifest splits``."""
    from medimg.manifests.splits import load_or_make_splits, splits_path

    splits = load_or_make_splits(args.manifest, args.folds, seed=args.seed, force=args.force)
    sizes = [len(splits.fold(k)[1]) for k in range(splits.n_folds)]
    print(f"{splits_path(args.manifest)}: {splits.n_folds} folds of {sizes} cases")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    """Handle ``medimg manifest schema``."""
    import json

    from medimg.io.writing import atomic_path
    from medimg.manifests import manifest_json_schema

    with atomic_path(args.out, overwrite=args.force) as tmp:
        tmp.write_text(json.dumps(manifest_json_schema(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0
