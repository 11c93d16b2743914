"""``medimg predict --backend onnxruntime``: the same windows, stitching and way back as torch.

Labels of whole volumes (on each image's stored grid) agree on >= 99.99% of voxels, class
probabilities within 1e-4; the ONNX file is a cache keyed by the checkpoint's SHA-256; options
onnxruntime cannot honour are refused by name.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medimg.cli import main
from medimg.io import load_volume


def _predict(run: Path, manifest: Path, out: Path, *extra: str) -> None:
    argv = ["predict", "--model", str(run), "--manifest", str(manifest), "--out", str(out)]
    assert main([*argv, "--device", "cpu", *extra]) == 0


@pytest.mark.slow  # trains a DynUNet (shared with the other tests), predicts twice
def test_segmentation_labels_match_torch(seg_run: Path, ct_dataset: Path, tmp_path: Path) -> None:
    _predict(seg_run, ct_dataset, tmp_path / "torch", "--mirror-axes", "0")
    _predict(
        seg_run, ct_dataset, tmp_path / "ort", "--mirror-axes", "0", "--backend", "onnxruntime"
    )
    cached = list((seg_run / "model").glob("network-*.onnx"))
    record = json.loads((seg_run / "model" / "model.json").read_text())
    assert [p.name for p in cached] == [f"network-{record['checkpoint_sha256']}.onnx"]
    outputs = sorted((tmp_path / "torch").glob("*.nii.gz"))
    assert outputs
    for path in outputs:
        ref, got = load_volume(path), load_volume(tmp_path / "ort" / path.name)
        assert ref.source.same_grid(got.source)  # the image's stored grid, both
        agree = float(np.mean(np.asarray(ref.array) == np.asarray(got.array)))
        assert agree >= 0.9999, f"{path.name}: {agree:.6f} of the voxels agree"
    summary = json.loads((tmp_path / "ort" / "summary.json").read_text())
    assert summary["cases"]
    assert all(c["resume_key"]["settings"]["backend"] == "onnxruntime" for c in summary["cases"])
    torch_summary = json.loads((tmp_path / "torch" / "summary.json").read_text())
    assert "backend" not in torch_summary["cases"][0]["resume_key"]["settings"]


@pytest.mark.slow  # trains a ResNet, predicts twice
def test_classification_probabilities_match_torch(
    cls_run: Path, xray_dataset: Path, tmp_path: Path
) -> None:
    _predict(cls_run, xray_dataset, tmp_path / "torch")
    _predict(cls_run, xray_dataset, tmp_path / "ort", "--backend", "onnxruntime")

    def rows(folder: Path) -> list[dict[str, str]]:
        with (folder / "test.csv").open() as f:
            return list(csv.DictReader(f))

    ref, got = rows(tmp_path / "torch"), rows(tmp_path / "ort")
    assert [r["case_id"] for r in ref] == [r["case_id"] for r in got]
    assert [r["predicted"] for r in ref] == [r["predicted"] for r in got]
    for a, b in zip(ref, got, strict=True):
        for k in ("p_normal", "p_nodule"):
            assert abs(float(a[k]) - float(b[k])) < 1e-4


@pytest.mark.slow
def test_damaged_cache_is_exported_again(
    seg_run: Path, ct_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(seg_run, run)
    for old in (run / "model").glob("network-*.onnx"):
        old.unlink()
    _predict(run, ct_dataset, tmp_path / "a", "--backend", "onnxruntime")
    (cache,) = (run / "model").glob("network-*.onnx")
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated behind medimg's back
    _predict(run, ct_dataset, tmp_path / "b", "--backend", "onnxruntime")
    assert "exporting the ONNX network again" in caplog.text
    assert cache.stat().st_size > 1000


@pytest.mark.slow  # needs the trained seg_run fixture
def test_precision_onnxruntime_cannot_honour_is_refused(
    seg_run: Path, ct_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", "--model", str(seg_run), "--manifest", str(ct_dataset), "--out",
            str(tmp_path / "p"), "--backend", "onnxruntime", "--precision", "bfloat16"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "precision 'bfloat16' cannot be honoured by backend 'onnxruntime'" in err


@pytest.mark.parametrize("encrypt", [False, True])
def test_package_network_onnx_is_used_and_nothing_cached(
    encrypt: bool, make_untrained_run: Callable[..., Path], ct_dataset: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # a package made with --onnx runs its own (verified) network.onnx; an encrypted one
    # without it is exported in memory: no file beside a package holds its weights
    from medimg.packages import pack_model

    run = make_untrained_run(tmp_path / "run", target_spacing_mm=(4.0, 4.5, 6.5))  # the data's
    passphrase = "correct horse" if encrypt else None
    package = pack_model(run, tmp_path / "pkg" / "m.medimg", onnx=not encrypt,
                         passphrase=passphrase)  # fmt: skip
    extra = ["--split", "training"]
    if encrypt:
        (tmp_path / "pass.txt").write_text(passphrase + "\n")
        extra += ["--passphrase-file", str(tmp_path / "pass.txt")]
    caplog.set_level("INFO", logger="medimg.tasks._backend")
    _predict(package, ct_dataset, tmp_path / "out", "--backend", "onnxruntime", *extra)
    assert sorted(p.name for p in package.parent.iterdir()) == ["m.medimg"]
    assert ("running its network.onnx" in caplog.text) is not encrypt
