"""``medimg synth {ct-seg,xray-cls,ct-det} OUT_DIR``: write a synthetic dataset and its manifest."""

from __future__ import annotations

import argparse
from typing import Any

from medimg.cli import non_negative_int, positive_int

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``synth`` subcommand group to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "synth",
        help="write a synthetic dataset (phantoms + manifest) to try medimg without real data",
        description="Write seeded phantom images and OUT_DIR/dataset.json, which validates as "
        "is. Refuses to overwrite without --force.",
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, default, helptext in (
        ("ct-seg", 10, "CT abdomen, liver/spleen/lesion segmentation (3D)"),
        ("xray-cls", 20, "chest X-ray, normal/nodule classification (2D)"),
        (
            "ct-det",
            20,
            "chest CT, lung nodule detection (3D): nodules of 3 to 30 mm among vessels, boxes "
            "in world RAS+ mm, on oblique LPS/RAS grids; training/validation/test splits",
        ),
    ):
        k = kinds.add_parser(kind, help=helptext, description=helptext)
        k.add_argument("out_dir", metavar="OUT_DIR", help="folder to write into")
        k.add_argument(
            "--cases", type=positive_int, default=default, help=f"cases (default {default})"
        )
        k.add_argument("--seed", type=non_negative_int, default=0, help="dataset seed (default 0)")
        if kind == "ct-det":
            k.add_argument(
                "--background",
                metavar="CT_FILE",
                help="insert the nodules into this real chest CT (HU, e.g. NIfTI) instead of "
                "phantoms; every case is the same scan with its own nodules",
            )
            k.add_argument(
                "--masks",
                action="store_true",
                help="also write each nodule mask (labelsTr/) and dataset_segmentation.json, a "
                "segmentation manifest of the same cases and splits, to compare segmentation "
                "lesion-wise with the detector on the same nodules",
            )
        k.add_argument("--force", action="store_true", help="overwrite an existing dataset")
        k.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg synth``."""
    if args.kind == "ct-det":
        from medimg.synthetic.detection_datasets import write_ct_detection_dataset

        path = write_ct_detection_dataset(
            args.out_dir,
            args.cases,
            seed=args.seed,
            background=args.background,
            overwrite=args.force,
            masks=args.masks,
        )
    else:
        from medimg.synthetic.datasets import (
            write_ct_segmentation_dataset,
            write_xray_classification_dataset,
        )

        write = (
            write_ct_segmentation_dataset
            if args.kind == "ct-seg"
            else write_xray_classification_dataset
        )
        path = write(args.out_dir, args.cases, seed=args.seed, overwrite=args.force)
    print(f"wrote {args.cases} cases and {path}")
    return 0
