"""The classification task (2D and 3D): class probabilities per case, scored by AUC and rates.

Training uses a class-weighted loss or a class-balanced sampler and keeps the best checkpoint by
validation AUC. ``multi_label`` trains independent sigmoid outputs with binary cross-entropy
(class weights become ``pos_weight``) against the one-hot class. The called class is the
argmax, except for a single-label binary model, where it is ``p(class 1) >= threshold``; the
same rule (:func:`called_class`) makes prediction's table and evaluation's confusion matrix.
The model record's typed head (:class:`ClassificationHead`) keeps ``multi_label`` and
``input_size_vox``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.manifests import Manifest, ResolvedCase
from medimg.networks import NetworkConfig, build_network
from medimg.networks import Task as NetworkTask
from medimg.tasks.base import EvaluateConfig, NetworkModels, PredictConfig, TrainPlan
from medimg.tasks.engine import options_of
from medimg.training import TrainConfig, apply_chain, epoch_batches
from medimg.training.distributed import current, training_shard, validation_shard
from medimg.transforms import AugmentConfig, PreprocessConfig

__all__ = [
    "BALANCING",
    "ClassificationConfig",
    "ClassificationEvaluateOptions",
    "ClassificationHead",
    "ClassificationPredictOptions",
    "ClassificationTask",
    "called_class",
    "load_samples",
    "predict_probabilities",
]

logger = logging.getLogger(__name__)

IMAGE, CLASS, CASE_ID = Keys.IMAGE.value, Keys.CLASS.value, Keys.CASE_ID.value
BALANCING = ("loss", "sampler", "none")
"""Class-imbalance handling: inverse-frequency loss weights, a class-balanced sampler, none."""


def _check_size(size: tuple[int, ...] | None) -> None:
    if size is not None and (len(size) not in (2, 3) or min(size) < 1):
        raise ConfigError(f"input_size_vox must be 2 or 3 positive integers, got {size}")


@dataclass(frozen=True, kw_only=True)
class ClassificationHead:
    """The classification part of a model record: how its inputs are sized, its outputs read."""

    multi_label: bool = False
    input_size_vox: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _check_size(self.input_size_vox)


@dataclass(frozen=True, kw_only=True)
class ClassificationPredictOptions:
    """Classification's prediction options.

    Attributes
    ----------
    threshold : float
        Positive-call probability, in (0, 1).
    backend : {"torch", "onnxruntime"}
        What runs the network (:mod:`medimg.tasks._backend`).
    """

    threshold: float = 0.5
    backend: str = "torch"

    def __post_init__(self) -> None:
        from medimg.tasks._backend import check_backend

        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        check_backend(self.backend)


@dataclass(frozen=True, kw_only=True)
class ClassificationEvaluateOptions:
    """Classification's evaluation options: none (evaluation scores prediction's calls)."""


@dataclass(frozen=True, kw_only=True)
class ClassificationConfig:
    """A classification training run.

    Attributes
    ----------
    manifest, out_dir : Path
        Dataset manifest (with ``classes``); run folder (``model/``, ``predictions/``, ...).
    preprocess : PreprocessConfig
        Preprocessing options; unset ones come from the dataset fingerprint.
    augment : AugmentConfig or None
        Training augmentation of the modality; None trains without.
    network : str
        ``densenet121``, ``resnet18``, ``resnet50`` or ``efficientnet-b0``.
    width_factor, stem_stride : float, int
        Network size (see :class:`~medimg.networks.NetworkConfig`).
    input_size_vox : tuple of int, optional
        Pad or crop every preprocessed image (centred) to this size.
    batch_size : int
        Images per optimizer step.
    balance : {"loss", "sampler", "none"}
        Class-imbalance handling (:data:`BALANCING`).
    multi_label : bool
        Independent sigmoid outputs and binary cross-entropy instead of softmax.
    threshold : float
        Positive-call probability of prediction (:class:`ClassificationPredictOptions`).
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
        from medimg.networks import lookup_network

        object.__setattr__(self, "manifest", Path(self.manifest))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        name = lookup_network(self.network)
        if name.task is not NetworkTask.CLASSIFICATION:
            raise ConfigError(f"network must be a classification network, got {self.network!r}")
        object.__setattr__(self, "network", name.value)
        if self.balance not in BALANCING:
            raise ConfigError(
                f"balance must be one of {', '.join(BALANCING)}, got {self.balance!r}"
            )
        _check_size(self.input_size_vox)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        ClassificationPredictOptions(threshold=self.threshold)
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )

    @property
    def model_dir(self) -> Path:
        """Where training writes the model."""
        return self.out_dir / "model"


def manifest_classes(manifest: Manifest, path: Path) -> tuple[str, ...]:
    """The manifest's classes; :class:`ConfigError` for a manifest of another task."""
    if manifest.task != "classification" or manifest.classes is None:
        raise ConfigError(
            f"manifest {path} must be a classification manifest (with 'classes'), "
            f"got task {manifest.task!r}"
        )
    return manifest.classes


def _sized(image: Any, size: Sequence[int] | None) -> Any:
    import torch

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
    import torch

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
    model: Any, images: Sequence[Any], *, multi_label: bool, batch_size: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Class probabilities ``(N, K)``: softmax, or per-class sigmoid with ``multi_label``."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.stack(list(images[start : start + batch_size])).to(device)
            logits = model(batch).float()
            probs = logits.sigmoid() if multi_label else logits.softmax(dim=1)
            out.append(probs.cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def called_class(probs: Any, *, multi_label: bool, threshold: float) -> int:
    """The called class of one row of probabilities (the module docstring's rule).

    Examples
    --------
    >>> called_class([0.6, 0.4], multi_label=False, threshold=0.3)
    1
    >>> called_class([0.6, 0.4], multi_label=True, threshold=0.3)
    0
    """
    p = np.asarray(probs, dtype=np.float64)
    binary = p.size == 2 and not multi_label
    return int(p[1] >= threshold) if binary else int(np.argmax(p))


def _validator(
    samples: list[dict[str, Any]], cfg: ClassificationConfig, cases: Sequence[ResolvedCase]
) -> Any:
    """AUC over every rank's probabilities (``samples``: this rank's shard of ``cases``)."""
    from medimg.evaluation import roc_auc
    from medimg.training.distributed import gather_validation

    images = [s[IMAGE] for s in samples]
    truth = [-1 if c.class_index is None else c.class_index for c in cases]

    def validate(model: Any, device: Any) -> float:
        probs = [] if not images else list(predict_probabilities(
            model, images, multi_label=cfg.multi_label, batch_size=cfg.batch_size
        ))  # fmt: skip
        return roc_auc(truth, np.stack(gather_validation(probs)))

    if len(set(truth)) >= 2:
        return validate
    logger.warning(
        "validation: %d case(s) of a single class, AUC undefined; training without model "
        "selection (the last checkpoint is kept)",
        len(cases),
    )
    return None


def _batches(cfg: ClassificationConfig, samples: list[dict[str, Any]], modality: str) -> Any:
    from monai.transforms.compose import Compose

    from medimg.training import balanced_indices
    from medimg.transforms import augmentation_for

    sampler = Compose([]) if cfg.augment is None else augmentation_for(modality, cfg.augment)
    classes = [int(s[CLASS]) for s in samples]
    rank = current().rank  # samples: this rank's shard

    def batches(epoch: int) -> Any:
        chosen = samples
        if cfg.balance == "sampler":
            picks = balanced_indices(classes, seed=cfg.seed, epoch=epoch, rank=rank)
            chosen = [samples[i] for i in picks]
        return epoch_batches(
            chosen, sampler, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch,
            target_key=CLASS, rank=rank,
        )  # fmt: skip

    return batches


class ClassificationTask(NetworkModels):
    """The classification :class:`~medimg.tasks.Task`."""

    name: str = "classification"
    metric: str = "AUC"
    head_type: type[Any] | None = ClassificationHead
    train_config: type[Any] = ClassificationConfig
    predict_options: type[Any] = ClassificationPredictOptions
    evaluate_options: type[Any] = ClassificationEvaluateOptions

    def evaluation_dir(self, run_dir: Path, split: str) -> Path:
        """``run_dir/evaluation/<split>`` (one report per split)."""
        return run_dir / "evaluation" / split

    def check_manifest(self, manifest: Manifest, path: Path) -> None:
        """Classification needs a manifest declaring ``classes``."""
        manifest_classes(manifest, path)

    def plan_training(
        self, cfg: ClassificationConfig, manifest: Manifest, fingerprint: Any, chain: Any,
        split: tuple[Sequence[ResolvedCase], Sequence[ResolvedCase]],
    ) -> TrainPlan:  # fmt: skip
        """Sized images, a class-weighted (or balanced) loss, validation AUC."""
        from medimg.training import balanced_class_weights, classification_loss

        classes = manifest_classes(manifest, cfg.manifest)
        ctx = current()  # under torchrun each rank preprocesses its shards only
        shard = training_shard(split[0], seed=cfg.seed, ctx=ctx)
        samples = load_samples(chain, shard, cfg.input_size_vox)
        val_samples = load_samples(chain, validation_shard(split[1], ctx), cfg.input_size_vox)
        shape = tuple(samples[0][IMAGE].shape)
        net_cfg = NetworkConfig(
            name=cfg.network, spatial_dims=len(shape) - 1, in_channels=shape[0],
            out_channels=len(classes), roi_size_vox=shape[1:], width_factor=cfg.width_factor,
            stem_stride=cfg.stem_stride,
        )  # fmt: skip
        every = [-1 if c.class_index is None else c.class_index for c in split[0]]  # all ranks'
        counts = np.bincount(every, minlength=len(classes)).tolist()
        weights = balanced_class_weights(counts) if cfg.balance == "loss" else None
        return TrainPlan(
            network=net_cfg,
            loss=classification_loss(weights, multi_label=cfg.multi_label),
            batches=_batches(cfg, samples, manifest.channels[0].modality.value),
            validate=_validator(val_samples, cfg, split[1]),
            outputs=dict(enumerate(classes)),
            head=ClassificationHead(multi_label=cfg.multi_label, input_size_vox=cfg.input_size_vox),
            record={"class_counts": counts, "class_weights": weights},
            model=build_network(net_cfg),
        )

    def predictor(self, bundle: Any, chain: Any, cfg: PredictConfig) -> Any:
        """Probabilities and the called class of each case, into ``<split>.csv``."""
        from medimg.tasks._classification_predict import ClassificationPredictor

        return ClassificationPredictor(bundle, chain, cfg)

    def evaluate(
        self, cases: Sequence[ResolvedCase], manifest: Manifest, cfg: EvaluateConfig
    ) -> Any:
        """AUC, accuracy, confusion of prediction's calls; ROC and confusion figures."""
        from medimg.tasks._classification_report import report

        options_of(self, cfg.options, "evaluate")
        return report(cases, manifest_classes(manifest, cfg.manifest), cfg)
