"""Model folders of the three tasks (tiny seeded networks, not trained), their packages and data.

Training is not what these tests check: each folder is written as the training engine writes
it (``save_checkpoint``, ``save_model_bundle``, ``run.json``), from a seeded random network.
The images are the synthetic oblique, anisotropic, LPS- or RAS-stored CT phantoms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TASK_NAMES = ("segmentation", "classification", "detection")


def _network(task: str) -> tuple[Any, Any, dict[int, str], Any, Any]:
    from medimg.networks import DetectorConfig, NetworkConfig, build_network
    from medimg.transforms import PreprocessConfig

    if task == "segmentation":
        net = NetworkConfig(name="dynunet", in_channels=1, out_channels=4, roi_size_vox=(16, 16, 8),
                            spacing_mm=(4.0, 4.0, 6.0), base_features=4)  # fmt: skip
        return net, build_network(net), {1: "liver", 2: "spleen", 3: "lesion"}, None, \
            PreprocessConfig(target_spacing_mm=(4.0, 4.0, 6.0), hu_window="soft_tissue")  # fmt: skip
    if task == "classification":
        from medimg.tasks import ClassificationHead

        net = NetworkConfig(name="resnet18", in_channels=1, out_channels=2,
                            roi_size_vox=(16, 16, 16), width_factor=0.25)  # fmt: skip
        head = ClassificationHead(multi_label=False, input_size_vox=(16, 16, 16))
        return net, build_network(net), {0: "normal", 1: "nodule"}, head, \
            PreprocessConfig(target_spacing_mm=(4.0, 4.0, 6.0), hu_window="soft_tissue")  # fmt: skip
    from medimg.tasks._detection_train import DetectorModule

    det = DetectorConfig(base_features=4, fpn_channels=8, roi_size_vox=(32, 32, 32))
    return det, DetectorModule(det), {0: "nodule"}, None, \
        PreprocessConfig(target_spacing_mm=(4.0, 4.0, 4.0), hu_window="lung")  # fmt: skip


def write_model_run(root: Path, task: str, *, seed: int = 0) -> Path:
    """A run folder ``root`` with ``model/`` (record, checkpoint, run.json) of ``task``."""
    import torch

    from medimg.training import save_checkpoint, save_model_bundle

    torch.manual_seed(seed)
    network, model, outputs, head, preprocess = _network(task)
    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    save_checkpoint({"model": model.state_dict(), "epoch": 1}, model_dir / "best.pt")
    save_model_bundle(model_dir, network=network, preprocess=preprocess, modality="CT",
                      outputs=outputs, fingerprint=None, checkpoint="best.pt",
                      head=head)  # fmt: skip
    run = {"task": task, "config": {}, "seed": seed, "cases": {"train": ["a"], "validation": []}}
    (model_dir / "run.json").write_text(json.dumps(run))
    return root


def _classification_manifest(segmentation: Path) -> Path:
    """The segmentation set's images as a classification manifest (classes alternate)."""
    raw = json.loads(segmentation.read_text())
    del raw["labels"]
    raw["classes"] = ["normal", "nodule"]
    for split in ("training", "test"):
        raw[split] = [{"id": c["id"], "image": c["image"], "class": ("normal", "nodule")[i % 2]}
                      for i, c in enumerate(raw[split])]  # fmt: skip
    path = segmentation.parent / "classification.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="session")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A manifest per task; each test split holds one case."""
    from medimg.synthetic.datasets import write_ct_segmentation_dataset
    from medimg.synthetic.detection import ChestSettings
    from medimg.synthetic.detection_datasets import write_ct_detection_dataset

    root = tmp_path_factory.mktemp("data")
    seg = write_ct_segmentation_dataset(root / "seg", 5, seed=3)
    det = write_ct_detection_dataset(root / "det", 5, seed=1,
                                     settings=ChestSettings(diameter_range_mm=(8.0, 16.0)))  # fmt: skip
    return {"segmentation": seg, "classification": _classification_manifest(seg), "detection": det}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run folder per task (read only)."""
    root = tmp_path_factory.mktemp("runs")
    return {task: write_model_run(root / task, task) for task in TASK_NAMES}


@pytest.fixture(scope="session")
def packages(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An unsigned package of each run folder."""
    from medimg.packages import pack_model

    root = tmp_path_factory.mktemp("packages")
    return {task: pack_model(run, root / f"{task}.medimg") for task, run in runs.items()}
