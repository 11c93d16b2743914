"""``medimg fingerprint MANIFEST``: dataset statistics that configure preprocessing."""

from __future__ import annotations

import argparse
from typing import Any

from medimg.cli import non_negative_int, positive_int

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``fingerprint`` subcommand to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "fingerprint",
        help="compute (or reuse) a manifest's dataset fingerprint: spacings, shapes, intensities",
        description="Compute spacings, shapes, foreground intensity statistics, label fractions "
        "and class counts of the training and validation cases, one case at a time, and save "
        "them as <manifest stem>.fingerprint.json beside the manifest. A saved fingerprint is "
        "reused while the manifest's bytes, the sampling settings and the content (size and "
        "SHA-256) of every input file are unchanged, else recomputed; the last line says "
        "which and why.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="manifest JSON file")
    p.add_argument("--force", action="store_true", help="recompute even if a saved one matches")
    p.add_argument(
        "--max-samples",
        type=positive_int,
        default=10_000_000,
        help="foreground voxels kept per channel for percentiles, over all cases "
        "(default 10000000, as nnU-Net)",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the voxel subsampling (>= 0)"
    )
    p.add_argument("--json", action="store_true", help="print the whole fingerprint as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg fingerprint``."""
    from medimg.fingerprint import fingerprint_path, update_fingerprint

    update = update_fingerprint(
        args.manifest, max_samples=args.max_samples, seed=args.seed, force=args.force
    )
    fp = update.fingerprint
    if args.json:
        print(fp.to_json())
        return 0
    print(f"{fingerprint_path(args.manifest)}")
    print(f"  cases            {fp.n_cases}")
    print(f"  median spacing   {' x '.join(f'{v:g}' for v in fp.median_spacing_mm)} mm (RAS)")
    print(f"  p10 spacing      {' x '.join(f'{v:g}' for v in fp.p10_spacing_mm)} mm")
    aniso = f"yes, axis {fp.lowres_axis}" if fp.anisotropic else "no"
    print(f"  anisotropic      {aniso} (ratio {fp.anisotropy_ratio:.3g})")
    print(f"  median shape     {' x '.join(map(str, fp.median_shape_vox))} voxels")
    for modality, s in zip(fp.modalities, fp.intensity, strict=True):
        print(
            f"  {modality.value:<3} {fp.intensity_source:<10}   mean {s.mean:.4g} std {s.std:.4g} "
            f"p0.5 {s.percentile_00_5:.4g} p99.5 {s.percentile_99_5:.4g}"
        )
    if fp.label_fractions:
        fractions = ", ".join(f"{k}: {v:.4f}" for k, v in fp.label_fractions.items())
        print(f"  label fractions  {fractions}")
    if fp.class_counts:
        print(f"  class counts     {', '.join(f'{k}: {v}' for k, v in fp.class_counts.items())}")
    print(f"  {'reused' if update.reused else 'recomputed':<16} {update.reason}")
    return 0
