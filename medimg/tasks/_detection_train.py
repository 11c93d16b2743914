"""Detection training: samples with grid boxes, crops, the loss, the plan; the model loader.

:func:`~medimg.training.fit` calls ``loss(model(inputs), target)``; RetinaNet computes its
loss from the images and the boxes together, so the trained module passes the images through
(:class:`DetectorModule`) and the target tensor carries each crop's boxes, packed
``(B, N_max, 7)``: six box coordinates and the class, rows of class ``-1`` padding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.manifests import Manifest, ResolvedCase
from medimg.networks import DetectorConfig, build_detector, detect, detection_loss
from medimg.tasks._detection_boxes import boxes_to_grid, map_boxes
from medimg.tasks.base import TrainPlan
from medimg.training import apply_chain
from medimg.training.distributed import (
    current,
    gather_validation,
    training_shard,
    validation_shard,
)

if TYPE_CHECKING:
    from medimg.tasks.detection import DetectionConfig

__all__ = ["DetectorModule", "load_detector", "plan_detector"]

logger = logging.getLogger(__name__)

IMAGE = Keys.IMAGE.value


class DetectorModule(torch.nn.Module):
    """The detector as ``fit`` trains it: ``forward`` passes the images to the loss."""

    def __init__(self, cfg: DetectorConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.detector = build_detector(cfg, seed=seed)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` unchanged (the loss runs the network)."""
        return images

    def loss(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """RetinaNet's total loss of ``images`` against the packed boxes ``target``."""
        boxes, labels = unpack(target)
        total = detection_loss(self.detector, images, boxes, labels).total
        if not torch.distributed.is_initialized():
            return total
        # A crop whose anchors match no box gives MONAI's box-regression loss as a constant, so
        # the regression head gets no gradient; under DistributedDataParallel that rank would
        # then skip the head's gradient all-reduce while the others run it, a collective
        # mismatch. Zero times every parameter keeps each one in the graph (gradients of 0;
        # AdamW then decays such a head's weights where one process would leave them). A
        # single process is left exactly as it was.
        return total + 0.0 * sum(p.sum() for p in self.parameters())


def pack(boxes: Sequence[NDArray[Any]], labels: Sequence[NDArray[Any]]) -> torch.Tensor:
    """Boxes and labels of a batch as one ``(B, N_max, 7)`` float tensor (module notes)."""
    n = max([1, *(len(b) for b in boxes)])
    out = np.full((len(boxes), n, 7), -1.0, dtype=np.float32)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        out[i, : len(b), :6], out[i, : len(b), 6] = b, lab
    return torch.from_numpy(out)


def unpack(target: torch.Tensor) -> tuple[list[NDArray[Any]], list[NDArray[Any]]]:
    """Inverse of :func:`pack`."""
    rows = target.detach().cpu().numpy()
    keep = [r[r[:, 6] >= 0] for r in rows]
    return [k[:, :6] for k in keep], [k[:, 6].astype(np.int64) for k in keep]


def samples(
    chain: Any, cases: Sequence[ResolvedCase], classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Each case through the chain, with its boxes on the chain's grid (and the grid affine)."""
    out = []
    for case in cases:
        sample = apply_chain(chain, {IMAGE: str(case.images[0])})
        record = sample[Keys.RECORD]
        boxes, labels = boxes_to_grid(case.boxes or (), classes, record.grid_affine)
        image = torch.as_tensor(sample[IMAGE]).as_subclass(torch.Tensor).float()
        out.append({IMAGE: image, "boxes": boxes, "labels": labels, "case": case,
                    "affine": np.asarray(record.grid_affine)})  # fmt: skip
    return out


def crop(
    sample: dict[str, Any], patch: tuple[int, ...], rng: np.random.Generator
) -> tuple[torch.Tensor, NDArray[Any], NDArray[Any]]:
    """A ``patch`` crop (padded with the image minimum), 70 % of the time near a box."""
    image, boxes, labels = sample[IMAGE], sample["boxes"], sample["labels"]
    shape = np.array(image.shape[1:])
    size = np.array(patch)
    if len(boxes) and rng.random() < 0.7:
        b = boxes[rng.integers(len(boxes))]
        centre = (b[:3] + b[3:]) / 2 + rng.uniform(-0.3, 0.3, 3) * size
        start = np.round(centre - size / 2).astype(int)
    else:
        start = np.array([rng.integers(min(0, s - p), max(0, s - p) + 1) for s, p in
                          zip(shape, size, strict=True)])  # fmt: skip
    start = np.clip(start, np.minimum(0, shape - size), np.maximum(0, shape - size))
    out = torch.full((image.shape[0], *patch), float(image.min()), dtype=torch.float32)
    src = [slice(max(a, 0), min(a + p, s)) for a, p, s in zip(start, size, shape, strict=True)]
    dst = [slice(sl.start - a, sl.stop - a) for sl, a in zip(src, start, strict=True)]
    out[(slice(None), *dst)] = image[(slice(None), *src)]
    shifted = boxes - np.r_[start, start]
    lo, hi = np.zeros(3), size - 1.0
    centres = (shifted[:, :3] + shifted[:, 3:]) / 2
    inside = np.all((centres >= lo) & (centres <= hi), axis=1)
    kept = shifted[inside]
    kept[:, :3], kept[:, 3:] = np.maximum(kept[:, :3], lo - 0.5), np.minimum(kept[:, 3:], hi + 0.5)
    return out, kept.astype(np.float32), labels[inside]


def batches_of(cfg: DetectionConfig, data: list[dict[str, Any]], rank: int = 0) -> Any:
    """``batches(epoch)`` of seeded crops, every training case (of this rank) once per epoch."""

    def batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([cfg.seed, epoch] if rank == 0 else [cfg.seed, epoch, rank])
        order = rng.permutation(len(data))
        out = []
        for first in range(0, len(order), cfg.batch_size):
            crops = [
                crop(data[i], cfg.patch_size_vox, rng)
                for i in order[first : first + cfg.batch_size]
            ]
            images = torch.stack([c[0] for c in crops])
            out.append((images, pack([c[1] for c in crops], [c[2] for c in crops])))
        return out

    return batches


def scan_findings(case: ResolvedCase, classes: Sequence[str], detections: Any,
                  affine: NDArray[np.float64]) -> Any:  # fmt: skip
    """The case's lesions and the detections (voxels of ``affine``'s grid) in world mm."""
    from medimg.evaluation import Detection, Lesion, ScanFindings, WorldBox

    lesions = tuple(
        Lesion.from_box(WorldBox(b.min_mm, b.max_mm), label=list(classes).index(b.class_name))
        for b in case.boxes or ()
    )
    world = map_boxes(detections.boxes_vox, affine)
    found = tuple(
        Detection.from_box(WorldBox(tuple(w[:3]), tuple(w[3:])), score=float(s), label=int(k))
        for w, s, k in zip(world, detections.scores, detections.labels, strict=True)
    )
    return ScanFindings(scan_id=case.case_id, lesions=lesions, detections=found)


def validator(data: list[dict[str, Any]], classes: Sequence[str]) -> Any:
    """Validation CPM (LUNA16 FROC) of whole preprocessed validation scans.

    ``data``: this rank's validation shard; the FROC is over every rank's findings.
    """
    from medimg.evaluation import froc

    def validate(model: Any, device: Any) -> float:
        scans = [
            scan_findings(s["case"], classes, detect(model.detector, s[IMAGE]), s["affine"])
            for s in data
        ]
        result = froc(gather_validation(scans))
        return 0.0 if not np.isfinite(result.cpm) else float(result.cpm)

    return validate


def plan_detector(
    cfg: DetectionConfig, manifest: Manifest, chain: Any,
    split: tuple[Sequence[ResolvedCase], Sequence[ResolvedCase]],
) -> TrainPlan:  # fmt: skip
    """The detector (classes and channels from the manifest), its loss, crops, validation CPM."""
    from medimg.tasks.detection import detection_classes

    classes = detection_classes(manifest, cfg.manifest)
    det_cfg = replace(cfg.detector, num_classes=len(classes), in_channels=len(manifest.channels))
    ctx = current()  # under torchrun each rank preprocesses its shards only
    train_data = samples(chain, training_shard(split[0], seed=cfg.seed, ctx=ctx), classes)
    val_data = samples(chain, validation_shard(split[1], ctx), classes)
    module = DetectorModule(det_cfg, seed=cfg.seed)
    return TrainPlan(
        network=det_cfg,
        model=module,
        loss=module.loss,
        batches=batches_of(cfg, train_data, ctx.rank),
        validate=validator(val_data, classes) if split[1] else None,
        outputs=dict(enumerate(classes)),
    )


def load_detector(model_dir: Any) -> Any:
    """The :class:`~medimg.training.ModelBundle` of a detection model folder or package.

    ``model_dir``: a folder, a package or a :class:`~medimg.training.bundle.ModelSource`.

    ``model`` is the trained :class:`DetectorModule` (evaluation mode, CPU) and ``network``
    its :class:`~medimg.networks.DetectorConfig`.

    Raises
    ------
    ConfigError
        When the folder has no ``model.json``, or holds a segmentation or classification model.
    CheckpointError
        For a damaged record or weights (as :func:`~medimg.training.load_model_bundle`).
    """
    from medimg.training import load_model_bundle
    from medimg.training.bundle import open_model

    source = open_model(model_dir)  # a folder, a package or an opened ModelSource
    network = source.record["network"]
    if "anchor_shapes_vox" not in network:
        raise ConfigError(
            f"{source.record_name} must be a detection model, got a "
            f"{network.get('name', '?')!r} network; predict with the task it was trained for, "
            "or train a detector"
        )
    return load_model_bundle(source, network_type=DetectorConfig, build=DetectorModule)
