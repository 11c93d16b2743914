"""Detection benchmark: RetinaNet on synthetic chest CTs, FROC and CPM beside published anchors.

Run (a few minutes on 2 cores)::

    python benchmarks/bench_detection.py                       # 40 cases, 30 epochs x 100 steps
    python benchmarks/bench_detection.py --cases 60 --epochs 40 --diameters 3 30

It writes ``medimg synth ct-det``'s set (``--diameters`` narrows the nodule sizes), trains the
detection task (:mod:`pipelines.detection`, the demo's settings), predicts the test split and
prints FROC at 1/8 .. 8 false positives per scan, CPM and mAP@0.1, with a scan-bootstrap 95 %
interval of the CPM. Beside them it prints MONAI's LUNA16 RetinaNet (10-fold) FROC and
nnDetection's CPM: **published figures on real LUNA16 data, not measured here**; the synthetic
set is far easier than LUNA16, so the two columns are not comparable results, only a scale.
One torch thread, as in the demo.
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
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps", type=int, default=100, help="optimiser steps per epoch")
    p.add_argument("--diameters", type=float, nargs=2, default=(8.0, 20.0))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="keep the run here (default: temp)")
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
    print(json.dumps({"cpm": froc.cpm, "froc": froc.sensitivities, "cpm_ci": froc.cpm_ci}))


if __name__ == "__main__":
    main()
