"""Tiny trained models for the ONNX tests: a DynUNet (CT segmentation) and a ResNet (X-ray).

Trained as tests/serve/conftest.py and tests/pipelines/test_classification.py train theirs (a
few seconds each on the CPU): trained logits have clear margins, so a label flip between
backends means a real difference, not a coin toss between near-equal random logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg.synthetic.datasets import (
    write_ct_segmentation_dataset,
    write_xray_classification_dataset,
)
from medimg.training import TrainConfig
from medimg.transforms import PreprocessConfig


@pytest.fixture(scope="session")
def ct_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 seeded cases on oblique, anisotropic, LPS- or RAS-stored grids; 1 in the test split
    return write_ct_segmentation_dataset(tmp_path_factory.mktemp("onnx-ct"), 5, seed=11)


@pytest.fixture(scope="session")
def seg_run(ct_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a DynUNet (deep supervision) trained for 2 epochs."""
    from pipelines.segmentation import SegmentationConfig, train

    out = tmp_path_factory.mktemp("onnx-seg-run")
    cfg = SegmentationConfig(
        manifest=ct_dataset, out_dir=out, network="dynunet", base_features=4,
        roi_size_vox=(16, 16, 8), batch_size=2, samples_per_case=1,
        train=TrainConfig(max_epochs=2, learning_rate=1e-2, device="cpu"),
    )  # fmt: skip
    train(cfg)
    return out


@pytest.fixture(scope="session")
def xray_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 12 radiograph phantoms, normal/nodule alternating
    return write_xray_classification_dataset(tmp_path_factory.mktemp("onnx-xr"), 12, seed=0)


@pytest.fixture(scope="session")
def cls_run(xray_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a narrow 2D ResNet-18 trained for 2 epochs on 32 x 32 radiographs."""
    from pipelines.classification import ClassificationConfig, train

    out = tmp_path_factory.mktemp("onnx-cls-run")
    cfg = ClassificationConfig(
        manifest=xray_dataset, out_dir=out, network="resnet18", width_factor=0.125,
        stem_stride=2, preprocess=PreprocessConfig(xray_size_px=(32, 32)), batch_size=8,
        train=TrainConfig(max_epochs=2, learning_rate=3e-3, device="cpu"),
    )  # fmt: skip
    train(cfg)
    return out
