"""The segmentation task: label maps on each image's stored grid, scored by Dice and surfaces.

Training draws label-balanced patches (:func:`~medimg.training.label_balanced_crop`), each
augmented by the modality's :func:`~medimg.transforms.augmentation_for`, and keeps the best
checkpoint by validation Dice. Prediction runs the network window by window
(:func:`~medimg.inference.iter_slabs` with ``output="probabilities"`` on the preprocessed
grid), streams its finished slabs into a scratch file, brings them back to the stored grid slab
by slab (:func:`~medimg.inference.streamed_source_label_slabs`) and writes each slab's labels
as it comes (:func:`~medimg.inference.write_slabs_nifti`), so no float class map, on either
grid, is ever held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ConfigError, GeometryError
from medimg.keys import Keys
from medimg.manifests import Manifest, ResolvedCase
from medimg.networks import NetworkConfig, build_network
from medimg.networks import Task as NetworkTask
from medimg.tasks.base import EvaluateConfig, NetworkModels, PredictConfig, RunFolders, TrainPlan
from medimg.tasks.engine import options_of
from medimg.training import (
    SEGMENTATION_LOSSES,
    TrainConfig,
    apply_chain,
    epoch_batches,
    label_balanced_crop,
)
from medimg.training.distributed import (
    current,
    gather_validation,
    training_shard,
    validation_shard,
)
from medimg.transforms import AugmentConfig, PreprocessConfig

__all__ = [
    "SegmentationConfig",
    "SegmentationEvaluateOptions",
    "SegmentationPredictOptions",
    "SegmentationReport",
    "SegmentationTask",
    "foreground_labels",
    "patch_sampler",
]

logger = logging.getLogger(__name__)

IMAGE, LABEL = Keys.IMAGE.value, Keys.LABEL.value


@dataclass(frozen=True, kw_only=True)
class SegmentationPredictOptions:
    """Segmentation's prediction options.

    Attributes
    ----------
    sw_overlap : float
        Sliding-window overlap, in [0, 1).
    mirror_axes : tuple of int
        Test-time mirroring over every subset of these spatial axes (0 = X, 1 = Y, 2 = Z,
        RAS), the logits averaged (``2**k`` passes); empty: none.
    output_format : {"nifti", "seg"}
        ``<case>.nii.gz``, or for a DICOM case ``<case>.seg.dcm`` (DICOM SEG on the series)
        and ``<case>.sr.dcm`` (its volumes, TID 1500): :mod:`medimg.tasks._segmentation_dicom`.
    seg_type : {"binary", "labelmap"}
        The SEG's type with ``output_format="seg"`` (BINARY, or LABELMAP); only with ``seg``.
    backend : {"torch", "onnxruntime"}
        What runs the network in the sliding window (:mod:`medimg.tasks._backend`).
    """

    sw_overlap: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    output_format: str = "nifti"
    seg_type: str = "binary"
    backend: str = "torch"

    def __post_init__(self) -> None:
        from medimg.tasks._backend import check_backend
        from medimg.tasks._segmentation_dicom import check_seg_type

        check_backend(self.backend)
        if self.output_format not in ("nifti", "seg"):
            raise ConfigError(
                f"output_format must be nifti or seg (DICOM SEG + SR for a DICOM case), got "
                f"{self.output_format!r}"
            )
        check_seg_type(self.seg_type, self.output_format)
        axes = tuple(self.mirror_axes)
        if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            raise ConfigError(
                f"mirror_axes must be distinct spatial axes among 0, 1, 2, got {self.mirror_axes}"
            )
        object.__setattr__(self, "mirror_axes", axes)
        if not 0 <= self.sw_overlap < 1:
            raise ConfigError(f"sw_overlap must be in [0, 1), got {self.sw_overlap}")


@dataclass(frozen=True, kw_only=True)
class SegmentationEvaluateOptions:
    """Segmentation's evaluation options: ``tolerance_mm`` of surface Dice (> 0)."""

    tolerance_mm: float = 2.0

    def __post_init__(self) -> None:
        if not self.tolerance_mm > 0 or not np.isfinite(self.tolerance_mm):
            raise ConfigError(f"tolerance_mm must be a finite number > 0, got {self.tolerance_mm}")


@dataclass(frozen=True, kw_only=True)
class SegmentationConfig(RunFolders):
    """A segmentation run: training settings, and the prediction/evaluation options it implies.

    Attributes
    ----------
    manifest, out_dir : Path
        Dataset manifest; run folder (``model/``, ``predictions/``, ``evaluation/``).
    preprocess : PreprocessConfig
        Preprocessing options; unset ones come from the dataset fingerprint (nnU-Net style).
    augment : AugmentConfig or None
        Training augmentation of the modality, applied to every patch; None trains without.
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
        Share of training cases held out when the manifest has no validation split.
    sw_overlap, mirror_axes : float, tuple of int
        Sliding-window overlap (validation and prediction) and prediction's test-time
        mirroring: checked once as :class:`SegmentationPredictOptions`.
    tolerance_mm : float
        Surface Dice tolerance: checked as :class:`SegmentationEvaluateOptions`.
    seed : int
        Seeds the generators once, the split and every epoch's patches.
    model_folder : Path, optional
        Model to predict with: a model folder (``model.json``) or a run folder holding
        ``model/``; default ``out_dir/model``, where training writes.
    predictions_folder : Path, optional
        Where prediction writes and evaluation reads; default ``out_dir/predictions``.
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
        from medimg.networks import lookup_network

        for name in ("manifest", "out_dir", "model_folder", "predictions_folder"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, Path(value))
        name = lookup_network(self.network)
        if name.task is not NetworkTask.SEGMENTATION:
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
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        options = self.predict_options  # checks sw_overlap and mirror_axes once
        object.__setattr__(self, "mirror_axes", options.mirror_axes)
        SegmentationEvaluateOptions(tolerance_mm=self.tolerance_mm)

    @property
    def predict_options(self) -> SegmentationPredictOptions:
        """The prediction options of this run."""
        return SegmentationPredictOptions(sw_overlap=self.sw_overlap, mirror_axes=self.mirror_axes)


@dataclass(frozen=True)
class SegmentationReport:
    """Scores and report files of a segmentation evaluation."""

    out_dir: Path
    cases: tuple[Any, ...]
    summary: dict[str, Any]
    figures: tuple[Path, ...]


def foreground_labels(manifest: Manifest) -> dict[int, str]:
    """The manifest's foreground labels ``{value: name}``; background 0, values 0..K-1."""
    labels = {d.value: d.name for d in manifest.labels or ()}
    values = sorted(labels)
    if not values or values != list(range(len(values))):
        raise ConfigError(
            f"labels must be declared as 0..K-1 (background 0) for segmentation, got {values}"
        )
    return {v: n for v, n in labels.items() if v != 0}


def inference_config(roi: Sequence[int], overlap: float, mirror: tuple[int, ...] = (),
               device: str = "auto", precision: str = "float32") -> Any:  # fmt: skip
    from medimg.inference import InferenceConfig

    return InferenceConfig(
        roi_size_vox=(roi[0], roi[1], roi[2]), overlap=overlap, mirror_axes=mirror,
        device=device, precision=precision, prefetch=False,  # type: ignore[arg-type]
    )  # fmt: skip


def sliding_window(model: Any, image: Any, infer: Any) -> Any:
    import torch

    from medimg.inference import predict_volume

    tensor = torch.as_tensor(image).as_subclass(torch.Tensor)
    with torch.no_grad():
        return predict_volume(model, tensor, infer)


def patch_sampler(cfg: SegmentationConfig, n_classes: int, modality: str) -> Any:
    """Label-balanced patches, each then augmented; seeded per epoch by ``epoch_batches``."""
    from monai.transforms.compose import Compose

    from medimg.transforms import augmentation_for

    crop = label_balanced_crop(
        cfg.roi_size_vox, num_classes=n_classes, num_samples=cfg.samples_per_case
    )
    if cfg.augment is None:
        return crop
    return Compose([crop, augmentation_for(modality, cfg.augment, seed=cfg.seed)])


def _samples(chain: Any, cases: Sequence[ResolvedCase]) -> list[dict[str, Any]]:
    samples = []
    for case in cases:
        sample = apply_chain(chain, {IMAGE: str(case.images[0]), LABEL: str(case.label)})
        samples.append({IMAGE: sample[IMAGE], LABEL: sample[LABEL], "case_id": case.case_id})
    return samples


class SegmentationTask(NetworkModels):
    """The segmentation :class:`~medimg.tasks.Task`."""

    name: str = "segmentation"
    metric: str = "Dice"
    head_type: type[Any] | None = None
    train_config: type[Any] = SegmentationConfig
    predict_options: type[Any] = SegmentationPredictOptions
    evaluate_options: type[Any] = SegmentationEvaluateOptions

    def evaluation_dir(self, run_dir: Path, split: str) -> Path:
        """``run_dir/evaluation`` (one report per run folder)."""
        return run_dir / "evaluation"

    def check_manifest(self, manifest: Manifest, path: Path) -> None:
        """Segmentation needs labels declared 0..K-1 (background 0)."""
        foreground_labels(manifest)

    def plan_training(
        self, cfg: SegmentationConfig, manifest: Manifest, fingerprint: Any, chain: Any,
        split: tuple[Sequence[ResolvedCase], Sequence[ResolvedCase]],
    ) -> TrainPlan:  # fmt: skip
        """Label-balanced augmented patches, Dice + CE, validation Dice by sliding window."""
        from medimg.training import segmentation_loss
        from medimg.transforms.modality import target_spacing_for

        labels = foreground_labels(manifest)
        ctx = current()  # under torchrun each rank preprocesses its shards only
        samples = _samples(chain, training_shard(split[0], seed=cfg.seed, ctx=ctx))
        val_samples = _samples(chain, validation_shard(split[1], ctx))
        net_cfg = NetworkConfig(
            name=cfg.network, in_channels=len(manifest.channels), out_channels=len(labels) + 1,
            roi_size_vox=cfg.roi_size_vox,
            spacing_mm=target_spacing_for(cfg.preprocess, fingerprint),
            base_features=cfg.base_features,
            deep_supervision=cfg.deep_supervision and cfg.network == "dynunet",
        )  # fmt: skip
        sampler = patch_sampler(cfg, len(labels) + 1, manifest.channels[0].modality.value)

        def batches(epoch: int) -> Any:
            return epoch_batches(samples, sampler, batch_size=cfg.batch_size, seed=cfg.seed,
                                 epoch=epoch, rank=ctx.rank)  # fmt: skip

        return TrainPlan(
            network=net_cfg,
            loss=segmentation_loss(cfg.loss, deep_supervision=net_cfg.deep_supervision),
            batches=batches,
            validate=_validator(cfg, net_cfg, val_samples) if split[1] else None,
            outputs=labels,
            model=build_network(net_cfg),
        )

    def predictor(self, bundle: Any, chain: Any, cfg: PredictConfig) -> Any:
        """Label maps onto each image's stored grid, streamed slab by slab."""
        from medimg.tasks._segmentation_predict import SegmentationPredictor

        return SegmentationPredictor(bundle, chain, cfg)

    def evaluate(
        self, cases: Sequence[ResolvedCase], manifest: Manifest, cfg: EvaluateConfig
    ) -> SegmentationReport:
        """Dice, HD95, surface Dice per case and label; best and worst overlays."""
        from medimg.tasks._segmentation_report import report

        options = options_of(self, cfg.options, "evaluate")
        result: SegmentationReport = report(
            cases, foreground_labels(manifest), cfg, options.tolerance_mm
        )
        return result


def _validator(
    cfg: SegmentationConfig, net_cfg: NetworkConfig, samples: list[dict[str, Any]]
) -> Any:
    from medimg.evaluation import dice

    def validate(model: Any, device: Any) -> float:
        # validation runs in the training stage: its device and autocast precision
        precision = "bfloat16" if cfg.train.precision == "bf16" else "float32"
        infer = inference_config(net_cfg.roi_size_vox, cfg.sw_overlap, (), str(device), precision)
        per_case = []  # this rank's validation shard; the mean is over every rank's cases
        for s in samples:
            labels = sliding_window(model, s[IMAGE], infer)
            ref = np.asarray(s[LABEL][0])
            per_case.append([dice(labels == k, ref == k) for k in range(1, net_cfg.out_channels)])
        return float(np.mean([d for case in gather_validation(per_case) for d in case]))

    return validate


def check_grid(prediction: Any, reference: Any, pred_path: Path, ref_path: Path) -> None:
    """Raise :class:`GeometryError` unless two loaded volumes share their stored grid."""
    if not prediction.source.same_grid(reference.source):
        raise GeometryError(
            f"prediction {pred_path} must be on the grid of {ref_path}, got shape "
            f"{prediction.spatial_shape} vs {reference.spatial_shape} or a different affine"
        )
