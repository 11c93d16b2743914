"""Classification pipeline (2D and 3D): :func:`train`, :func:`predict` and :func:`evaluate`.

Each step is a call into :mod:`medimg`: the manifest is validated (:mod:`medimg.manifests`,
``task == "classification"``), the dataset fingerprint configures the modality's one
preprocessing chain (:func:`medimg.transforms.preprocessing_for`; the X-ray chain is 2D), the
seeded training augmentation is :func:`medimg.transforms.augmentation_for`, the network comes
from :func:`medimg.networks.build_network` (DenseNet121, ResNet-18/50, EfficientNet-B0), training
from :func:`medimg.training.fit` with a class-weighted loss or a class-balanced sampler, and the
scores and figures from :mod:`medimg.evaluation`. The model is chosen by validation AUC.

Everything lands under ``cfg.out_dir``::

    model/        model.json, classifier.json, fingerprint.json, best.pt, last.pt, run.json,
                  curves.png
    predictions/  <split>.csv (case, status, predicted class, one probability per class),
                  <split>.summary.json (per case: status, result, resume key), run.json
    evaluation/<split>/  cases.csv, summary.json, roc.png, confusion.png, run.json

Multi-label: manifests give one class per case; ``multi_label=True`` trains independent
sigmoid outputs with binary cross-entropy (class weights become ``pos_weight``) against the
one-hot class, and the scores are one-vs-rest on the sigmoid outputs.

Notebook use: ``from pipelines.classification import ClassificationConfig, train, predict``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medimg.errors import ConfigError
from medimg.evaluation import (
    ClassificationScores,
    save_confusion_figure,
    save_roc_figure,
    save_training_curves,
    score_classification,
    sensitivity_specificity,
    write_json,
)
from medimg.fingerprint import Fingerprint, load_or_compute_fingerprint
from medimg.inference import BatchCase, BatchModel, CaseRecord, PredictionBatch, run_batch
from medimg.io.writing import atomic_path
from medimg.keys import Keys
from medimg.manifests import Manifest, ResolvedCase, load_manifest, resolve_cases
from medimg.modality import Modality
from medimg.networks import NetworkConfig, Task, build_network, lookup_network
from medimg.training import (
    BEST,
    LAST,
    FitResult,
    TrainConfig,
    apply_chain,
    balanced_class_weights,
    balanced_indices,
    classification_loss,
    epoch_batches,
    fit,
    load_model_bundle,
    save_model_bundle,
    seed_everything,
    select_device,
    split_cases,
    training_lock,
    utc_now,
    write_run_record,
)
from medimg.transforms import AugmentConfig, PreprocessConfig, augmentation_for, preprocessing_for
from medimg.transforms.cache import chain_key

__all__ = [
    "BALANCING",
    "CasePrediction",
    "ClassificationConfig",
    "EvaluateResult",
    "PredictResult",
    "TrainResult",
    "evaluate",
    "load_samples",
    "predict",
    "predict_probabilities",
    "train",
]

logger = logging.getLogger(__name__)

IMAGE, CLASS, CASE_ID = Keys.IMAGE.value, Keys.CLASS.value, Keys.CASE_ID.value
BALANCING = ("loss", "sampler", "none")
"""Class-imbalance handling: inverse-frequency loss weights, a class-balanced sampler, none."""
_HEAD = "classifier.json"
Probabilities = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True, kw_only=True)
class ClassificationConfig:
    """Everything a classification run needs; saved in each stage's ``run.json``.

    Attributes
    ----------
    manifest, out_dir : Path
        Dataset manifest (with ``classes``); run folder (layout in the module docstring).
    preprocess : PreprocessConfig
        Preprocessing options; unset ones come from the dataset fingerprint.
    augment : AugmentConfig or None
        Training augmentation of the modality (:func:`~medimg.transforms.augmentation_for`);
        None trains without.
    network : str
        ``densenet121``, ``resnet18``, ``resnet50`` or ``efficientnet-b0``.
    width_factor, stem_stride : float, int
        Network size (see :class:`~medimg.networks.NetworkConfig`).
    input_size_vox : tuple of int, optional
        Pad or crop every preprocessed image (centred) to this size; needed when the
        preprocessed images differ in shape.
    batch_size : int
        Images per optimizer step.
    balance : {"loss", "sampler", "none"}
        Class-imbalance handling (:data:`BALANCING`).
    multi_label : bool
        Independent sigmoid outputs and binary cross-entropy instead of softmax.
    threshold : float
        Probability at which the positive class is called (binary sensitivity/specificity,
        per-class one-vs-rest rates), in (0, 1).
    train : TrainConfig
        Epochs or iterations, optimizer, schedule, early stopping, device, precision, progress.
    validation_fraction : float
        Share of training cases held out when the manifest has no validation split.
    seed : int
        Seeds the generators once, the split, the sampler and the augmentation.
    """

    manifest: Path
    out_dir: Path
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    network: str = "resnet18"
    width_factor: float = 1.0
    stem_stride: int = 1
    input_size_vox: tuple[int, ...] | None = None
    batch_size: int = 32
    balance: str = "loss"
    multi_label: bool = False
    threshold: float = 0.5
    train: TrainConfig = field(default_factory=TrainConfig)
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest", Path(self.manifest))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        name = lookup_network(self.network)
        if name.task is not Task.CLASSIFICATION:
            raise ConfigError(f"network must be a classification network, got {self.network!r}")
        object.__setattr__(self, "network", name.value)
        if self.balance not in BALANCING:
            raise ConfigError(
                f"balance must be one of {', '.join(BALANCING)}, got {self.balance!r}"
            )
        size = self.input_size_vox
        if size is not None and (len(size) not in (2, 3) or min(size) < 1):
            raise ConfigError(f"input_size_vox must be 2 or 3 positive integers, got {size}")
        if self.batch_size < 1 or not 0 < self.threshold < 1:
            raise ConfigError(
                f"batch_size must be >= 1 and threshold in (0, 1), "
                f"got {self.batch_size} and {self.threshold}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )

    @property
    def model_dir(self) -> Path:
        """Where :func:`train` writes the model."""
        return self.out_dir / "model"


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced: the fit, the checkpoint and the case split."""

    model_dir: Path
    checkpoint: Path
    checkpoint_sha256: str
    fit: FitResult
    train_cases: tuple[str, ...]
    validation_cases: tuple[str, ...]


@dataclass(frozen=True)
class CasePrediction:
    """One case of :func:`predict`; ``status``: ``written``, ``skipped`` (done), ``failed``."""

    case_id: str
    status: str
    predicted: str | None = None
    probabilities: tuple[float, ...] | None = None
    error: str | None = None


@dataclass(frozen=True)
class PredictResult:
    """Every case of :func:`predict` and the CSV holding them."""

    path: Path
    cases: tuple[CasePrediction, ...]


@dataclass(frozen=True)
class EvaluateResult:
    """Scores and report files of :func:`evaluate`."""

    out_dir: Path
    scores: ClassificationScores
    summary: dict[str, Any]
    figures: tuple[Path, ...]


def _classes(manifest: Manifest, path: Path) -> tuple[str, ...]:
    if manifest.task != "classification" or manifest.classes is None:
        raise ConfigError(
            f"manifest {path} must be a classification manifest (with 'classes'), "
            f"got task {manifest.task!r}"
        )
    return manifest.classes


def _setup(cfg: ClassificationConfig) -> tuple[Manifest, Fingerprint, Any]:
    manifest = load_manifest(cfg.manifest)
    _classes(manifest, cfg.manifest)
    fingerprint = load_or_compute_fingerprint(cfg.manifest, seed=cfg.seed)
    chain = preprocessing_for(manifest.channels[0].modality, cfg.preprocess, fingerprint)
    return manifest, fingerprint, chain


def _sized(image: Any, size: Sequence[int] | None) -> torch.Tensor:
    tensor = torch.as_tensor(image).as_subclass(torch.Tensor).float()
    if size is None:
        return tensor
    from monai.transforms.croppad.array import ResizeWithPadOrCrop

    if len(size) != tensor.ndim - 1:
        raise ConfigError(
            f"input_size_vox must have one value per spatial axis of the {tensor.ndim - 1}D "
            f"images, got {tuple(size)}"
        )
    resized = ResizeWithPadOrCrop(spatial_size=list(size), mode="minimum")(tensor)
    return torch.as_tensor(resized).as_subclass(torch.Tensor)


def load_samples(
    chain: Any, cases: Sequence[ResolvedCase], size: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Preprocess ``cases``: ``{"image": (C, ...) tensor, "class": index, "case_id": id}`` each.

    Raises
    ------
    ConfigError
        When the images differ in shape and no ``size`` is given.
    """
    samples: list[dict[str, Any]] = []
    for case in cases:
        image = _sized(apply_chain(chain, {IMAGE: str(case.images[0])})[IMAGE], size)
        target = torch.tensor(-1 if case.class_index is None else case.class_index)
        samples.append({IMAGE: image, CLASS: target, CASE_ID: case.case_id})
    shapes = sorted({tuple(s[IMAGE].shape) for s in samples})
    if len(shapes) > 1:
        raise ConfigError(
            f"preprocessed images must share one shape, got {shapes[:4]}; set input_size_vox"
        )
    return samples


def predict_probabilities(
    model: torch.nn.Module, images: Sequence[torch.Tensor], *, multi_label: bool, batch_size: int
) -> Probabilities:
    """Class probabilities ``(N, K)``: softmax, or per-class sigmoid with ``multi_label``."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.stack(list(images[start : start + batch_size])).to(device)
            logits = model(batch).float()
            probs = logits.sigmoid() if multi_label else logits.softmax(dim=1)
            out.append(probs.cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def _validator(samples: list[dict[str, Any]], cfg: ClassificationConfig) -> Any:
    from medimg.evaluation import roc_auc

    images = [s[IMAGE] for s in samples]
    truth = [int(s[CLASS]) for s in samples]

    def validate(model: torch.nn.Module, device: torch.device) -> float:
        probs = predict_probabilities(
            model, images, multi_label=cfg.multi_label, batch_size=cfg.batch_size
        )
        return roc_auc(truth, probs)

    return validate


def _scorable(samples: list[dict[str, Any]]) -> bool:
    """Whether validation AUC is defined: two classes or more among ``samples``."""
    if len({int(s[CLASS]) for s in samples}) >= 2:
        return True
    logger.warning(
        "validation: %d case(s) of a single class, AUC undefined; training without model "
        "selection (the last checkpoint is kept)",
        len(samples),
    )
    return False


def _batches(cfg: ClassificationConfig, samples: list[dict[str, Any]], modality: str) -> Any:
    from monai.transforms.compose import Compose

    sampler = Compose([]) if cfg.augment is None else augmentation_for(modality, cfg.augment)
    classes = [int(s[CLASS]) for s in samples]

    def batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        chosen = samples
        if cfg.balance == "sampler":
            chosen = [samples[i] for i in balanced_indices(classes, seed=cfg.seed, epoch=epoch)]
        return epoch_batches(
            chosen, sampler, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch,
            target_key=CLASS,
        )  # fmt: skip

    return batches


def _network(cfg: ClassificationConfig, samples: list[dict[str, Any]], n: int) -> NetworkConfig:
    shape = tuple(samples[0][IMAGE].shape)
    return NetworkConfig(
        name=cfg.network,
        spatial_dims=len(shape) - 1,
        in_channels=shape[0],
        out_channels=n,
        roi_size_vox=shape[1:],
        width_factor=cfg.width_factor,
        stem_stride=cfg.stem_stride,
    )


def train(cfg: ClassificationConfig, *, resume: bool = False) -> TrainResult:
    """Train a classifier on the manifest's training cases; keep the best by validation AUC.

    Raises
    ------
    ManifestError
        When the manifest or its files have problems.
    ConfigError
        When the manifest is not a classification manifest or the images differ in shape.
    OutputExistsError
        When ``cfg.model_dir`` holds a run and ``resume`` is false.
    OutputLockedError
        When another live run trains into ``cfg.model_dir`` (the folder is locked for
        the whole run; a dead run's lock is taken over with a warning).
    """
    with training_lock(cfg.model_dir):
        return _train(cfg, resume=resume)


def _train(cfg: ClassificationConfig, *, resume: bool) -> TrainResult:
    started = utc_now()
    seed_everything(cfg.seed)
    manifest, fingerprint, chain = _setup(cfg)
    classes = _classes(manifest, cfg.manifest)
    train_cases, val_cases = split_cases(
        resolve_cases(manifest, cfg.manifest), fraction=cfg.validation_fraction, seed=cfg.seed
    )
    samples = load_samples(chain, train_cases, cfg.input_size_vox)
    val_samples = load_samples(chain, val_cases, cfg.input_size_vox)
    net_cfg = _network(cfg, samples, len(classes))
    counts = np.bincount([int(s[CLASS]) for s in samples], minlength=len(classes))
    weights = balanced_class_weights(counts.tolist()) if cfg.balance == "loss" else None
    modality = manifest.channels[0].modality.value
    result = fit(
        build_network(net_cfg),
        classification_loss(weights, multi_label=cfg.multi_label),
        _batches(cfg, samples, modality),
        cfg.train,
        out_dir=cfg.model_dir,
        validate=_validator(val_samples, cfg) if _scorable(val_samples) else None,
        resume=resume,
        lock=False,
    )
    checkpoint = cfg.model_dir / (BEST if BEST in result.checkpoints else LAST)
    _save_model(cfg, net_cfg, modality, classes, fingerprint, checkpoint)
    save_training_curves(dict(result.history), cfg.model_dir / "curves.png", overwrite=True)
    split = {
        "train": [c.case_id for c in train_cases],
        "validation": [c.case_id for c in val_cases],
    }
    write_run_record(
        cfg.model_dir, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
        extra={"fit": result, "cases": split, "class_counts": counts.tolist(),
               "class_weights": weights},
    )  # fmt: skip
    return TrainResult(
        model_dir=cfg.model_dir,
        checkpoint=checkpoint,
        checkpoint_sha256=result.checkpoints[checkpoint.name],
        fit=result,
        train_cases=tuple(split["train"]),
        validation_cases=tuple(split["validation"]),
    )


def _save_model(
    cfg: ClassificationConfig,
    net_cfg: NetworkConfig,
    modality: str,
    classes: tuple[str, ...],
    fingerprint: Fingerprint,
    checkpoint: Path,
) -> None:
    save_model_bundle(
        cfg.model_dir, network=net_cfg, preprocess=cfg.preprocess, modality=modality,
        outputs=dict(enumerate(classes)), fingerprint=fingerprint, checkpoint=checkpoint.name,
    )  # fmt: skip
    head = {"multi_label": cfg.multi_label, "input_size_vox": cfg.input_size_vox}
    write_json(head, cfg.model_dir / _HEAD, overwrite=True)


def _write_csv(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[object]], *, overwrite: bool
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=overwrite) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_predictions(path: Path, cases: Sequence[CasePrediction], classes: Sequence[str]) -> None:
    header = ["case_id", "status", "predicted", *(f"p_{c}" for c in classes), "error"]
    rows = [
        [c.case_id, c.status, c.predicted or "",
         *(f"{p:.6f}" for p in c.probabilities or [math.nan] * len(classes)), c.error or ""]
        for c in cases
    ]  # fmt: skip
    _write_csv(path, header, rows, overwrite=True)


def _called(probs: np.ndarray[Any, Any], multi_label: bool, threshold: float) -> int:
    binary = probs.size == 2 and not multi_label
    return int(probs[1] >= threshold) if binary else int(np.argmax(probs))


def _predict_one(
    case: ResolvedCase, chain: Any, bundle: Any, head: dict[str, Any]
) -> Probabilities:
    image = apply_chain(chain, {IMAGE: str(case.images[0])})[IMAGE]
    batch = [_sized(image, head["input_size_vox"])]
    probs: Probabilities = predict_probabilities(
        bundle.model, batch, multi_label=head["multi_label"], batch_size=1
    )[0]
    return probs


def _prediction(record: CaseRecord) -> CasePrediction:
    result = record.result or {}
    probs = result.get("probabilities")
    return CasePrediction(
        record.case_id, record.status, result.get("predicted"),
        None if probs is None else tuple(float(p) for p in probs), record.error,
    )  # fmt: skip


def predict(
    cfg: ClassificationConfig,
    *,
    split: str = "test",
    overwrite: bool = False,
    fail_fast: bool = True,
) -> PredictResult:
    """Predict every case of ``split`` into ``predictions/<split>.csv``, skipping done cases.

    The run holds the lock of ``predictions/`` (a second run raises
    :class:`~medimg.errors.OutputLockedError`). Each case's result (called class,
    probabilities) is recorded in ``predictions/<split>.summary.json``, rewritten atomically
    after every case, with its resume key: the checkpoint's SHA-256, the preprocessing chain
    key, the settings (input size, multi-label, threshold) and the content of its image. A
    rerun reuses a result only under an equal key (unless ``overwrite``) and predicts the
    others again, logging what differed (see :mod:`medimg.inference.batch`). The CSV is
    removed when the run starts and written when it ends, so it never mixes two runs.

    With ``fail_fast`` (the default) every file is checked up front and a failing case raises
    :class:`~medimg.errors.CaseError`; without it a failing case is recorded (status
    ``failed``, with the reason naming the file) and the batch goes on.
    """
    started = utc_now()
    bundle = load_model_bundle(cfg.model_dir)
    head = json.loads((cfg.model_dir / _HEAD).read_text(encoding="utf-8"))
    chain = preprocessing_for(bundle.modality, bundle.preprocess, bundle.fingerprint)
    bundle.model.to(select_device(cfg.train.device))
    classes = [bundle.outputs[k] for k in sorted(bundle.outputs)]
    path = cfg.out_dir / "predictions" / f"{split}.csv"
    manifest = load_manifest(cfg.manifest, check_files=fail_fast)
    cases = {c.case_id: c for c in resolve_cases(manifest, cfg.manifest) if c.split == split}
    settings = {
        "output": "class probabilities",
        "classes": classes,
        "threshold": cfg.threshold,
        "multi_label": head["multi_label"],
        "input_size_vox": head["input_size_vox"],
    }
    model = BatchModel(
        bundle.checkpoint_sha256,
        chain_key(Modality(bundle.modality), bundle.preprocess, bundle.fingerprint),
        json.loads(json.dumps(settings)),
    )

    def run(case: BatchCase) -> dict[str, Any]:
        probs = _predict_one(cases[case.case_id], chain, bundle, head)
        called = classes[_called(probs, head["multi_label"], cfg.threshold)]
        return {"predicted": called, "probabilities": probs.tolist()}

    header = {"split": split, "model_dir": str(cfg.model_dir), "csv": path.name}
    summary = f"{split}.summary.json"
    with PredictionBatch(path.parent, header=header, summary_name=summary,
                         overwrite=overwrite) as batch:  # fmt: skip
        path.unlink(missing_ok=True)  # written again at the end; never stale meanwhile
        work = [BatchCase(c.case_id, c.images) for c in cases.values()]
        records = run_batch(batch, work, model, run, fail_fast=fail_fast)
        results = [_prediction(r) for r in records]
        _write_predictions(path, results, classes)
        write_run_record(
            path.parent, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
            extra={"split": split, "counts": {s: sum(c.status == s for c in results)
                                              for s in ("written", "skipped", "failed")}},
        )  # fmt: skip
    logger.info("predicted %d cases of %s -> %s", len(results), split, path)
    return PredictResult(path=path, cases=tuple(results))


def _read_predictions(path: Path, cases: Sequence[ResolvedCase], n_classes: int) -> Probabilities:
    if not path.is_file():
        raise ConfigError(f"predictions must exist at {path}, got no file; run predict first")
    with path.open(newline="", encoding="utf-8") as f:
        rows = {r["case_id"]: r for r in csv.DictReader(f) if r["status"] != "failed"}
    missing = [c.case_id for c in cases if c.case_id not in rows]
    if missing:
        raise ConfigError(
            f"predictions in {path} must cover every labelled case, got {len(missing)} missing "
            f"(first: {', '.join(missing[:3])})"
        )
    probs = [[float(v) for k, v in rows[c.case_id].items() if k.startswith("p_")] for c in cases]
    return np.asarray(probs, dtype=np.float64).reshape(len(cases), n_classes)


def _summary(
    scores: ClassificationScores, truth: np.ndarray[Any, Any], probs: np.ndarray[Any, Any],
    classes: Sequence[str], threshold: float,
) -> dict[str, Any]:  # fmt: skip
    per_class = {}
    for k, name in enumerate(classes):
        sens, spec = sensitivity_specificity(truth == k, probs[:, k], threshold=threshold)
        per_class[name] = {"n_cases": int((truth == k).sum()), "sensitivity": sens,
                           "specificity": spec}  # fmt: skip
    return {"n_cases": int(truth.size), "classes": list(classes), **asdict(scores),
            "one_vs_rest": per_class}  # fmt: skip


def evaluate(
    cfg: ClassificationConfig, *, split: str = "test", overwrite: bool = False
) -> EvaluateResult:
    """Score ``predictions/<split>.csv`` against the manifest's classes; write the report.

    Writes ``cases.csv``, ``summary.json`` (AUC, accuracy, balanced accuracy, confusion matrix,
    sensitivity/specificity at ``cfg.threshold``, one-vs-rest rates per class), ``roc.png``,
    ``confusion.png`` and ``run.json`` into ``cfg.out_dir/evaluation/<split>``.

    Raises
    ------
    ConfigError
        When the split has no labelled case or predictions are missing.
    """
    started = utc_now()
    manifest = load_manifest(cfg.manifest, check_files=False)  # classes only; no image is read
    classes = _classes(manifest, cfg.manifest)
    cases = [c for c in resolve_cases(manifest, cfg.manifest) if c.split == split]
    cases = [c for c in cases if c.class_index is not None]
    if not cases:
        raise ConfigError(f"split {split!r} of {cfg.manifest} must have labelled cases, got none")
    probs = _read_predictions(cfg.out_dir / "predictions" / f"{split}.csv", cases, len(classes))
    truth = np.asarray([c.class_index for c in cases], dtype=np.int64)
    scores = score_classification(truth, probs, threshold=cfg.threshold)
    out_dir = cfg.out_dir / "evaluation" / split
    summary = _summary(scores, truth, probs, classes, cfg.threshold)
    write_json(summary, out_dir / "summary.json", overwrite=overwrite)
    called = [_called(p, False, cfg.threshold) for p in probs]
    rows = [[c.case_id, classes[int(t)], classes[k], *(f"{v:.6f}" for v in p)]
            for c, t, k, p in zip(cases, truth, called, probs, strict=True)]  # fmt: skip
    header = ["case_id", "true", "predicted", *(f"p_{c}" for c in classes)]
    _write_csv(out_dir / "cases.csv", header, rows, overwrite=overwrite)
    figures = (
        save_roc_figure(truth, probs, classes, out_dir / "roc.png", overwrite=overwrite),
        save_confusion_figure(
            scores.confusion, classes, out_dir / "confusion.png", overwrite=overwrite
        ),
    )
    write_run_record(
        out_dir, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
        extra={"split": split, "summary": summary},
    )  # fmt: skip
    return EvaluateResult(out_dir=out_dir, scores=scores, summary=summary, figures=figures)
