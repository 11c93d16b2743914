"""Model folders to pack: what training writes, built directly (a tiny seeded network).

Training is not what these tests check, so the folder is written the way
:func:`medimg.tasks.engine.train` writes it (``save_checkpoint``, ``save_model_bundle``,
``run.json``, ``curves.png``) with a randomly initialised network: a second per folder less.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from medimg.packages import KeyPair, generate_keypair


def write_run(root: Path, *, task: str = "segmentation", seed: int = 0) -> Path:
    """A run folder ``root`` (``model/`` with record, checkpoint, run.json; ``evaluation/``)."""
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_checkpoint, save_model_bundle
    from medimg.transforms import PreprocessConfig

    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    torch.manual_seed(seed)
    head = None
    if task == "segmentation":
        network = NetworkConfig(name="dynunet", in_channels=1, out_channels=3,
                                roi_size_vox=(16, 16, 8), spacing_mm=(1.0, 1.0, 2.5),
                                base_features=4, deep_supervision=True)  # fmt: skip
        outputs = {1: "liver", 2: "spleen"}
        config = {"sw_overlap": 0.25, "mirror_axes": [0, 1]}
    else:
        from medimg.tasks.classification import ClassificationHead

        network = NetworkConfig(name="resnet18", in_channels=1, out_channels=2,
                                roi_size_vox=(16, 16, 16), base_features=4,
                                width_factor=0.25)  # fmt: skip
        outputs = {0: "normal", 1: "nodule"}
        config = {}
        head = ClassificationHead(multi_label=False, input_size_vox=(16, 16, 16))
    model = build_network(network)
    save_checkpoint({"model": model.state_dict(), "epoch": 2}, model_dir / "best.pt")
    save_model_bundle(
        model_dir, network=network, preprocess=PreprocessConfig(target_spacing_mm=(1.0, 1.0, 2.5)),
        modality="CT", outputs=outputs, fingerprint=None, checkpoint="best.pt", head=head,
    )  # fmt: skip
    run = {"task": task, "config": config, "seed": seed, "manifest_sha256": "ab" * 32,
           "cases": {"train": ["a", "b", "c"], "validation": ["d"]}}  # fmt: skip
    (model_dir / "run.json").write_text(json.dumps(run))
    (model_dir / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (root / "evaluation").mkdir()
    (root / "evaluation" / "summary.json").write_text(json.dumps({"mean_dice": 0.875}))
    (root / "evaluation" / "cases.csv").write_text("case,dice\na,0.875\n")
    (root / "evaluation" / "run.json").write_text("{}")  # holds local paths: left out
    return root


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmentation run folder (read only: tests copy it before changing anything)."""
    return write_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], KeyPair]:
    """Signing key pairs by name, made once per session."""
    root = tmp_path_factory.mktemp("keys")
    made: dict[str, KeyPair] = {}

    def get(name: str) -> KeyPair:
        if name not in made:
            made[name] = generate_keypair(root / name)
        return made[name]

    return get


@pytest.fixture
def make_run() -> Callable[..., Path]:
    """:func:`write_run` as a fixture (another task, another seed)."""
    return write_run
