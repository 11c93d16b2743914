"""``medimg demo``: the README's main job, on synthetic data."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run the end-to-end demo on a synthetic CT dataset",
        description="Generate a seeded synthetic CT dataset (oblique, anisotropic, LPS-stored "
        "cases), write it to disk and inspect it.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("medimg-demo"),
        help="output folder (default: ./medimg-demo)",
    )
    p.add_argument("--cases", type=int, default=6, help="number of synthetic cases (default: 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing demo folder's files")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg demo``."""
    import numpy as np

    from medimg.io import load_volume
    from medimg.synthetic import ct_phantom, grid_affine

    out: Path = args.out
    data_dir = out / "data"
    rng = np.random.default_rng(args.seed)
    grids = [("RAS", (0.0, 0.0, 0.0)), ("LPS", (8.0, -5.0, 12.0)), ("LAS", (0.0, 15.0, -6.0))]
    for i in range(args.cases):
        codes, rotation = grids[i % len(grids)]
        affine = grid_affine((40, 32, 20), (4.0, 4.5, 7.0), axcodes=codes, rotation_deg=rotation)
        phantom = ct_phantom((40, 32, 20), affine=affine, seed=rng)
        image_path, _ = phantom.write(data_dir, f"case_{i:03d}", overwrite=args.force)
        volume = load_volume(image_path)
        logger.info(
            "case_%03d: %s, %s, spacing %s mm",
            i,
            "x".join(map(str, volume.spatial_shape)),
            "".join(volume.axcodes),
            "x".join(f"{s:.2f}" for s in volume.spacing_mm),
        )
    print(f"wrote {args.cases} synthetic CT cases (image + label) to {data_dir}")
    print("inspect one with: medimg info", data_dir / "case_000_image.nii.gz")
    print(
        "not there yet: manifest validation, training, prediction and evaluation "
        "(the segmentation pipeline); this demo stops after writing and reading the data"
    )
    return 0
