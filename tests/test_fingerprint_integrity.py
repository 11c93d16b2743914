"""The saved fingerprint is keyed by every input file's content, not the manifest's bytes only.

The issue's reproduction: multiply the images by 10 and add 5000 behind an unchanged manifest;
``medimg fingerprint`` said "reused (manifest unchanged)" (mean 112 instead of ~6123) and
training normalised with the stale statistics.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

import medimg.io.integrity as integrity
from medimg.cli import main
from medimg.fingerprint import (
    Fingerprint,
    compute_fingerprint,
    fingerprint_path,
    load_or_compute_fingerprint,
    update_fingerprint,
)
from medimg.io import save_volume
from medimg.synthetic import grid_affine

SHAPE = (6, 5, 4)
AFFINE = grid_affine(SHAPE, (1.0, 1.5, 2.5), axcodes="LPS")


def _dataset(root: Path) -> Path:
    """Two cases; image voxels 0..119 (+ k), foreground the 8 voxels [1:3, 1:3, 1:3]."""
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for k in range(2):
        image = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) + k
        label = np.zeros(SHAPE, np.uint8)
        label[1:3, 1:3, 1:3] = 1
        save_volume(image[None], root / f"i{k}.nii.gz", like=AFFINE)
        save_volume(label[None], root / f"l{k}.nii.gz", like=AFFINE)
        cases.append({"id": f"c{k}", "image": f"i{k}.nii.gz", "label": f"l{k}.nii.gz"})
    record = {
        "schema_version": 1,
        "name": "tiny",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": 0, "name": "bg"}, {"value": 1, "name": "box"}],
        "training": cases,
    }
    path = root / "m.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def _rewrite(path: Path, scale: float, offset: float, *, keep_mtime: bool) -> None:
    st = path.stat()
    img: Any = nib.load(path)
    array = np.asarray(img.dataobj, dtype=np.float32) * scale + offset
    nib.save(nib.Nifti1Image(array, img.affine, img.header), path)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def counted_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    hashed: list[str] = []
    real = integrity.sha256_file

    def counting(path: object) -> str:
        hashed.append(Path(str(path)).name)
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(integrity, "sha256_file", counting)
    return hashed


def test_rescaled_images_behind_an_unchanged_manifest_are_recomputed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    manifest = _dataset(tmp_path)
    first = load_or_compute_fingerprint(manifest)
    # foreground voxels of case 0: flat indices x*20 + y*4 + z for x, y, z in {1, 2}:
    # 25, 26, 29, 30, 45, 46, 49, 50 (mean 37.5); case 1 adds 1: mean over both 38.0
    assert first.intensity[0].mean == pytest.approx(38.0)
    assert [(i.case_id, i.role) for i in first.inputs] == [
        ("c0", "image"),
        ("c0", "label"),
        ("c1", "image"),
        ("c1", "label"),
    ]
    for k in range(2):
        _rewrite(tmp_path / f"i{k}.nii.gz", 10.0, 5000.0, keep_mtime=True)
    with caplog.at_level(logging.INFO, logger="medimg.fingerprint"):
        assert main(["fingerprint", str(manifest)]) == 0
    out = capsys.readouterr().out
    last = out.splitlines()[-1]
    assert last.startswith("  recomputed       case c0 image (")
    assert "i0.nii.gz) changed: " in last
    assert last.endswith("(and 1 more)")
    assert "i1.nii.gz) changed" in caplog.text  # the log names every changed file
    saved = Fingerprint.from_json(fingerprint_path(manifest).read_text())
    assert saved.intensity[0].mean == pytest.approx(38.0 * 10 + 5000)  # 5380
    # what training reads now: the new statistics
    assert load_or_compute_fingerprint(manifest).intensity[0].mean == pytest.approx(5380.0)


def test_same_size_rewrite_with_mtime_kept_names_the_hash(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path)
    load_or_compute_fingerprint(manifest)
    label = tmp_path / "l1.nii.gz"
    st = label.stat()
    data = bytearray(label.read_bytes())
    data[-1] ^= 0xFF  # same size: a different gzip trailer byte
    label.write_bytes(bytes(data))
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))
    saved = Fingerprint.from_json(fingerprint_path(manifest).read_text())
    from medimg._fingerprint_inputs import check_saved as _check_saved

    reused, reason = _check_saved(saved, manifest, 10_000_000, 0)
    assert reused is None
    assert reason.startswith("case c1 label (")
    assert "l1.nii.gz) changed: SHA-256 " in reason


def test_untouched_files_are_not_rehashed_and_a_touch_is_not_a_change(
    tmp_path: Path, counted_hashes: list[str]
) -> None:
    manifest = _dataset(tmp_path)
    first = load_or_compute_fingerprint(manifest)
    assert sorted(counted_hashes) == ["i0.nii.gz", "i1.nii.gz", "l0.nii.gz", "l1.nii.gz"]
    counted_hashes.clear()
    update = update_fingerprint(manifest)
    assert (update.reused, update.reason) == (True, "manifest and 4 input files unchanged")
    assert counted_hashes == []  # stat shortcut
    os.utime(tmp_path / "i0.nii.gz")  # touch: new mtime and ctime, same bytes
    update = update_fingerprint(manifest)
    assert update.reused
    assert update.fingerprint == first
    assert counted_hashes == ["i0.nii.gz"]  # hashed once, and the saved stat refreshed
    counted_hashes.clear()
    assert update_fingerprint(manifest).reused
    assert counted_hashes == []


def test_recompute_reasons(tmp_path: Path) -> None:
    manifest = _dataset(tmp_path)
    assert (
        update_fingerprint(manifest).reason
        == f"no saved fingerprint at {tmp_path / 'm.fingerprint.json'}"
    )
    assert update_fingerprint(manifest, force=True).reason == "recomputation forced (--force)"
    assert update_fingerprint(manifest, seed=1).reason == (
        "sampling settings changed (seed 0 -> 1, samples per case 5000000 -> 5000000)"
    )
    # a fingerprint saved before input identities were recorded (no "inputs" key) is redone
    record = json.loads(fingerprint_path(manifest).read_text())
    del record["inputs"]
    fingerprint_path(manifest).write_text(json.dumps(record))
    assert update_fingerprint(manifest, seed=1).reason == (
        "the saved fingerprint records no input file identities (older medimg)"
    )
    fingerprint_path(manifest).write_text("{")
    assert update_fingerprint(manifest, seed=1).reason.startswith(
        "the saved fingerprint is not readable ("
    )
    record = json.loads(manifest.read_text())
    record["name"] = "renamed"
    manifest.write_text(json.dumps(record))
    assert update_fingerprint(manifest, seed=1).reason == "the manifest changed"


def test_a_deleted_input_is_a_reason_and_then_the_readers_error(tmp_path: Path) -> None:
    from medimg._fingerprint_inputs import check_saved as _check_saved
    from medimg.errors import ImageNotFoundError

    manifest = _dataset(tmp_path)
    saved = load_or_compute_fingerprint(manifest)
    (tmp_path / "l0.nii.gz").unlink()
    reused, reason = _check_saved(saved, manifest, 10_000_000, 0)
    assert reused is None
    assert reason.startswith("an input file cannot be read (")
    with pytest.raises(ImageNotFoundError, match=r"l0.nii.gz: no such file"):
        compute_fingerprint(manifest)


def test_inputs_are_provenance_not_statistics(tmp_path: Path) -> None:
    from medimg.modality import Modality
    from medimg.transforms import PreprocessConfig
    from medimg.transforms.cache import chain_key

    manifest = _dataset(tmp_path)
    fp = load_or_compute_fingerprint(manifest)
    moved = Fingerprint.from_json(fp.to_json().replace(str(tmp_path), "/elsewhere"))
    assert moved == fp  # equality ignores where the files were
    cfg = PreprocessConfig(target_spacing_mm=(2.0, 2.0, 2.0))
    assert chain_key(Modality.CT, cfg, moved) == chain_key(Modality.CT, cfg, fp)
    assert "inputs" not in json.loads(fp.statistics_json())
    with pytest.raises(ValueError, match=r"inputs must hold case_id, role and identity records"):
        Fingerprint.from_json(json.dumps({**json.loads(fp.to_json()), "inputs": [{"x": 1}]}))


def _fingerprint_mean(manifest: str) -> float:
    return load_or_compute_fingerprint(manifest, force=True).intensity[0].mean


def test_concurrent_writers_leave_one_whole_fingerprint(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    manifest = _dataset(tmp_path)
    with ProcessPoolExecutor(2) as pool:
        means = list(pool.map(_fingerprint_mean, [str(manifest)] * 4))
    assert means == [pytest.approx(38.0)] * 4
    saved = Fingerprint.from_json(fingerprint_path(manifest).read_text())  # whole, parseable
    assert len(saved.inputs) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary
    assert update_fingerprint(manifest).reused
