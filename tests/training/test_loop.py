from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medimg.errors import ConfigError, OutputExistsError
from medimg.networks import NetworkConfig, build_network
from medimg.training import (
    BEST,
    LAST,
    TrainConfig,
    fit,
    load_checkpoint,
    segmentation_loss,
    sha256_file,
)


def _square_case() -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    label[..., 4:11, 5:12] = 1
    gen = torch.Generator().manual_seed(0)
    image = label.float() + 0.3 * torch.randn(1, 1, 16, 16, generator=gen)
    return image, label


def test_overfits_a_tiny_case(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_network(
        NetworkConfig(name="unet", spatial_dims=2, roi_size_vox=(16, 16), base_features=4)
    )
    batch = _square_case()
    cfg = TrainConfig(max_epochs=1, iterations_per_epoch=40, learning_rate=1e-2, device="cpu")
    losses: list[float] = []

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = segmentation_loss()(out, target)
        losses.append(float(loss.detach()))
        return loss

    fit(net, loss_fn, lambda epoch: [batch], cfg, out_dir=tmp_path)
    # Dice+CE starts near 0.7 + 0.5 for random logits; a network that learned the square is
    # far below. Demand the last 5 steps average under a third of the first.
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:1]) / 3


class _Tiny(torch.nn.Module):
    """Conv + dropout: dropout draws from torch's global generator, so resume must restore it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.drop = torch.nn.Dropout(0.3)
        self.b = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.drop(torch.relu(self.a(x))))  # type: ignore[no-any-return]


def _epoch_batches(
    epoch: int, stop_at: int | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if epoch == stop_at:
        raise KeyboardInterrupt
    gen = torch.Generator().manual_seed(100 + epoch)  # the epoch's data, seeded by its index
    image, label = _square_case()
    return [(image + 0.1 * torch.randn(image.shape, generator=gen), label) for _ in range(2)]


def _run(out: Path, stop_at: int | None = None, resume: bool = False) -> object:
    torch.manual_seed(0)
    model = _Tiny()
    cfg = TrainConfig(max_epochs=4, learning_rate=5e-3, lr_schedule="cosine", device="cpu")

    def validate(m: torch.nn.Module, device: torch.device) -> float:
        image, label = _square_case()
        return float((m(image).argmax(1, keepdim=True) == label).float().mean())

    result = fit(
        model,
        segmentation_loss(),
        lambda e: _epoch_batches(e, stop_at),
        cfg,
        out_dir=out,
        validate=validate,
        resume=resume,
    )
    return model, result


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, straight_result = _run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", stop_at=2)
    assert load_checkpoint(tmp_path / "b" / LAST)["trainer"]["epoch"] == 2
    torch.manual_seed(123)  # the interrupted process's RNG moved on; resume must not care
    resumed, resumed_result = _run(tmp_path / "b", resume=True)
    for (name, p), q in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert resumed_result.history == straight_result.history
    assert resumed_result.epochs_run == 4
    assert resumed_result.best_epoch == straight_result.best_epoch


def test_early_stopping_and_checkpoints(tmp_path: Path) -> None:
    scores = iter([0.5, 0.6, 0.6, 0.55, 0.9, 0.9])
    cfg = TrainConfig(
        max_epochs=6,
        early_stopping_patience=2,
        min_improvement=0.01,
        lr_schedule="poly",
        optimizer="sgd",
        momentum=0.9,
        device="cpu",
    )
    result = fit(
        _Tiny(),
        segmentation_loss(),
        _epoch_batches,
        cfg,
        out_dir=tmp_path,
        validate=lambda m, d: next(scores),
    )
    # 0.5 best, 0.6 best (epoch 2), 0.6 stale 1, 0.55 stale 2 -> stop after epoch 4
    assert (result.epochs_run, result.stopped_early) == (4, True)
    assert (result.best_metric, result.best_epoch) == (0.6, 2)
    assert result.history["val_metric"] == (0.5, 0.6, 0.6, 0.55)
    # poly: lr_e = 1e-3 * (1 - e/6) ** 0.9
    assert result.history["learning_rate"][1] == pytest.approx(1e-3 * (5 / 6) ** 0.9)
    best = load_checkpoint(tmp_path / BEST, sha256=result.checkpoints[BEST])
    assert (best["epoch"], best["metric"]) == (2, 0.6)
    assert result.checkpoints[LAST] == sha256_file(tmp_path / LAST)


def test_fit_refuses_to_overwrite_and_empty_batches(tmp_path: Path) -> None:
    cfg = TrainConfig(max_epochs=1, device="cpu")
    fit(_Tiny(), segmentation_loss(), _epoch_batches, cfg, out_dir=tmp_path)
    with pytest.raises(OutputExistsError, match=r"last.pt: a run exists here; resume it"):
        fit(_Tiny(), segmentation_loss(), _epoch_batches, cfg, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"batches must not be empty, got no batch"):
        fit(_Tiny(), segmentation_loss(), lambda e: [], cfg, out_dir=tmp_path / "x")


def test_tensorboard_bf16_and_fixed_iterations(tmp_path: Path) -> None:
    cfg = TrainConfig(
        max_epochs=1, iterations_per_epoch=3, precision="bf16", tensorboard=True, device="cpu"
    )
    seen: list[int] = []

    def batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        data = _epoch_batches(epoch)
        seen.append(len(data))
        return data

    result = fit(_Tiny(), segmentation_loss(), batches, cfg, out_dir=tmp_path)
    assert result.epochs_run == 1
    assert seen == [2]  # one epoch's list of 2 batches, cycled to give 3 steps
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
