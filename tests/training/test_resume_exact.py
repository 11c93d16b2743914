"""Exact resume: train N epochs straight vs. train, ``kill -9`` mid-epoch, resume to N.

The interrupted run is a real child process that SIGKILLs itself after the first optimizer step
of epoch 2 (so its last checkpoint is from epoch 1 and its in-memory weights had moved on); it
leaves its lock behind, which the resumed run takes over. Every parameter and buffer must be
``torch.equal`` to the uninterrupted run's.

The bug this pins: validation runs sliding-window inference, which moves the network to
``channels_last_3d`` in place; the uninterrupted run then trained in that layout while the
resumed one (freshly loaded, contiguous weights) did not, and convolutions in the two layouts
round differently (weights ~1e-4 apart after a few epochs).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medimg.synthetic.datasets import (
    write_ct_segmentation_dataset,
    write_xray_classification_dataset,
)
from medimg.training import LAST, TrainConfig, fit, load_checkpoint, segmentation_loss

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {here!r})
    import test_resume_exact as t
    import pipelines.{pipeline} as pipeline
    import medimg.tasks.{pipeline} as task  # where the task draws its batches

    real = task.epoch_batches

    def dying(*args, epoch, **kwargs):
        batches = real(*args, epoch=epoch, **kwargs)
        if epoch != {kill_epoch}:
            return batches
        def killed_after_one_step():
            yield batches[0]
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the epoch
            yield batches[1]
        return killed_after_one_step()

    task.epoch_batches = dying
    pipeline.train(t.{config}(Path({manifest!r}), Path({out!r})))
    """
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The child runs on one thread; so do the runs it is compared with (same kernels)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def seg_config(manifest: Path, out: Path) -> object:
    from pipelines.segmentation import SegmentationConfig

    return SegmentationConfig(
        manifest=manifest,
        out_dir=out,
        network="dynunet",
        base_features=4,
        roi_size_vox=(16, 16, 8),
        batch_size=2,
        samples_per_case=1,  # 3 training cases: 2 batches per epoch
        train=TrainConfig(max_epochs=2, learning_rate=1e-2, device="cpu"),
    )


def cls_config(manifest: Path, out: Path) -> object:
    from medimg.transforms import AugmentConfig, PreprocessConfig
    from pipelines.classification import ClassificationConfig

    return ClassificationConfig(
        manifest=manifest,
        out_dir=out,
        network="resnet18",
        width_factor=0.125,
        stem_stride=2,
        preprocess=PreprocessConfig(xray_size_px=(32, 32)),
        augment=AugmentConfig(rotation_deg=10.0, p_affine=0.5),
        balance="sampler",
        batch_size=8,  # 13 training cases: 2 batches per epoch
        train=TrainConfig(max_epochs=2, learning_rate=3e-3, device="cpu"),
    )


def _kill_during_epoch_2(pipeline: str, config: str, manifest: Path, out: Path) -> None:
    script = _CHILD.format(
        root=str(ROOT),
        here=str(Path(__file__).parent),
        pipeline=pipeline,
        config=config,
        manifest=str(manifest),
        out=str(out),
        kill_epoch=1,
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert list(wa) == list(wb)
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.mark.parametrize(
    ("pipeline", "config", "write"),
    [
        ("segmentation", "seg_config", lambda d: write_ct_segmentation_dataset(d, 5, seed=3)),
        (
            "classification",
            "cls_config",
            lambda d: write_xray_classification_dataset(d, 20, seed=0),
        ),
    ],
)
def test_resume_after_kill_9_equals_an_uninterrupted_run(
    pipeline: str,
    config: str,
    write: object,
    tmp_path: Path,
    one_thread: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import importlib

    module = importlib.import_module(f"pipelines.{pipeline}")
    make = globals()[config]
    manifest = write(tmp_path / "data")  # type: ignore[operator]
    straight = module.train(make(manifest, tmp_path / "straight"))

    _kill_during_epoch_2(pipeline, config, manifest, tmp_path / "killed")
    model_dir = tmp_path / "killed" / "model"
    assert load_checkpoint(model_dir / LAST)["trainer"]["epoch"] == 1  # epoch 2 was lost
    assert (model_dir / ".medimg.lock").is_file()  # left by the dead run
    stale = model_dir / ".last.pt.k2j3h_x9.tmp.pt"  # as a kill during a write leaves one
    stale.write_bytes(b"half a checkpoint")

    torch.manual_seed(1234)  # this process's generators moved on; resume must not care
    with caplog.at_level(logging.WARNING):
        resumed = module.train(make(manifest, tmp_path / "killed"), resume=True)
    assert "taking over the lock" in caplog.text
    assert not stale.exists()
    assert not (model_dir / ".medimg.lock").exists()  # released at the end
    assert resumed.fit.history == straight.fit.history
    assert resumed.fit.epochs_run == 2
    _assert_same_weights(straight.model_dir / LAST, model_dir / LAST)
    _assert_same_weights(straight.checkpoint, resumed.checkpoint)


class _LayoutChanging(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # type: ignore[no-any-return]


def test_validation_gives_the_parameters_their_layout_back(tmp_path: Path) -> None:
    model = _LayoutChanging()
    seen: list[bool] = []

    def validate(m: torch.nn.Module, device: torch.device) -> float:
        m.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # as predict_volume does
        weight = model.conv.weight
        seen.append(weight.is_contiguous(memory_format=torch.channels_last_3d))
        return 0.0

    image = torch.zeros(1, 1, 4, 4, 4)
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    cfg = TrainConfig(max_epochs=2, device="cpu")
    fit(
        model,
        segmentation_loss(),
        lambda e: [(image, target)],
        cfg,
        out_dir=tmp_path,
        validate=validate,
    )
    assert seen == [True, True]
    assert model.conv.weight.is_contiguous()  # trained (and left) in the layout it came in
