"""``medimg import medmnist FILE.npz OUT_DIR``: public datasets into the manifest path."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medimg.modality import Modality

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``import`` command group to ``sub``."""
    group: argparse.ArgumentParser = sub.add_parser(
        "import", help="import a public dataset file as images plus a manifest"
    )
    kinds = group.add_subparsers(dest="kind", metavar="KIND", required=True)
    p: argparse.ArgumentParser = kinds.add_parser(
        "medmnist",
        help="MedMNIST .npz -> NIfTI files + dataset.json with the official split",
        description="Write every image of a MedMNIST .npz as NIfTI (1 mm grid: MedMNIST keeps "
        "no spacing) and OUT_DIR/dataset.json with the official train/val/test split.",
    )
    p.add_argument("npz", type=Path, metavar="FILE.npz")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument(
        "--modality",
        choices=[m.value for m in Modality],
        help="needed for sets medimg does not know",
    )
    p.add_argument("--class-names", help="comma-separated class names in label order")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg import medmnist``."""
    from medimg.manifests.medmnist import import_medmnist

    names = tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else None
    manifest = import_medmnist(
        args.npz, args.out_dir, modality=args.modality, class_names=names, overwrite=args.force
    )
    print(f"wrote {manifest}")
    return 0
