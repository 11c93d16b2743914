"""Segmentation pipeline: :func:`train`, :func:`predict` and :func:`evaluate` on a manifest.

Each step is a call into :mod:`medimg`: the manifest is validated (:mod:`medimg.manifests`),
the dataset fingerprint configures the modality's one preprocessing chain
(:func:`medimg.transforms.preprocessing_for`), the network comes from
:func:`medimg.networks.build_network`, training from :func:`medimg.training.fit`, inference from
:func:`medimg.inference.predict_volume` and the way back to each image's stored grid from
:func:`medimg.transforms.to_source_grid`; scores and reports from :mod:`medimg.evaluation`.

Everything lands under ``cfg.out_dir``::

    model/         model.json, fingerprint.json, best.pt, last.pt, run.json, curves.png,
                   tensorboard/
    predictions/   <case_id>.nii.gz on each image's stored grid, summary.json, run.json
    evaluation/    cases.csv, summary.json, <case_id>.png overlays, run.json

``model_folder`` and ``predictions_folder`` point prediction at a model trained elsewhere and
a folder of its own (``medimg predict --model RUN_DIR --out DIR``).

Notebook use: ``from pipelines.segmentation import SegmentationConfig, train, predict, evaluate``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medimg.errors import ConfigError, GeometryError, MedimgError
from medimg.evaluation import (
    CaseScores,
    save_overlay_figure,
    save_training_curves,
    score_case,
    summarize,
    write_case_csv,
    write_json,
)
from medimg.fingerprint import Fingerprint, load_or_compute_fingerprint
from medimg.inference import (
    BatchCase,
    BatchModel,
    CaseRecord,
    InferenceConfig,
    PredictionBatch,
    inference_settings,
    measure_usage,
    predict_volume,
    run_batch,
    source_label_slabs,
    write_slabs_nifti,
)
from medimg.io import load_volume, read_header, read_image, read_image_header
from medimg.keys import Keys
from medimg.manifests import Manifest, ResolvedCase, load_manifest, resolve_cases
from medimg.modality import Modality
from medimg.networks import NetworkConfig, Task, build_network, lookup_network
from medimg.training import (
    BEST,
    LAST,
    MODEL_RECORD,
    SEGMENTATION_LOSSES,
    FitResult,
    TrainConfig,
    apply_chain,
    epoch_batches,
    fit,
    label_balanced_crop,
    load_model_bundle,
    save_model_bundle,
    seed_everything,
    segmentation_loss,
    split_cases,
    training_lock,
    utc_now,
    write_run_record,
)
from medimg.transforms import (
    AugmentConfig,
    PreprocessConfig,
    augmentation_for,
    preprocessing_for,
)
from medimg.transforms.cache import chain_key
from medimg.transforms.modality import target_spacing_for

__all__ = [
    "CasePrediction",
    "EvaluateResult",
    "PredictResult",
    "SegmentationConfig",
    "TrainResult",
    "evaluate",
    "predict",
    "predict_case",
    "train",
]

logger = logging.getLogger(__name__)

IMAGE, LABEL = Keys.IMAGE.value, Keys.LABEL.value


@dataclass(frozen=True, kw_only=True)
class SegmentationConfig:
    """Everything a segmentation run needs; saved in each stage's ``run.json``.

    Attributes
    ----------
    manifest, out_dir : Path
        Dataset manifest; run folder (see the module docstring for its layout).
    preprocess : PreprocessConfig
        Preprocessing options; unset ones come from the dataset fingerprint (nnU-Net style).
    augment : AugmentConfig or None
        Training augmentation of the modality, applied to every patch after it is drawn
        (:func:`~medimg.transforms.augmentation_for`: rotation and scaling, noise, blur,
        contrast, gamma, simulated low resolution; flips only on request); None trains
        without.
    network : str
        A segmentation network of :mod:`medimg.networks` (``dynunet``, ``unet``, ...).
    base_features : int
        Network size: channels of the first level.
    deep_supervision : bool
        DynUNet only.
    roi_size_vox : (int, int, int)
        Training patch and sliding-window size, RAS voxel order.
    batch_size, samples_per_case : int
        Patches per optimizer step; patches drawn from each case per epoch (label-balanced).
    loss : {"dice_ce", "dice", "ce"}
        Training loss.
    train : TrainConfig
        Epochs or iterations, optimizer, LR schedule, early stopping, device, precision.
    validation_fraction : float
        Share of training cases held out for validation when the manifest has no validation
        split (at least one case when there are two or more).
    sw_overlap : float
        Sliding-window overlap at validation and prediction, in [0, 1).
    mirror_axes : tuple of int
        Test-time augmentation at prediction: every subset of these spatial axes (0 = X,
        1 = Y, 2 = Z, RAS) is mirrored and the logits averaged, ``2**k`` passes (validation
        during training does not mirror). Empty: none.
    tolerance_mm : float
        Surface Dice tolerance.
    seed : int
        Seeds the generators once, the split and every epoch's patches.
    model_folder : Path, optional
        Trained model to predict with: a model folder (holding ``model.json``) or a run folder
        holding ``model/``; default ``out_dir/model``, where :func:`train` writes.
    predictions_folder : Path, optional
        Where :func:`predict` writes and :func:`evaluate` reads; default ``out_dir/predictions``.
    """

    manifest: Path
    out_dir: Path
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    network: str = "dynunet"
    base_features: int = 16
    deep_supervision: bool = True
    roi_size_vox: tuple[int, int, int] = (96, 96, 96)
    batch_size: int = 2
    samples_per_case: int = 2
    loss: str = "dice_ce"
    train: TrainConfig = field(default_factory=TrainConfig)
    validation_fraction: float = 0.2
    sw_overlap: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    tolerance_mm: float = 2.0
    seed: int = 0
    model_folder: Path | None = None
    predictions_folder: Path | None = None

    def __post_init__(self) -> None:
        for name in ("manifest", "out_dir", "model_folder", "predictions_folder"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, Path(value))
        name = lookup_network(self.network)
        if name.task is not Task.SEGMENTATION:
            raise ConfigError(f"network must be a segmentation network, got {self.network!r}")
        object.__setattr__(self, "network", name.value)
        if self.loss not in SEGMENTATION_LOSSES:
            raise ConfigError(
                f"loss must be one of {', '.join(SEGMENTATION_LOSSES)}, got {self.loss!r}"
            )
        if len(self.roi_size_vox) != 3 or min(self.roi_size_vox) < 1:
            raise ConfigError(f"roi_size_vox must be 3 positive integers, got {self.roi_size_vox}")
        if min(self.batch_size, self.samples_per_case) < 1:
            raise ConfigError(
                f"batch_size and samples_per_case must be >= 1, "
                f"got {self.batch_size} and {self.samples_per_case}"
            )
        axes = tuple(self.mirror_axes)
        if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            raise ConfigError(
                f"mirror_axes must be distinct spatial axes among 0, 1, 2, got {self.mirror_axes}"
            )
        object.__setattr__(self, "mirror_axes", axes)
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.sw_overlap < 1:
            raise ConfigError(
                f"validation_fraction and sw_overlap must be in [0, 1), "
                f"got {self.validation_fraction} and {self.sw_overlap}"
            )

    @property
    def model_dir(self) -> Path:
        """Where :func:`train` writes the model and :func:`predict` reads it."""
        if self.model_folder is None:
            return self.out_dir / "model"
        nested = self.model_folder / "model"
        if not (self.model_folder / MODEL_RECORD).is_file() and (nested / MODEL_RECORD).is_file():
            return nested  # a run folder
        return self.model_folder

    @property
    def predictions_dir(self) -> Path:
        """Where :func:`predict` writes label maps and :func:`evaluate` reads them."""
        return self.predictions_folder or self.out_dir / "predictions"


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
    """One case of :func:`predict`.

    ``status``: ``written``, ``skipped`` (a valid output was there) or ``failed`` (``error``
    says why). ``time_s`` and ``peak_memory_bytes`` (the process's peak RSS while the case ran,
    see :mod:`medimg.inference.usage`) are ``None`` for skipped cases.
    """

    case_id: str
    path: Path
    status: str
    error: str | None = None
    time_s: float | None = None
    peak_memory_bytes: int | None = None


@dataclass(frozen=True)
class PredictResult:
    """Every case of :func:`predict`."""

    out_dir: Path
    cases: tuple[CasePrediction, ...]


@dataclass(frozen=True)
class EvaluateResult:
    """Scores and report files of :func:`evaluate`."""

    out_dir: Path
    cases: tuple[CaseScores, ...]
    summary: dict[str, Any]
    figures: tuple[Path, ...]


def _foreground(manifest: Manifest) -> dict[int, str]:
    labels = {d.value: d.name for d in manifest.labels or ()}
    values = sorted(labels)
    if not values or values != list(range(len(values))):
        raise ConfigError(
            f"labels must be declared as 0..K-1 (background 0) for segmentation, got {values}"
        )
    return {v: n for v, n in labels.items() if v != 0}


def _preprocessed(chain: Any, cases: list[ResolvedCase]) -> list[dict[str, Any]]:
    samples = []
    for case in cases:
        sample = apply_chain(chain, {IMAGE: str(case.images[0]), LABEL: str(case.label)})
        samples.append({IMAGE: sample[IMAGE], LABEL: sample[LABEL], "case_id": case.case_id})
    return samples


def _inference_config(
    cfg: SegmentationConfig, net_cfg: NetworkConfig, *, mirror: bool = False
) -> InferenceConfig:
    """Sliding-window settings of validation, or with ``mirror`` of prediction.

    The trained network's patch size, the config's overlap and device, and for prediction the
    config's test-time mirroring.
    """
    precision: Literal["bfloat16", "float32"] = (
        "bfloat16" if cfg.train.precision == "bf16" else "float32"
    )
    roi = net_cfg.roi_size_vox
    return InferenceConfig(
        roi_size_vox=(roi[0], roi[1], roi[2]),
        overlap=cfg.sw_overlap,
        mirror_axes=cfg.mirror_axes if mirror else (),
        device=cfg.train.device,
        precision=precision,
        prefetch=False,
    )


def _sliding_window(model: torch.nn.Module, image: Any, infer: InferenceConfig) -> Any:
    """Sliding-window output (``infer.output``) of one preprocessed image ``(C, X, Y, Z)``."""
    tensor = torch.as_tensor(image).as_subclass(torch.Tensor)
    with torch.no_grad():
        return predict_volume(model, tensor, infer)


def _validator(
    cfg: SegmentationConfig, net_cfg: NetworkConfig, samples: list[dict[str, Any]]
) -> Any:
    from medimg.evaluation import dice

    def validate(model: torch.nn.Module, device: torch.device) -> float:
        infer = _inference_config(cfg, net_cfg)
        scores = []
        for s in samples:
            labels = _sliding_window(model, s[IMAGE], infer)
            ref = np.asarray(s[LABEL][0])
            scores += [dice(labels == k, ref == k) for k in range(1, net_cfg.out_channels)]
        return float(np.mean(scores))

    return validate


def _setup(cfg: SegmentationConfig) -> tuple[Manifest, Fingerprint, Any]:
    manifest = load_manifest(cfg.manifest)
    fingerprint = load_or_compute_fingerprint(cfg.manifest, seed=cfg.seed)
    chain = preprocessing_for(manifest.channels[0].modality, cfg.preprocess, fingerprint)
    return manifest, fingerprint, chain


def _network_config(
    cfg: SegmentationConfig, manifest: Manifest, fingerprint: Fingerprint
) -> NetworkConfig:
    """The network for this dataset: channels from the manifest, spacing from preprocessing."""
    return NetworkConfig(
        name=cfg.network,
        in_channels=len(manifest.channels),
        out_channels=len(_foreground(manifest)) + 1,
        roi_size_vox=cfg.roi_size_vox,
        spacing_mm=target_spacing_for(cfg.preprocess, fingerprint),
        base_features=cfg.base_features,
        deep_supervision=cfg.deep_supervision and cfg.network == "dynunet",
    )


def _patch_sampler(cfg: SegmentationConfig, n_classes: int, modality: str) -> Any:
    """Label-balanced patches, each then augmented; seeded per epoch by ``epoch_batches``."""
    from monai.transforms.compose import Compose

    crop = label_balanced_crop(
        cfg.roi_size_vox, num_classes=n_classes, num_samples=cfg.samples_per_case
    )
    if cfg.augment is None:
        return crop
    return Compose([crop, augmentation_for(modality, cfg.augment, seed=cfg.seed)])


def train(cfg: SegmentationConfig, *, resume: bool = False) -> TrainResult:
    """Train a network on the manifest's training cases; keep the best by validation Dice.

    Raises
    ------
    ManifestError
        When the manifest or its files have problems.
    OutputExistsError
        When ``cfg.model_dir`` holds a run and ``resume`` is false.
    OutputLockedError
        When another live run trains into ``cfg.model_dir`` (the folder is locked for
        the whole run; a dead run's lock is taken over with a warning).
    """
    with training_lock(cfg.model_dir):
        return _train(cfg, resume=resume)


def _train(cfg: SegmentationConfig, *, resume: bool) -> TrainResult:
    started = utc_now()
    seed_everything(cfg.seed)
    manifest, fingerprint, chain = _setup(cfg)
    labels = _foreground(manifest)
    train_cases, val_cases = split_cases(
        resolve_cases(manifest, cfg.manifest), fraction=cfg.validation_fraction, seed=cfg.seed
    )
    samples, val_samples = _preprocessed(chain, train_cases), _preprocessed(chain, val_cases)
    net_cfg = _network_config(cfg, manifest, fingerprint)
    sampler = _patch_sampler(cfg, len(labels) + 1, manifest.channels[0].modality.value)
    result = fit(
        build_network(net_cfg),
        segmentation_loss(cfg.loss, deep_supervision=net_cfg.deep_supervision),
        lambda e: epoch_batches(
            samples, sampler, batch_size=cfg.batch_size, seed=cfg.seed, epoch=e
        ),
        cfg.train,
        out_dir=cfg.model_dir,
        validate=_validator(cfg, net_cfg, val_samples) if val_samples else None,
        resume=resume,
        lock=False,
    )
    checkpoint = cfg.model_dir / (BEST if BEST in result.checkpoints else LAST)
    save_model_bundle(
        cfg.model_dir, network=net_cfg, preprocess=cfg.preprocess,
        modality=manifest.channels[0].modality.value, outputs=labels,
        fingerprint=fingerprint, checkpoint=checkpoint.name,
    )  # fmt: skip
    save_training_curves(dict(result.history), cfg.model_dir / "curves.png", overwrite=True)
    split = {
        "train": [c.case_id for c in train_cases],
        "validation": [c.case_id for c in val_cases],
    }
    write_run_record(
        cfg.model_dir, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
        extra={"fit": result, "cases": split, "fingerprint": json.loads(fingerprint.to_json())},
    )  # fmt: skip
    return TrainResult(
        model_dir=cfg.model_dir,
        checkpoint=checkpoint,
        checkpoint_sha256=result.checkpoints[checkpoint.name],
        fit=result,
        train_cases=tuple(split["train"]),
        validation_cases=tuple(split["validation"]),
    )


def predict_case(
    case: ResolvedCase,
    chain: Any,
    model: tuple[torch.nn.Module, NetworkConfig],
    infer: InferenceConfig,
    out: Path,
) -> Path:
    """Predict one case and write its label map on the image's stored grid; return the path.

    ``model`` is the trained network with its configuration. The network's probabilities on
    the (small) preprocessed grid go back to the stored grid slab by slab
    (:func:`~medimg.inference.source_label_slabs`) and each slab's labels are written as they
    come (:func:`~medimg.inference.write_slabs_nifti`, atomically), so neither probabilities
    nor labels are ever held at full resolution.
    """
    sample = apply_chain(chain, {IMAGE: str(case.images[0])})
    record = sample[Keys.RECORD]
    probabilities = _sliding_window(model[0], sample[IMAGE], replace(infer, output="probabilities"))
    return write_slabs_nifti(
        source_label_slabs(probabilities, record), out,
        shape=record.source_shape, affine=record.source_affine, dtype=np.uint8, overwrite=True,
    )  # fmt: skip


def _is_done(case: ResolvedCase, path: Path) -> bool:
    """Whether ``path``'s header is on the grid of the case's image.

    Its bytes are checked against the recorded SHA-256 by
    :class:`~medimg.inference.PredictionBatch`, so the header tells the rest.
    """
    try:
        done, image = read_header(path), read_image_header(case.images[0])
    except (MedimgError, OSError, ValueError) as exc:
        logger.warning("%s: predicting %s again: %s", path, case.case_id, exc)
        return False
    if done.shape == image.shape and np.allclose(done.affine, image.affine, atol=1e-3):
        return True
    logger.warning("%s: predicting %s again: not on the image's grid", path, case.case_id)
    return False


def _prediction(record: CaseRecord, out_dir: Path) -> CasePrediction:
    return CasePrediction(
        record.case_id, out_dir / f"{record.case_id}.nii.gz", record.status, record.error,
        record.time_s, record.peak_memory_bytes,
    )  # fmt: skip


def _memory_method() -> str:
    with measure_usage() as probe:  # how this process measures (same for every case)
        pass
    return probe.method


def predict(
    cfg: SegmentationConfig,
    *,
    split: str = "test",
    overwrite: bool = False,
    fail_fast: bool = True,
    progress: bool = False,
) -> PredictResult:
    """Predict every case of ``split`` onto its stored grid, skipping cases already done.

    Label maps go to ``cfg.predictions_dir``, with ``summary.json`` and ``run.json``; the run
    holds the folder's lock (a second run into it raises
    :class:`~medimg.errors.OutputLockedError`) and first deletes temporaries an interrupted
    run left. A case is skipped (unless ``overwrite``) only when ``summary.json`` records it
    as done under the same resume key -- the checkpoint's SHA-256, the preprocessing chain
    key, the inference settings (window, overlap, mirror axes, precision, output) and the
    content (size, SHA-256) of its input files -- and its output still has the recorded
    SHA-256 and lies on the image's grid; otherwise the stale output is deleted before work
    starts and the case is predicted again, the reason logged (see
    :mod:`medimg.inference.batch`). ``summary.json`` (per case: status, time, peak memory,
    error, key; ``pending`` until reached) is rewritten atomically after every case and every
    file is written atomically, so an interrupted batch resumes where it stopped.

    With ``fail_fast`` (the default) every file is checked before work starts and a problem
    raises (:class:`~medimg.errors.ManifestError` listing them all, or
    :class:`~medimg.errors.CaseError` naming the case). Without it only the manifest's schema
    is checked up front, and a failing case is recorded (status ``failed``, with the reason
    naming the file) while the batch goes on. ``progress`` shows tqdm bars over cases and,
    for the case being predicted, over its windows.
    """
    started = utc_now()
    bundle = load_model_bundle(cfg.model_dir)
    chain = preprocessing_for(bundle.modality, bundle.preprocess, bundle.fingerprint)
    infer = replace(_inference_config(cfg, bundle.network, mirror=True), progress=progress)
    out_dir = cfg.predictions_dir
    manifest = load_manifest(cfg.manifest, check_files=fail_fast)
    cases = {c.case_id: c for c in resolve_cases(manifest, cfg.manifest) if c.split == split}
    model = BatchModel(
        bundle.checkpoint_sha256,
        chain_key(Modality(bundle.modality), bundle.preprocess, bundle.fingerprint),
        inference_settings(infer, output="uint8 labels on the image's stored grid (.nii.gz)"),
    )
    work = [BatchCase(c.case_id, c.images, out_dir / f"{c.case_id}.nii.gz") for c in cases.values()]

    def run(case: BatchCase) -> None:
        network = (bundle.model, bundle.network)
        predict_case(cases[case.case_id], chain, network, infer, out_dir / f"{case.case_id}.nii.gz")

    header = {
        "split": split,
        "model_dir": str(cfg.model_dir),
        "peak_memory": "process peak RSS while the case ran: " + _memory_method(),
    }
    with PredictionBatch(out_dir, header=header, overwrite=overwrite) as batch:
        records = run_batch(
            batch, work, model, run,
            is_valid=lambda b: _is_done(cases[b.case_id], out_dir / f"{b.case_id}.nii.gz"),
            fail_fast=fail_fast, progress=progress,
        )  # fmt: skip
        results = [_prediction(r, out_dir) for r in records]
        write_run_record(
            out_dir, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
            extra={"split": split, "cases": results},
        )  # fmt: skip
    return PredictResult(out_dir=out_dir, cases=tuple(results))


def _score(case: ResolvedCase, prediction: Path, labels: dict[int, str], tol: float) -> CaseScores:
    ref, pred = load_volume(str(case.label)), load_volume(prediction)
    if ref.spatial_shape != pred.spatial_shape or not np.allclose(
        ref.affine, pred.affine, atol=1e-3
    ):
        raise GeometryError(
            f"prediction {prediction} must be on the grid of {case.label}, got shape "
            f"{pred.spatial_shape} vs {ref.spatial_shape} or a different affine"
        )
    return score_case(
        case.case_id, pred.array[0], ref.array[0],
        spacing_mm=ref.spacing_mm, labels=labels, tolerance_mm=tol,
    )  # fmt: skip


def _overlay(case: ResolvedCase, prediction: Path, out: Path, title: str) -> Path:
    # shown in RAS voxel order, so LPS- and RAS-stored cases look alike
    paths = (case.images[0], str(case.label), prediction)
    image, ref, pred = (read_image(p).to_ras() for p in paths)
    return save_overlay_figure(
        image.array[0], pred.array[0], ref.array[0], out, title=title, overwrite=True
    )


def evaluate(
    cfg: SegmentationConfig, *, split: str = "test", overwrite: bool = False
) -> EvaluateResult:
    """Score :func:`predict`'s outputs against the references on the stored grids; report.

    Writes ``cases.csv``, ``summary.json``, overlays of the best and worst case and
    ``run.json`` into ``cfg.out_dir/evaluation``.
    """
    started = utc_now()
    manifest = load_manifest(cfg.manifest)
    labels = _foreground(manifest)
    out_dir = cfg.out_dir / "evaluation"
    cases = [c for c in resolve_cases(manifest, cfg.manifest) if c.split == split and c.label]
    if not cases:
        raise ConfigError(f"split {split!r} of {cfg.manifest} must have labelled cases, got none")
    preds = {c.case_id: cfg.predictions_dir / f"{c.case_id}.nii.gz" for c in cases}
    scores = [_score(c, preds[c.case_id], labels, cfg.tolerance_mm) for c in cases]
    write_case_csv(scores, out_dir / "cases.csv", overwrite=overwrite)
    summary = summarize(scores)
    write_json(summary, out_dir / "summary.json", overwrite=overwrite)
    ranked = sorted(range(len(cases)), key=lambda i: scores[i].mean_dice)
    figures = tuple(
        _overlay(cases[i], preds[cases[i].case_id], out_dir / f"{cases[i].case_id}.png",
                 f"{cases[i].case_id}: mean Dice {scores[i].mean_dice:.3f}")
        for i in sorted({ranked[0], ranked[-1]})
    )  # fmt: skip
    write_run_record(
        out_dir, config=cfg, seed=cfg.seed, started=started, manifest=cfg.manifest,
        extra={"split": split, "summary": summary},
    )  # fmt: skip
    return EvaluateResult(out_dir=out_dir, cases=tuple(scores), summary=summary, figures=figures)
