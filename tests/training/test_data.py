from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medimg.errors import CheckpointError, ConfigError
from medimg.keys import Keys
from medimg.networks import NetworkConfig, build_network
from medimg.training import (
    epoch_batches,
    holdout_split,
    label_balanced_crop,
    load_model_bundle,
    save_checkpoint,
    save_model_bundle,
    segmentation_loss,
)
from medimg.transforms import PreprocessConfig


def _samples(n: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(n):
        label = torch.zeros(1, 12, 12, 8)
        label[0, 2:6, 2:6, 2:6] = 1
        out.append(
            {Keys.IMAGE.value: torch.full((1, 12, 12, 8), float(i)), Keys.LABEL.value: label}
        )
    return out


def test_epoch_batches_depend_on_seed_and_epoch_only() -> None:
    samples = _samples(3)
    crop = label_balanced_crop((8, 8, 8), num_classes=2, num_samples=2)
    first = epoch_batches(samples, crop, batch_size=4, seed=1, epoch=0)
    # 3 cases x 2 patches = 6 patches -> batches of 4 and 2
    assert [tuple(x.shape) for x, _ in first] == [(4, 1, 8, 8, 8), (2, 1, 8, 8, 8)]
    assert first[0][1].dtype == torch.long
    again = epoch_batches(samples, crop, batch_size=4, seed=1, epoch=0)
    other = epoch_batches(samples, crop, batch_size=4, seed=1, epoch=1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    with pytest.raises(ConfigError, match=r"batch_size must be >= 1, got 0"):
        epoch_batches(samples, crop, batch_size=0, seed=1, epoch=0)


def test_holdout_split() -> None:
    kept, held = holdout_split(list(range(10)), fraction=0.2, seed=4)
    assert (len(kept), len(held)) == (8, 2)
    assert sorted(kept + held) == list(range(10))
    assert holdout_split(list(range(10)), fraction=0.2, seed=4) == (kept, held)
    assert holdout_split(["a"], fraction=0.5, seed=0) == (["a"], [])
    assert holdout_split(["a", "b"], fraction=0.1, seed=0)[1]  # at least one held out
    with pytest.raises(ConfigError, match=r"fraction must be in \[0, 1\), got 1.0"):
        holdout_split([1, 2], fraction=1.0, seed=0)


def test_loss_kinds() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 1, 6, 6))
    both = float(segmentation_loss("dice_ce")(logits, target))
    parts = float(segmentation_loss("dice")(logits, target)) + float(
        segmentation_loss("ce")(logits, target)
    )
    assert both == pytest.approx(parts, rel=1e-5)
    with pytest.raises(ConfigError, match=r"loss must be one of dice_ce, dice, ce, got 'focal'"):
        segmentation_loss("focal")


def test_model_bundle_round_trip(tmp_path: Path) -> None:
    cfg = NetworkConfig(
        name="unet", spatial_dims=3, out_channels=3, roi_size_vox=(8, 8, 8), base_features=4
    )
    net = build_network(cfg)
    save_checkpoint({"model": net.state_dict()}, tmp_path / "best.pt")
    save_model_bundle(
        tmp_path, network=cfg, preprocess=PreprocessConfig(target_spacing_mm=(1.0, 1.0, 2.5)),
        modality="CT", outputs={1: "liver", 2: "spleen"}, fingerprint=None, checkpoint="best.pt",
    )  # fmt: skip
    bundle = load_model_bundle(tmp_path)
    assert (bundle.network, bundle.outputs, bundle.modality) == (
        cfg,
        {1: "liver", 2: "spleen"},
        "CT",
    )
    assert bundle.preprocess.target_spacing_mm == (1.0, 1.0, 2.5)
    assert not bundle.model.training
    for p, q in zip(net.state_dict().values(), bundle.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    save_checkpoint({"model": build_network(cfg).state_dict()}, tmp_path / "best.pt")  # replaced
    with pytest.raises(CheckpointError, match=r"best.pt has SHA-256 .* it was replaced or damaged"):
        load_model_bundle(tmp_path)
    with pytest.raises(ConfigError, match=r"model folder must hold model.json, got none in"):
        load_model_bundle(tmp_path / "nothing")
