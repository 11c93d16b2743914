"""Batch prediction acceptance (issue 12): broken cases, kill -9 and resume, stale outputs.

A tiny untrained 3D U-Net saved as a model folder predicts tiny anisotropic CT volumes
(12 x 10 x 8 voxels at 2 x 2.5 x 3.5 mm) through ``medimg predict``; every assertion is on
what lands in the output folder and in ``summary.json``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimg.cli import main
from medimg.io import save_volume
from medimg.io.integrity import is_temporary_name
from medimg.io.locks import LOCK_NAME

SHAPE, AFFINE = (12, 10, 8), np.diag([2.0, 2.5, 3.5, 1.0])


def _model(folder: Path, seed: int) -> Path:
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_model_bundle
    from medimg.training.checkpoint import save_checkpoint
    from medimg.transforms import PreprocessConfig

    net = NetworkConfig(name="unet", in_channels=1, out_channels=2, roi_size_vox=(16, 16, 8),
                        spacing_mm=(2.0, 2.0, 3.0), base_features=4)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        weights = build_network(net).state_dict()
    folder.mkdir(parents=True)
    save_checkpoint({"model": weights}, folder / "best.pt")
    preprocess = PreprocessConfig(target_spacing_mm=(2.0, 2.0, 3.0), hu_window="soft_tissue")
    save_model_bundle(folder, network=net, preprocess=preprocess, modality="CT",
                      outputs={0: "background", 1: "organ"}, fingerprint=None,
                      checkpoint="best.pt")  # fmt: skip
    return folder


def _image(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.normal(40.0, 120.0, SHAPE).astype(np.float32)
    image[3:8, 2:7, 2:6] += 200.0  # a bright box, so the labels are not uniform noise
    return save_volume(image, path, like=AFFINE)


def _manifest(path: Path, images: list[str]) -> Path:
    cases = [{"id": Path(p).name.split(".")[0], "image": p} for p in images]
    record = {
        "schema_version": 1, "name": "batch", "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "organ"}],
        "training": [cases[0] | {"id": "train_000"}], "test": cases,
    }  # fmt: skip
    path.write_text(json.dumps(record))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    (root / "images").mkdir()
    for k in range(45):
        _image(root / "images" / f"case_{k:03d}.nii.gz", seed=k)
    return {
        "root": root,
        "model": _model(root / "model_a", 0),
        "other": _model(root / "model_b", 1),
    }


def _broken_cases(root: Path) -> dict[str, str]:
    """The five broken inputs; returns case id -> the file its failure must name."""
    images = root / "images"
    good = (images / "case_000.nii.gz").read_bytes()
    # corrupt gzip: stored (level 0) deflate, one bit flipped inside the voxels: the stream
    # still inflates, only the CRC32 in the trailer tells
    stored = bytearray(gzip.compress(gzip.decompress(good), compresslevel=0, mtime=0))
    stored[len(stored) - 200] ^= 0x04
    (images / "broken_crc.nii.gz").write_bytes(bytes(stored))
    (images / "broken_truncated.nii.gz").write_bytes(good[: len(good) // 2])
    # wrong grid: a degenerate affine (the third voxel axis has zero length), no grid at all
    import nibabel as nib

    flat = AFFINE.copy()
    flat[2, 2] = 0.0
    degenerate = nib.Nifti1Image(np.zeros(SHAPE, np.float32), None)
    degenerate.set_sform(flat, code=1)
    degenerate.header.set_qform(None, code=0)
    nib.save(degenerate, str(images / "broken_grid.nii.gz"))
    nan = np.zeros(SHAPE, np.float32)
    nan[4, 5, 6] = np.nan
    save_volume(nan, images / "broken_nan.nii.gz", like=AFFINE)
    names = ["broken_missing", "broken_crc", "broken_truncated", "broken_grid", "broken_nan"]
    return {n: f"{n}.nii.gz" for n in names}


def _predict(manifest: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--manifest", str(manifest), "--model", str(model), "--out", str(out),
            "--device", "cpu", "--keep-going", *extra]  # fmt: skip


def _summary(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return loaded


def _statuses(out: Path) -> dict[str, str]:
    return {c["case_id"]: c["status"] for c in _summary(out)["cases"]}


@pytest.mark.slow  # 50 cases, about 8 s on 2 idle cores
def test_fifty_cases_five_broken(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = world["root"]
    broken = _broken_cases(root)
    images = [f"images/case_{k:03d}.nii.gz" for k in range(45)]
    order = images[:10] + [f"images/{f}" for f in broken.values()] + images[10:]
    manifest = _manifest(root / "fifty.json", order)
    out = tmp_path / "out"
    assert main(_predict(manifest, world["model"], out)) == 1  # failed work
    err = capsys.readouterr().err
    assert "error: 5 of 50 cases failed (first: broken_missing: " in err
    assert f"every reason is in {out / 'summary.json'}" in err
    summary = _summary(out)
    assert (summary["written"], summary["failed"], summary["pending"]) == (45, 5, 0)
    outputs = sorted(p.name for p in out.glob("*.nii.gz"))
    assert outputs == [f"case_{k:03d}.nii.gz" for k in range(45)]
    failures = {c["case_id"]: c["error"] for c in summary["cases"] if c["status"] == "failed"}
    assert set(failures) == set(broken)
    for case_id, file_name in broken.items():
        assert file_name in failures[case_id], failures[case_id]
    assert "ImageNotFoundError" in failures["broken_missing"]
    assert "NonFiniteError" in failures["broken_nan"]
    assert "truncated" in failures["broken_truncated"]
    assert "CRC" in failures["broken_crc"] or "crc" in failures["broken_crc"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    shutil.copytree(out, root / "reference")  # uninterrupted outputs, for the kill -9 test


@pytest.mark.slow  # a subprocess importing torch and MONAI, about 6 s
def test_kill_9_at_a_random_moment_then_resume(world: dict[str, Path], tmp_path: Path) -> None:
    # 20 cases and a kill within the first 6: a case takes ~10-100 ms, so under any load
    # the kill lands with cases still pending (8 cases were once all done before it landed)
    n = 20
    # the manifest beside the images: paths outside a manifest's folder need an opt-in
    manifest = _manifest(
        world["root"] / "kill.json", [f"images/case_{k:03d}.nii.gz" for k in range(n)]
    )
    reference = world["root"] / "reference"  # test_fifty_cases_five_broken's outputs
    if not reference.is_dir():  # run alone: an uninterrupted run of these cases
        reference = tmp_path / "reference"
        assert main(_predict(manifest, world["model"], reference)) == 0
    out = tmp_path / "out"
    rng = np.random.default_rng(12)
    after, fraction_s = int(rng.integers(1, 6)), float(rng.uniform(0.0, 0.05))
    cmd = [
        sys.executable,
        "-m",
        "medimg",
        "--log-level",
        "WARNING",
        *_predict(manifest, world["model"], out),
    ]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as child:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if _summary(out)["written"] >= after:
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.005)
        time.sleep(fraction_s)
        assert child.poll() is None, "the batch finished before the kill; predict slower cases"
        child.send_signal(signal.SIGKILL)
    at_kill = _statuses(out)
    finished = [c for c, s in at_kill.items() if s == "written"]
    assert len(finished) >= after
    assert "pending" in at_kill.values()  # killed mid-batch
    assert (out / LOCK_NAME).is_file()  # the dead run's lock is left behind
    mtimes = {c: (out / f"{c}.nii.gz").stat().st_mtime_ns for c in finished}

    assert main(_predict(manifest, world["model"], out)) == 0  # takes the dead run's lock over
    rerun = _statuses(out)
    assert all(rerun[c] == "skipped" for c in finished)  # no finished case redone
    assert all(rerun[c] == "written" for c in at_kill if c not in finished)
    assert {c: (out / f"{c}.nii.gz").stat().st_mtime_ns for c in finished} == mtimes
    names = sorted(p.name for p in out.iterdir())
    assert not [p for p in names if is_temporary_name(p) or p == LOCK_NAME]
    assert names == sorted(
        [f"case_{k:03d}.nii.gz" for k in range(n)] + ["run.json", "summary.json"]
    )
    for k in range(n):  # byte-identical to the uninterrupted run
        name = f"case_{k:03d}.nii.gz"
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_resume_redoes_exactly_the_affected_cases(
    world: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    root = tmp_path / "images"
    root.mkdir()
    images = [
        str(shutil.copy(world["root"] / "images" / f"case_{k:03d}.nii.gz", root)) for k in range(4)
    ]
    manifest = _manifest(tmp_path / "m.json", images)
    out = tmp_path / "out"
    model = world["model"]
    assert main(_predict(manifest, model, out)) == 0
    assert set(_statuses(out).values()) == {"written"}
    assert main(_predict(manifest, model, out)) == 0
    assert set(_statuses(out).values()) == {"skipped"}

    # another model: every case
    assert main(_predict(manifest, world["other"], out)) == 0
    assert set(_statuses(out).values()) == {"written"}
    assert "predicting again: model (checkpoint SHA-256" in caplog.text

    # the same weights with another preprocessing (HU window): every case
    tuned = tmp_path / "model_c"
    shutil.copytree(world["other"], tuned)  # the weights of the last run
    record = json.loads((tuned / "model.json").read_text())
    record["preprocess"]["hu_window"] = "liver"
    (tuned / "model.json").write_text(json.dumps(record))
    caplog.clear()
    assert main(_predict(manifest, tuned, out)) == 0
    assert set(_statuses(out).values()) == {"written"}
    assert "predicting again: preprocessing (chain key" in caplog.text

    # one input changed in place, size and mtime kept: that case only
    changed = Path(images[2])
    stat = changed.stat()
    changed.write_bytes(_image(tmp_path / "new.nii.gz", seed=99).read_bytes())
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    caplog.clear()
    assert main(_predict(manifest, tuned, out)) == 0
    assert _statuses(out) == {"case_000": "skipped", "case_001": "skipped",
                              "case_002": "written", "case_003": "skipped"}  # fmt: skip
    assert f"input file {changed} (content changed" in caplog.text

    # other inference settings (mirroring): every case; the same settings again: none
    assert main(_predict(manifest, tuned, out, "--mirror-axes", "0")) == 0
    assert set(_statuses(out).values()) == {"written"}
    assert main(_predict(manifest, tuned, out, "--mirror-axes", "0")) == 0
    assert set(_statuses(out).values()) == {"skipped"}
    # a replaced output on the right grid: that case only
    shutil.copy(out / "case_000.nii.gz", out / "case_001.nii.gz")
    assert main(_predict(manifest, tuned, out, "--mirror-axes", "0")) == 0
    assert _statuses(out)["case_001"] == "written"
    assert list(_statuses(out).values()).count("skipped") == 3
