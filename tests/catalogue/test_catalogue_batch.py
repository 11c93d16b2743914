"""Bad inputs of batch prediction (``medimg predict``), each pinned to exit code and message."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.io import save_volume
from medimg.io.locks import LOCK_NAME

AFFINE = np.diag([2.0, 2.5, 3.5, 1.0])


def _model(folder: Path) -> Path:
    import torch

    from medimg.networks import NetworkConfig, build_network
    from medimg.training import save_model_bundle
    from medimg.training.checkpoint import save_checkpoint
    from medimg.transforms import PreprocessConfig

    net = NetworkConfig(name="unet", in_channels=1, out_channels=2, roi_size_vox=(16, 16, 8),
                        spacing_mm=(2.0, 2.0, 3.0), base_features=4)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        weights = build_network(net).state_dict()
    folder.mkdir(parents=True)
    save_checkpoint({"model": weights}, folder / "best.pt")
    preprocess = PreprocessConfig(target_spacing_mm=(2.0, 2.0, 3.0), hu_window="soft_tissue")
    save_model_bundle(folder, network=net, preprocess=preprocess, modality="CT",
                      outputs={0: "background", 1: "organ"}, fingerprint=None,
                      checkpoint="best.pt")  # fmt: skip
    return folder


def _dataset(tmp: Path, images: dict[str, np.ndarray | None]) -> Path:
    """A manifest with one test case per entry; ``None`` leaves the file missing."""
    (tmp / "images").mkdir()
    cases = []
    for case_id, array in images.items():
        if array is not None:
            save_volume(array, tmp / "images" / f"{case_id}.nii.gz", like=AFFINE)
        cases.append({"id": case_id, "image": f"images/{case_id}.nii.gz"})
    record = {
        "schema_version": 1, "name": "batch", "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "organ"}],
        "training": [cases[0] | {"id": "train_000"}], "test": cases,
    }  # fmt: skip
    (tmp / "m.json").write_text(json.dumps(record))
    return tmp / "m.json"


def _ok() -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 100.0, (12, 10, 8)).astype(np.float32)


def _predict(tmp: Path, *extra: str, model: Path | None = None, out: str = "out") -> list[str]:
    manifest = tmp / "m.json" if (tmp / "m.json").is_file() else _dataset(tmp, {"ok": _ok()})
    return ["predict", "--manifest", str(manifest), "--out", str(tmp / out),
            "--model", str(model or _model(tmp / "model")), "--device", "cpu", *extra]  # fmt: skip


def _locked(tmp: Path) -> Sequence[str]:
    from medimg.io.locks import _process_start

    (tmp / "out").mkdir()
    (tmp / "out" / LOCK_NAME).write_text(json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), "started": "2026-03-01T10:00:00+00:00",
        "process_start": _process_start(os.getpid()), "command": "medimg predict", "what": "",
    }))  # fmt: skip
    return _predict(tmp)


def _replaced_checkpoint(tmp: Path) -> Sequence[str]:
    model = _model(tmp / "model")
    with (model / "best.pt").open("ab") as f:
        f.write(b"\0")
    return _predict(tmp, model=model)


def _output_is_a_file(tmp: Path) -> Sequence[str]:
    (tmp / "out").write_text("not a folder")
    return _predict(tmp)


def _missing_image(tmp: Path) -> Sequence[str]:
    _dataset(tmp, {"ok": _ok(), "gone": None})
    return _predict(tmp, "--keep-going")


def _nan_image(tmp: Path) -> Sequence[str]:
    nan = _ok()
    nan[1, 2, 3] = np.nan
    _dataset(tmp, {"ok": _ok(), "nan": nan})
    return _predict(tmp, "--keep-going")


def _fail_fast_missing_image(tmp: Path) -> Sequence[str]:
    # no --keep-going: every file is checked before work starts (also with --model)
    manifest = _dataset(tmp, {"ok": _ok(), "gone": None})
    _model(tmp / "run" / "model")
    return ["predict", "--manifest", str(manifest), "--out", str(tmp / "run"), "--device", "cpu"]


def _model_fails_fast(tmp: Path) -> Sequence[str]:
    # --model without --keep-going: the library's default, every file checked first
    _dataset(tmp, {"ok": _ok(), "gone": None})
    return _predict(tmp)


CATALOGUE = [
    BadInput(
        "predict_model_without_keep_going_fails_fast",
        _model_fails_fast,
        2,
        r"error: {tmp}/m.json has 1 problem:\n\s+test\[1\].image: .*gone.nii.gz",
    ),
    BadInput(
        "predict_output_folder_locked",
        _locked,
        2,
        r"error: {tmp}/out is in use by pid \d+ since 2026-03-01T10:00:00\+00:00 "
        r"\(medimg predict\); wait for it to finish or stop it, or choose another output folder",
    ),
    BadInput(
        "predict_model_folder_missing",
        lambda tmp: _predict(tmp, model=tmp / "no_model"),
        2,
        r"error: model folder must hold model.json, got none in {tmp}/no_model; train first",
    ),
    BadInput(
        "predict_checkpoint_replaced",
        _replaced_checkpoint,
        2,
        r"error: checkpoint {tmp}/model/best.pt has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}; "
        r"it was replaced or damaged",
    ),
    BadInput(
        "predict_output_is_a_file",
        _output_is_a_file,
        2,
        r"error: output folder {tmp}/out must be a folder, got a file; choose another --out",
    ),
    BadInput(
        "predict_missing_image_keep_going",
        _missing_image,
        1,
        r"error: 1 of 2 cases failed \(first: gone: ImageNotFoundError: "
        r"{tmp}/images/gone.nii.gz: no such file; fix the case's path in the manifest.*\); "
        r"every reason is in {tmp}/out/summary.json",
    ),
    BadInput(
        "predict_nan_image_keep_going",
        _nan_image,
        1,
        r"error: 1 of 2 cases failed \(first: nan: NonFiniteError: {tmp}/images/nan.nii.gz: "
        r"1 NaN and 0 infinite voxels",
    ),
    BadInput(
        "predict_missing_image_fail_fast",
        _fail_fast_missing_image,
        2,
        r"error: {tmp}/m.json has 1 problem:\n\s+test\[1\].image: .*gone.nii.gz",
    ),
    BadInput(
        "predict_mirror_axis_out_of_range",
        lambda tmp: _predict(tmp, "--mirror-axes", "3"),
        2,
        r"error: mirror_axes must be distinct spatial axes among 0, 1, 2, got \(3,\)",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.kind)
def test_catalogue_batch(
    entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_bad_input(entry, tmp_path, capsys)
    out = tmp_path / "out"
    if entry.code == 1:  # failed work: the good case is still predicted, the lock released
        assert (out / "ok.nii.gz").is_file()
        assert not (out / LOCK_NAME).exists()
