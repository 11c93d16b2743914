"""The detection task: lesion boxes with MONAI's RetinaNet, scored by LUNA16 FROC, CPM and mAP.

* **Samples.** Each image goes through the modality's one chain (CT: reoriented to RAS,
  resampled to ``preprocess.target_spacing_mm``, windowed); its manifest boxes (world RAS+ mm)
  are mapped onto the chain's grid through the chain's record (:mod:`._detection_boxes`:
  exact for nodules, whatever the stored orientation or obliquity). Training crops
  ``patch_size_vox`` patches, 70 % of them near a box.
* **Network and loss.** :func:`~medimg.networks.build_detector` (ResNet-FPN, ATSS matcher,
  hard-negative sampler) and its RetinaNet focal + box-regression loss, handed to the shared
  training engine as a :class:`~medimg.tasks.TrainPlan` (checkpoints, resume,
  best-by-validation-CPM; the :class:`~medimg.networks.DetectorConfig` is the model record's
  ``network``).
* **Prediction.** ``<case>.json`` per case: every box's score, class, world centre and size
  (mm, RAS+) and its box in voxels of the image's *stored* grid; resume keys as every task's.
  ``output_format="sr"`` adds ``<case>.sr.dcm`` for a DICOM case (the boxes as DICOM SR).
* **Evaluation.** FROC at 1/8 .. 8 false positives per scan, CPM and mAP at IoU 0.1 over the
  split: ``summary.json``, ``cases.csv``, ``froc.png``, slices with boxes, ``report.md``.

:func:`train`, :func:`predict` and :func:`evaluate` are the shared engines of
:mod:`medimg.tasks.engine` with this task (as ``medimg train/predict/evaluate`` run them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError
from medimg.manifests import Manifest, ResolvedCase
from medimg.networks import DetectorConfig
from medimg.tasks.base import EvaluateConfig, PredictConfig, RunFolders, TrainPlan
from medimg.training import TrainConfig
from medimg.transforms import AugmentConfig, PreprocessConfig

__all__ = [
    "DetectionConfig",
    "DetectionEvaluateOptions",
    "DetectionPredictOptions",
    "DetectionReport",
    "DetectionTask",
    "detection_classes",
    "evaluate",
    "predict",
    "train",
]


def _preprocess() -> PreprocessConfig:
    return PreprocessConfig(target_spacing_mm=(2.0, 2.0, 2.0), hu_window="lung")


def _train() -> TrainConfig:
    return TrainConfig(max_epochs=40, learning_rate=2e-3, lr_schedule="cosine")


@dataclass(frozen=True, kw_only=True)
class DetectionPredictOptions:
    """Detection's prediction options.

    Attributes
    ----------
    min_score : float
        Boxes scoring under it (in [0, 1]) are dropped.
    output_format : {"json", "sr"}
        ``<case>.json``; ``sr`` adds, for a DICOM case, ``<case>.sr.dcm`` beside it: the boxes
        as a TID 1500 SR on the series (:func:`~medimg.io.dicom.sr.write_boxes_sr`).
    """

    min_score: float = 0.0
    output_format: str = "json"

    def __post_init__(self) -> None:
        if not 0 <= self.min_score <= 1:
            raise ConfigError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.output_format not in ("json", "sr"):
            raise ConfigError(
                f"output_format must be json or sr (boxes also as DICOM SR for a DICOM case) "
                f"for detection, got {self.output_format!r}"
            )


@dataclass(frozen=True, kw_only=True)
class DetectionEvaluateOptions:
    """Detection's evaluation options.

    Attributes
    ----------
    iou_threshold : float
        Box IoU of a mAP match, in (0, 1] (0.1: MONAI's LUNA16 tutorial).
    n_bootstrap : int
        Scan bootstrap resamples for FROC intervals (0: none).
    figures : int
        Cases drawn as slices with boxes (>= 0).
    """

    iou_threshold: float = 0.1
    n_bootstrap: int = 0
    figures: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.iou_threshold <= 1:
            raise ConfigError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.n_bootstrap < 0 or self.figures < 0:
            raise ConfigError(
                f"n_bootstrap and figures must be >= 0, got {self.n_bootstrap} and {self.figures}"
            )


@dataclass(frozen=True, kw_only=True)
class DetectionConfig(RunFolders):
    """A detection run: training settings and where prediction and evaluation go.

    Attributes
    ----------
    manifest, out_dir : Path
        Detection manifest (schema 2, boxes); run folder (``model/``, ``predictions/``,
        ``evaluation/``).
    preprocess : PreprocessConfig
        Default: 2 mm isotropic, the ``lung`` HU window.
    augment : None
        Detection trains without augmentation for now (must be None).
    detector : DetectorConfig
        Architecture; ``num_classes`` and ``in_channels`` are set from the manifest.
    patch_size_vox : (int, int, int)
        Training crop, RAS voxel order; each a multiple of ``detector.size_divisible``.
    batch_size : int
        Crops per optimiser step.
    train : TrainConfig
        Epochs, optimiser, schedule, device (default 40 epochs, AdamW 2e-3, cosine).
    validation_fraction : float
        Share of training cases held out when the manifest has no validation split.
    seed : int
    model_folder, predictions_folder : Path, optional
        Model to predict with (model or run folder; default ``out_dir/model``); prediction
        folder (default ``out_dir/predictions``).
    """

    manifest: Path
    out_dir: Path
    preprocess: PreprocessConfig = field(default_factory=_preprocess)
    augment: AugmentConfig | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    patch_size_vox: tuple[int, int, int] = (64, 64, 64)
    batch_size: int = 2
    train: TrainConfig = field(default_factory=_train)
    validation_fraction: float = 0.2
    seed: int = 0
    model_folder: Path | None = None
    predictions_folder: Path | None = None

    def __post_init__(self) -> None:
        for name in ("manifest", "out_dir", "model_folder", "predictions_folder"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, Path(value))
        if self.augment is not None:
            raise ConfigError("augment must be None for detection (no box-aware augmentation yet)")
        div = self.detector.size_divisible
        patch = tuple(self.patch_size_vox)
        if len(patch) != 3 or any(p < d or p % d for p, d in zip(patch, div, strict=False)):
            raise ConfigError(
                f"patch_size_vox must be 3 positive multiples of {div} (the detector's stride), "
                f"got {self.patch_size_vox}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )


@dataclass(frozen=True)
class DetectionReport:
    """Scores and report files of a detection evaluation (``summary`` is ``summary.json``)."""

    out_dir: Path
    froc: Any
    average_precision: Any
    summary: dict[str, Any]
    figures: tuple[Path, ...]


def detection_classes(manifest: Manifest, path: Path) -> tuple[str, ...]:
    """The declared classes of a detection manifest; :class:`ConfigError` for any other."""
    if manifest.task != "detection" or not manifest.classes:
        raise ConfigError(
            f"{path} must be a detection manifest (schema 2, 'classes' and case 'boxes'), got "
            f"a {manifest.task} manifest; use the {manifest.task} task for it"
        )
    return tuple(manifest.classes)


class DetectionTask:
    """The detection task (the attributes of :class:`~medimg.tasks.Task`)."""

    name: str = "detection"
    metric: str = "CPM"
    head_type: type[Any] | None = None
    train_config: type[Any] = DetectionConfig
    predict_options: type[Any] = DetectionPredictOptions
    evaluate_options: type[Any] = DetectionEvaluateOptions

    def evaluation_dir(self, run_dir: Path, split: str) -> Path:
        """``run_dir/evaluation``."""
        return run_dir / "evaluation"

    def check_manifest(self, manifest: Manifest, path: Path) -> None:
        """Detection needs a detection manifest with declared classes."""
        detection_classes(manifest, path)

    def plan_training(self, cfg: DetectionConfig, manifest: Manifest, fingerprint: Any,
                      chain: Any, split: Any) -> TrainPlan:  # fmt: skip
        """Seeded crops (70 % near a box), RetinaNet's loss, validation CPM of whole scans."""
        from medimg.tasks._detection_train import plan_detector

        return plan_detector(cfg, manifest, chain, split)

    def load_model(self, model_dir: Path, *, trust: Any = None, passphrase: Any = None) -> Any:
        """The trained detector of a model folder or package (``load_detector``)."""
        from medimg.tasks._detection_train import load_detector
        from medimg.training.bundle import open_model

        return load_detector(open_model(model_dir, trust=trust, passphrase=passphrase))

    def predictor(self, bundle: Any, chain: Any, cfg: PredictConfig) -> Any:
        """Boxes per case as ``<case>.json`` (:class:`._detection_predict.DetectionPredictor`)."""
        from medimg.tasks._detection_predict import DetectionPredictor

        return DetectionPredictor(bundle, chain, cfg)

    def evaluate(
        self, cases: Sequence[ResolvedCase], manifest: Manifest, cfg: EvaluateConfig
    ) -> DetectionReport:
        """FROC, CPM and mAP over ``cases``; the report (:mod:`._detection_report`)."""
        from medimg.tasks._detection_report import report
        from medimg.tasks.engine import options_of

        options = options_of(self, cfg.options, "evaluate")
        result: DetectionReport = report(cases, detection_classes(manifest, cfg.manifest), cfg,
                                         options)  # fmt: skip
        return result


TASK = DetectionTask()


def train(cfg: DetectionConfig, *, resume: bool = False) -> Any:
    """Train the detector; keep the best checkpoint by validation CPM.

    The shared :func:`medimg.tasks.engine.train` with this task (errors included); returns a
    :class:`~medimg.tasks.TrainResult`.
    """
    from medimg.tasks.engine import train as train_task

    return train_task(TASK, cfg, resume=resume)


def predict(cfg: PredictConfig) -> Any:
    """Predict every case of ``cfg.split``: ``<case>.json`` of world and stored-grid boxes.

    The shared :func:`medimg.tasks.engine.predict` with this task (resume, locking, error
    policy); returns a :class:`~medimg.tasks.PredictResult` whose ``path`` is the folder.
    """
    from medimg.tasks.engine import predict as predict_task

    return predict_task(TASK, cfg)


def evaluate(cfg: EvaluateConfig) -> DetectionReport:
    """Score ``cfg.predictions_dir`` against the boxes of ``cfg.split``; write the report.

    The shared :func:`medimg.tasks.engine.evaluate` with this task (errors included).
    """
    from medimg.tasks.engine import evaluate as evaluate_task

    report: DetectionReport = evaluate_task(TASK, cfg)
    return report
