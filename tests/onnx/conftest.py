"""Tiny trained models for the ONNX tests: a DynUNet (CT segmentation) and a ResNet (X-ray).

Trained as tests/serve/conftest.py and tests/pipelines/test_classification.py train theirs (a
few seconds each on the CPU): trained logits have clear margins, so a label flip between
backends means a real difference, not a coin toss between near-equal random logits.
"""

from __future__ import annotations

from collections.abc import Callable
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


def write_untrained_run(
    root: Path, *, task: str = "segmentation", seed: int = 0,
    target_spacing_mm: tuple[float, float, float] = (1.0, 1.0, 2.5),
) -> Path:  # fmt: skip
    """A run folder as training writes it, with a seeded untrained network (no training).

    Segmentation: DynUNet (deep supervision) on (16, 16, 8) windows at (1, 1, 2.5) mm, CT with
    the soft-tissue window; classification: a narrow 3D ResNet-18 on (16, 16, 16) inputs.
    """
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_checkpoint, save_model_bundle

    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    torch.manual_seed(seed)
    head = None
    if task == "segmentation":
        network = NetworkConfig(name="dynunet", out_channels=3, roi_size_vox=(16, 16, 8),
                                spacing_mm=(1.0, 1.0, 2.5), base_features=4,
                                deep_supervision=True)  # fmt: skip
        outputs = {1: "liver", 2: "spleen"}
    else:
        from medimg.tasks.classification import ClassificationHead

        network = NetworkConfig(name="resnet18", out_channels=2, roi_size_vox=(16, 16, 16),
                                width_factor=0.25)  # fmt: skip
        outputs = {0: "normal", 1: "nodule"}
        head = ClassificationHead(input_size_vox=(16, 16, 16))
    save_checkpoint({"model": build_network(network).state_dict()}, model_dir / "best.pt")
    preprocess = PreprocessConfig(target_spacing_mm=target_spacing_mm, hu_window="soft_tissue")
    save_model_bundle(model_dir, network=network, preprocess=preprocess, modality="CT",
                      outputs=outputs, fingerprint=None, checkpoint="best.pt", head=head)  # fmt: skip
    return root


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmentation run folder with an untrained DynUNet (read only: copy to change it)."""
    return write_untrained_run(tmp_path_factory.mktemp("onnx-untrained") / "run")


@pytest.fixture
def make_untrained_run() -> Callable[..., Path]:
    """:func:`write_untrained_run` as a fixture (another task, another seed)."""
    return write_untrained_run
