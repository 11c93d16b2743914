"""Detection benchmark: RetinaNet on synthetic chest CTs, FROC and CPM beside published anchors.

Run (a few minutes on 2 cores)::

    python benchmarks/bench_detection.py             # the demo's: 40 cases, 25 x 100 steps
    python benchmarks/bench_detection.py --cases 60 --epochs 40 --diameters 3 30

It writes ``medimg synth ct-det``'s set (``--diameters`` narrows the nodule sizes), trains the
detection task (:mod:`pipelines.detection`, the demo's settings), predicts the test split and
prints FROC at 1/8 .. 8 false positives per scan, CPM and mAP@0.1, with a scan-bootstrap 95 %
interval of the CPM. Beside them it prints MONAI's LUNA16 RetinaNet (10-fold) FROC and
nnDetection's CPM: **published figures on real LUNA16 data, not measured here**; the synthetic
set is far easier than LUNA16, so the two columns are not comparable results, only a scale.
One torch thread, as in the demo.

Segmentation on the same lesions (skip with ``--no-segmentation``): the set is written with its
nodule masks (``synth ct-det --masks``), a small DynUNet is trained on the same training cases
(``--seg-epochs``) and its test label maps are scored two ways against the same nodules: the
overlap rule of the segmentation report (a nodule is found when a predicted component touches
it) and the LUNA16 rule the detector is scored by (a component's centre of mass inside the
nodule's radius). A label map is one operating point, so the detector is read off its FROC at
the false positives per scan the segmentation made.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from medimg.cli._demo_detection import CASES, DIAMETERS_MM, EPOCHS, STEPS_PER_EPOCH

    p.add_argument("--cases", type=int, default=CASES)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--steps", type=int, default=STEPS_PER_EPOCH, help="optimiser steps per epoch")
    p.add_argument("--diameters", type=float, nargs=2, default=DIAMETERS_MM)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="keep the run here (default: temp)")
    p.add_argument(
        "--no-segmentation",
        action="store_true",
        help="skip the segmentation comparison on the same lesions",
    )
    p.add_argument("--seg-epochs", type=int, default=60, help="segmentation epochs")
    return p.parse_args()


def main() -> None:
    """Run the benchmark and print the table."""
    import torch

    from medimg.evaluation import PUBLISHED_LUNA16
    from medimg.synthetic.detection import ChestSettings
    from medimg.synthetic.detection_datasets import write_ct_detection_dataset
    from medimg.tasks import EvaluateConfig
    from medimg.tasks.detection import DetectionEvaluateOptions
    from medimg.training import TrainConfig
    from medimg.transforms import PreprocessConfig
    from pipelines.detection import DetectionConfig, evaluate, predict, train

    args = _args()
    torch.set_num_threads(1)
    root = args.out or Path(tempfile.mkdtemp(prefix="bench_detection_"))
    t0 = time.perf_counter()
    manifest = write_ct_detection_dataset(
        root / "data", args.cases, seed=args.seed, overwrite=True,
        settings=ChestSettings(diameter_range_mm=tuple(args.diameters)),
        masks=not args.no_segmentation,
    )  # fmt: skip
    cfg = DetectionConfig(
        manifest=manifest, out_dir=root / "run",
        preprocess=PreprocessConfig(target_spacing_mm=(2.0, 2.0, 2.0), hu_window="lung"),
        patch_size_vox=(48, 48, 48),
        train=TrainConfig(max_epochs=args.epochs, iterations_per_epoch=args.steps,
                          learning_rate=2e-3, lr_schedule="cosine", validate_every_epochs=5),
        seed=args.seed,
    )  # fmt: skip
    fit = train(cfg).fit
    t_train = time.perf_counter() - t0
    predict(cfg)
    report = evaluate(EvaluateConfig(
        manifest=manifest, predictions_dir=cfg.predictions_dir, out_dir=root / "run/evaluation",
        overwrite=True, options=DetectionEvaluateOptions(n_bootstrap=1000),
    ))  # fmt: skip
    froc = report.froc
    monai, nndet = PUBLISHED_LUNA16
    print(f"synthetic chest CT, {froc.n_scans} test scans, {froc.n_lesions} nodules "
          f"{args.diameters[0]:g}-{args.diameters[1]:g} mm; best validation CPM "
          f"{fit.best_metric or 0:.3f}; data + training {t_train:.0f} s, total "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    print(
        f"{'FP/scan':>8} | {'medimg (measured, synthetic)':>28} | "
        f"{'MONAI RetinaNet LUNA16 (published, real data, not measured here)':>64}"
    )
    for rate, ours, theirs in zip(froc.fp_rates, froc.sensitivities, monai.sensitivities or (),
                                  strict=True):  # fmt: skip
        print(f"{rate:>8g} | {ours:>28.3f} | {theirs:>64.3f}")
    lo, hi = froc.cpm_ci or (float("nan"), float("nan"))
    print(f"{'CPM':>8} | {froc.cpm:>17.3f} [{lo:.2f}, {hi:.2f}] | {monai.cpm:>64.3f}")
    print(f"nnDetection LUNA16 CPM {nndet.cpm:.2f} (published, real data, not measured here)")
    print(f"mAP@0.1 {report.average_precision.mean_ap:.3f} (measured, synthetic)")
    result = {"cpm": froc.cpm, "froc": froc.sensitivities, "cpm_ci": froc.cpm_ci}
    if not args.no_segmentation:
        result["segmentation"] = _segmentation_on_the_same_lesions(args, root, manifest, cfg)
    print(json.dumps(result))


def _segmentation_on_the_same_lesions(args, root, manifest, det_cfg):
    """Train segmentation on the masks; print it beside the detector at its FP per scan."""
    import numpy as np

    from medimg.evaluation import Detection, ScanFindings, detections_from_label_map, froc
    from medimg.io import load_volume
    from medimg.manifests import load_manifest, resolve_cases
    from medimg.synthetic.detection_datasets import SEGMENTATION_MANIFEST
    from medimg.tasks._detection_report import findings_of
    from medimg.training import TrainConfig
    from pipelines.segmentation import SegmentationConfig, evaluate, predict, train

    t0 = time.perf_counter()
    seg = SegmentationConfig(
        manifest=manifest.parent / SEGMENTATION_MANIFEST, out_dir=root / "seg",
        preprocess=det_cfg.preprocess, network="dynunet", base_features=8,
        roi_size_vox=(48, 48, 48), batch_size=2, samples_per_case=4, augment=None,
        train=TrainConfig(max_epochs=args.seg_epochs, learning_rate=1e-2,
                          validate_every_epochs=10),
        seed=args.seed,
    )  # fmt: skip
    train(seg)
    predict(seg)
    overlap = evaluate(seg).summary["labels"]["nodule"]["lesions"]
    seconds = time.perf_counter() - t0
    # the LUNA16 rule on the same nodules: each predicted component is a detection (score 1)
    cases = [c for c in resolve_cases(load_manifest(manifest), manifest) if c.split == "test"]
    det_scans, seg_scans = [], []
    for case in cases:
        path = det_cfg.predictions_dir / f"{case.case_id}.json"
        det_scans.append(findings_of(case, ("nodule",), json.loads(path.read_text()), path))
        label = load_volume(seg.predictions_dir / f"{case.case_id}.nii.gz")
        found = detections_from_label_map(np.asarray(label.array[0]), label.affine)
        seg_scans.append(ScanFindings(
            scan_id=case.case_id, lesions=det_scans[-1].lesions,
            detections=tuple(Detection(center_mm=d.center_mm, box=d.box, score=1.0, label=0)
                             for d in found),
        ))  # fmt: skip
    # every component has score 1: at (components per scan) FP/scan the FROC counts them all,
    # so its sensitivity is the share of nodules whose radius holds some component's centre
    per_scan = sum(len(s.detections) for s in seg_scans) / len(seg_scans)
    hits = froc(seg_scans, fp_rates=(max(per_scan, 1 / 8),))
    rate = overlap["false_positives_per_scan"]
    at_rate = froc(det_scans, fp_rates=(max(rate, 1 / 8),))
    print(f"segmentation on the same {overlap['n_reference']} nodules (DynUNet, "
          f"{args.seg_epochs} epochs, {seconds:.0f} s): one operating point")  # fmt: skip
    print(f"  overlap rule: sensitivity {overlap['sensitivity']:.3f} at "
          f"{rate:.3f} FP/scan")  # fmt: skip
    print(f"  LUNA16 centre rule: sensitivity {hits.sensitivities[0]:.3f} with every component "
          "counted")  # fmt: skip
    print(f"  detector at {max(rate, 1 / 8):.3f} FP/scan: sensitivity "
          f"{at_rate.sensitivities[0]:.3f}")  # fmt: skip
    return {"overlap": overlap, "luna16_sensitivity": hits.sensitivities[0],
            "detector_at_same_fp": at_rate.sensitivities[0]}  # fmt: skip


if __name__ == "__main__":
    main()
