from __future__ import annotations

import json
import random
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.errors import CheckpointError, ConfigError
from medimg.keys import Keys
from medimg.training import (
    TrainConfig,
    autocast,
    label_balanced_crop,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    seed_everything,
    segmentation_loss,
    select_device,
    write_run_record,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "adam"}, r"optimizer must be one of adamw, sgd, got 'adam'"),
        ({"lr_schedule": "step"}, r"lr_schedule must be one of poly, cosine, constant, got 'step'"),
        ({"precision": "fp8"}, r"precision must be one of fp32, bf16, fp16, got 'fp8'"),
        ({"max_epochs": 0}, r"max_epochs must be >= 1, got 0"),
        ({"iterations_per_epoch": 0}, r"iterations_per_epoch must be >= 1 or None, got 0"),
        ({"early_stopping_patience": -1}, r"early_stopping_patience must be >= 1 or None, got -1"),
        ({"learning_rate": 0.0}, r"learning_rate must be > 0 and finite, got 0.0"),
        ({"momentum": 1.0}, r"momentum in \[0, 1\), got 1e-05 and 1.0"),
        ({"grad_clip_norm": 0.0}, r"grad_clip_norm must be > 0 or None, got 0.0"),
    ],
)
def test_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_device_and_autocast() -> None:
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(
        ConfigError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'"
    ):
        select_device("gpu0")
    with pytest.raises(ConfigError, match=r"device must be .* got 'meta'"):
        select_device("meta")
    with pytest.raises(ConfigError, match=r"precision 'fp16' needs a CUDA device, got 'cpu'"):
        autocast(torch.device("cpu"), "fp16")
    with pytest.raises(ConfigError, match=r"precision must be one of fp32, bf16, fp16, got 'x'"):
        autocast(torch.device("cpu"), "x")
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda() -> None:
    with pytest.raises(ConfigError, match=r"device 'cuda' asked for, but CUDA is not available"):
        select_device("cuda")


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    seed_everything(7)
    digest = save_checkpoint({"rng": rng_state()}, tmp_path / "s.pt")
    expected = (random.random(), np.random.random(), torch.rand(1).item())  # noqa: NPY002
    restore_rng_state(load_checkpoint(tmp_path / "s.pt", sha256=digest)["rng"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected  # noqa: NPY002


def test_checkpoint_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint({"w": torch.ones(2)}, path)
    with pytest.raises(
        CheckpointError, match=r"c.pt has SHA-256 [0-9a-f]{64}, expected 00; it was"
    ):
        load_checkpoint(path, sha256="00")
    with pytest.raises(CheckpointError, match=r"checkpoint .*missing.pt not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"obj": Path("x")}, tmp_path / "unsafe.pt")  # a pickled object, not weights
    with pytest.raises(CheckpointError, match=r"unsafe.pt cannot be loaded with weights_only=True"):
        load_checkpoint(tmp_path / "unsafe.pt")


def test_deep_supervision_loss_weights_heads() -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 8, 8))
    heads = torch.randn(2, 3, 3, 8, 8)  # (B, heads, C, X, Y)
    plain = segmentation_loss()
    expected = sum(w * plain(heads[:, i], target) for i, w in enumerate((1.0, 0.5, 0.25)))
    deep = segmentation_loss(deep_supervision=True)
    assert float(deep(heads, target)) == pytest.approx(float(expected), rel=1e-5)
    assert float(deep(heads[:, 0], target)) == pytest.approx(float(plain(heads[:, 0], target)))


def test_label_balanced_crop_finds_the_small_class() -> None:
    label = torch.zeros(1, 20, 20, 6)
    label[0, 15:17, 2:4, 1:3] = 2  # a small lesion-like class in a corner
    label[0, 2:10, 2:10, :] = 1
    sample = {Keys.IMAGE.value: torch.rand(1, 20, 20, 6), Keys.LABEL.value: label}
    crop = label_balanced_crop((8, 8, 8), num_classes=3, num_samples=4, ratios=(0, 0, 1))
    crop.set_random_state(0)
    patches = crop(sample)
    assert len(patches) == 4
    for patch in patches:
        assert tuple(patch[Keys.IMAGE.value].shape) == (1, 8, 8, 8)  # z padded from 6 to 8
        assert (patch[Keys.LABEL.value] == 2).any()


def test_label_balanced_crop_errors() -> None:
    with pytest.raises(ConfigError, match=r"num_classes >= 2 .* got \(8, 8\), 1 and 2"):
        label_balanced_crop((8, 8), num_classes=1)
    with pytest.raises(ConfigError, match=r"ratios must be 3 values >= 0 .* got \(1.0, 1.0\)"):
        label_balanced_crop((8, 8), num_classes=3, ratios=(1.0, 1.0))


def test_run_record(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text("{}")
    cfg = TrainConfig(max_epochs=3)
    path = write_run_record(
        tmp_path, config=cfg, seed=3, started="t0", manifest=manifest, extra={"note": (1, 2)}
    )
    record = json.loads(path.read_text())
    assert record["config"]["max_epochs"] == 3
    # sha256 of the two bytes "{}"
    assert record["manifest_sha256"] == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert (record["seed"], record["started"], record["note"]) == (3, "t0", [1, 2])
    assert record["versions"]["torch"] == metadata.version("torch")
    assert record["git_commit"] is None or len(record["git_commit"].split("-")[0]) == 40
