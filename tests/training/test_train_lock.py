"""Two training runs into one folder: the second is refused while the first runs (real processes).

Before the lock both ``medimg train --out X`` reported success and the second silently replaced
the first run's checkpoints.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from medimg.cli import main
from medimg.errors import ConfigError, OutputLockedError
from medimg.synthetic.datasets import write_ct_segmentation_dataset
from medimg.training import LAST, TrainConfig, fit, segmentation_loss, training_lock

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import pipelines.segmentation as seg
    import medimg.tasks.segmentation as task  # where the task draws its batches
    from medimg.training import TrainConfig

    real = task.epoch_batches
    ready, go = Path({ready!r}), Path({go!r})

    def waiting(*args, epoch, **kwargs):
        ready.touch()  # holds the lock now, in the middle of training
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return real(*args, epoch=epoch, **kwargs)

    task.epoch_batches = waiting
    cfg = seg.SegmentationConfig(
        manifest=Path({manifest!r}), out_dir=Path({out!r}), network="unet", base_features=4,
        roi_size_vox=(16, 16, 8), augment=None, train=TrainConfig(max_epochs=1, device="cpu"),
    )
    seg.train(cfg)
    """
)


def _wait_for(path: Path, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            _, err = child.communicate(timeout=10)
            pytest.fail(f"the first run never got going: {err[-2000:]}")
        time.sleep(0.05)


def test_a_second_train_into_a_running_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_ct_segmentation_dataset(tmp_path / "data", 4, seed=1)
    out = tmp_path / "run"
    ready, go = tmp_path / "ready", tmp_path / "go"
    script = _CHILD.format(ready=str(ready), go=str(go), manifest=str(manifest), out=str(out))
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(ready, child)
        args = ["train", "--manifest", str(manifest), "--out", str(out), "--device", "cpu"]
        tiny = ["--network", "unet", "--features", "4", "--roi", "16", "16", "8", "--epochs", "1"]
        assert main([*args, *tiny]) == 2
        err = capsys.readouterr().err
        assert f"{out / 'model'} is in use by pid {child.pid} since 20" in err
        assert "wait for it to finish or stop it, or choose another output folder" in err
        assert main([*args, *tiny, "--resume"]) == 2  # resuming a live run is refused too
        assert f"in use by pid {child.pid}" in capsys.readouterr().err
        with pytest.raises(OutputLockedError, match=rf"is in use by pid {child.pid} since "):
            fit(
                torch.nn.Conv3d(1, 2, 1),
                segmentation_loss(),
                lambda e: [],
                TrainConfig(max_epochs=1, device="cpu"),
                out_dir=out / "model",
            )
    finally:
        go.touch()
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert (out / "model" / LAST).is_file()  # the first run's result is there, whole
    assert not (out / "model" / ".medimg.lock").exists()


def test_fit_holds_the_lock_and_releases_it_on_failure(tmp_path: Path) -> None:
    seen: list[bool] = []

    def batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        seen.append((tmp_path / ".medimg.lock").is_file())
        return []  # fails: no batches

    cfg = TrainConfig(max_epochs=1, device="cpu")
    with pytest.raises(ConfigError, match=r"the training batches must not be empty"):
        fit(torch.nn.Conv2d(1, 2, 1), segmentation_loss(), batches, cfg, out_dir=tmp_path)
    assert seen == [True]
    assert not (tmp_path / ".medimg.lock").exists()
    with training_lock(tmp_path), pytest.raises(OutputLockedError, match=r"is in use by pid"):
        fit(torch.nn.Conv2d(1, 2, 1), segmentation_loss(), batches, cfg, out_dir=tmp_path)
