"""``medimg demo``: the README's main job, end to end, on a synthetic CT organ dataset.

Generate a seeded dataset with its manifest, validate it, train a small DynUNet, predict the
held-out cases onto their original (oblique, anisotropic, LPS- or RAS-stored) grids, evaluate,
pack the model as one package (``model.medimg``, :func:`medimg.packages.pack_model`) and write
a report naming it and its SHA-256. About two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from medimg.cli import non_negative_int, positive_int

__all__ = ["NOT_YET", "register", "run_stages"]

logger = logging.getLogger(__name__)

NOT_YET = (
    "post-processing (largest connected component)",
    "cross-validation folds and ensembling; one held-out split is used",
    "DICOM input: the demo writes NIfTI; `medimg convert` handles DICOM series",
)
"""What the demo, and the pipeline under it, do not do yet (printed and written in the report)."""

DEMO_SETTINGS = (
    "training augmentation off: a minute of training on clean phantoms converges faster "
    "without it (the pipeline's default, SegmentationConfig.augment, turns it on)",
    "no test-time mirroring (SegmentationConfig.mirror_axes is empty by default)",
)
"""Where the demo departs from the pipeline's defaults (written in the report)."""

PACKAGE = "model.medimg"
"""The demo's model package, in ``--out``."""


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run the end-to-end segmentation demo on a synthetic CT dataset",
        description="Generate a seeded synthetic CT organ dataset (liver, spleen, lesion) with "
        "its manifest, validate it, train a small DynUNet, predict the held-out cases onto "
        "their original grids, evaluate (Dice, HD95, surface Dice, volumes) and write a report.",
    )
    p.add_argument(
        "task", nargs="?", choices=("segmentation", "detection"), default="segmentation",
        help="segmentation (default) or detection: the synthetic chest-CT nodule demo "
        "(synth ct-det, RetinaNet, FROC and CPM; prints 'CPM 0.xx')",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=Path("medimg-demo"), help="output folder (./medimg-demo)"
    )
    p.add_argument(
        "--cases", type=positive_int, default=None,
        help="synthetic cases, 1 in 5 held out (default: segmentation 10, detection 40)",
    )  # fmt: skip
    p.add_argument(
        "--epochs", type=positive_int, default=None,
        help="training epochs (default: segmentation 60, detection 25 of 100 steps)",
    )  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--progress", action="store_true", help="show a training progress bar")
    p.add_argument("--force", action="store_true", help="replace an earlier demo in --out")
    p.set_defaults(handler=run)


def _config(args: argparse.Namespace, manifest: Path) -> Any:
    from medimg.training import TrainConfig
    from pipelines.segmentation import SegmentationConfig

    return SegmentationConfig(
        manifest=manifest,
        out_dir=args.out / "run",
        network="dynunet",
        base_features=8,
        deep_supervision=True,
        roi_size_vox=(32, 32, 16),
        batch_size=2,
        samples_per_case=2,
        augment=None,  # see DEMO_SETTINGS
        train=TrainConfig(
            max_epochs=args.epochs,
            learning_rate=1e-2,
            validate_every_epochs=5,
            device=args.device,
            progress=args.progress,
        ),
        seed=args.seed,
    )


def run_stages(
    pipeline: Any, cfg: Any, times: dict[str, float], start: float
) -> tuple[Any, Any, Any]:
    """Train, predict and evaluate ``cfg`` with ``pipeline``, timing each stage into ``times``.

    ``times`` holds the stages so far, timed from ``start`` (``time.perf_counter()``).
    """
    results = []
    for stage, step in (("training", pipeline.train), ("prediction", pipeline.predict),
                        ("evaluation", pipeline.evaluate)):  # fmt: skip
        results.append(step(cfg))
        times[stage] = time.perf_counter() - start - sum(times.values())
    trained, predicted, scores = results
    return trained, predicted, scores


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg demo`` and ``medimg demo detection``."""
    if args.task == "detection":
        from medimg.cli._demo_detection import run_detection

        return run_detection(args)
    args.cases = 10 if args.cases is None else args.cases
    args.epochs = 60 if args.epochs is None else args.epochs
    import pipelines.segmentation as pipeline
    from medimg.errors import OutputExistsError
    from medimg.io.integrity import sha256_file
    from medimg.manifests import load_manifest
    from medimg.packages import pack_model
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    run_dir: Path = args.out / "run"
    for earlier in (run_dir, args.out / PACKAGE):
        if earlier.exists() and not args.force:
            raise OutputExistsError(
                f"{earlier}: an earlier demo is there; pass --force to replace it"
            )
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    times: dict[str, float] = {}
    start = time.perf_counter()
    manifest = write_ct_segmentation_dataset(
        args.out / "data", args.cases, seed=args.seed, overwrite=args.force
    )
    load_manifest(manifest)  # raises ManifestError listing every problem
    times["data + validation"] = time.perf_counter() - start
    cfg = _config(args, manifest)
    trained, predicted, scores = run_stages(pipeline, cfg, times, start)
    package = pack_model(run_dir, args.out / PACKAGE, overwrite=args.force)
    times["packaging"] = time.perf_counter() - start - sum(times.values())
    packaged = (package, sha256_file(package))
    report = _write_report(args.out / "report.md", cfg, trained, predicted, scores, times,
                           packaged)  # fmt: skip
    _print_summary(scores, times, report, packaged)
    return 0


def _write_report(
    path: Path, cfg: Any, trained: Any, predicted: Any, scores: Any, times: dict[str, float],
    package: tuple[Path, str],
) -> Path:  # fmt: skip
    from medimg.io import atomic_path

    fit = trained.fit
    lines = [
        "# medimg demo report",
        "",
        f"Dataset: `{cfg.manifest}` (synthetic CT: liver, spleen, liver lesion).",
        f"Training cases: {', '.join(trained.train_cases)}; "
        f"validation: {', '.join(trained.validation_cases) or 'none'}.",
        f"Network: {cfg.network} ({cfg.base_features} base features), patch "
        f"{'x'.join(map(str, cfg.roi_size_vox))} voxels, {fit.epochs_run} epochs; best "
        f"validation Dice {fit.best_metric:.4f} at epoch {fit.best_epoch}.",
        f"Checkpoint: `{trained.checkpoint}` (SHA-256 `{trained.checkpoint_sha256}`).",
        f"Predictions (on each image's stored grid): `{predicted.out_dir}`.",
        f"Package: `{package[0]}` (SHA-256 `{package[1]}`): the model as one file to hand "
        f"over (`medimg model verify {package[0]}`, `medimg predict --model {package[0]} "
        "--manifest M --out DIR`, or `medimg.load_model` in Python).",
        "",
        "| case | label | Dice | HD95 (mm) | surface Dice | volume diff (mL) |",
        "|---|---|---|---|---|---|",
    ]
    for case in scores.cases:
        lines += [
            f"| {case.case_id} | {s.name} | {s.dice:.4f} | {s.hd95_mm:.2f} | "
            f"{s.surface_dice:.4f} | {s.volume_difference_ml:+.2f} |"
            for s in case.labels
        ]
    lines += ["", f"**Mean held-out Dice: {scores.summary['mean_dice']:.4f}**", ""]
    lines += [f"- {name}: {seconds:.1f} s" for name, seconds in times.items()]
    lines += ["", f"Figures and tables: `{scores.out_dir}`.", "", "Demo settings:"]
    lines += [f"- {item}" for item in DEMO_SETTINGS]
    lines += ["", "Not done yet:"]
    lines += [f"- {item}" for item in NOT_YET]
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _print_summary(
    scores: Any, times: dict[str, float], report: Path, package: tuple[Path, str]
) -> None:
    print(f"mean held-out Dice {scores.summary['mean_dice']:.4f} over {len(scores.cases)} cases")
    for name, stats in scores.summary["labels"].items():
        print(
            f"  {name}: Dice {stats['dice']['mean']:.4f}, HD95 {stats['hd95_mm']['mean']:.2f} mm, "
            f"surface Dice {stats['surface_dice']['mean']:.4f}"
        )
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    print(f"package: {package[0]} sha256 {package[1]}")
    print(f"report: {report}")
    print("not done yet: " + "; ".join(NOT_YET))
