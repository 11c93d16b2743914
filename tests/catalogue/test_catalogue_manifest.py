"""Bad-input catalogue: manifests, through ``medimg validate`` (and ``medimg fingerprint``).

Every entry writes a tiny dataset (12 x 10 x 8 voxels at 1 x 1 x 2.5 mm) plus one fault, and
pins the exit code (2: user error) and the message: the manifest named, the field path, what
is wrong and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from catalogue_helpers import BadInput, check_bad_input

from medimg.io import save_volume

SHAPE = (12, 10, 8)
AFFINE = np.diag([1.0, 1.0, 2.5, 1.0])


def _dataset(tmp: Path) -> dict[str, Any]:
    image = np.zeros(SHAPE, np.int16)
    image[2:5, 3:6, 1:4] = 100
    save_volume(image[None], tmp / "images" / "a.nii.gz", like=AFFINE)
    save_volume((image > 0).astype(np.uint8)[None], tmp / "labels" / "a.nii.gz", like=AFFINE)
    return {
        "schema_version": 1,
        "name": "tiny",
        "channels": [{"name": "CT", "modality": "CT"}],
        "labels": [{"value": 0, "name": "background"}, {"value": 1, "name": "box"}],
        "training": [{"id": "a", "image": "images/a.nii.gz", "label": "labels/a.nii.gz"}],
    }


def _write(tmp: Path, record: dict[str, Any] | bytes, command: str = "validate") -> list[str]:
    path = tmp / "dataset.json"
    path.write_bytes(record if isinstance(record, bytes) else json.dumps(record).encode())
    return [command, str(path)]


def _edited(edit: Callable[[Path, dict[str, Any]], None], command: str = "validate") -> Any:
    def make(tmp: Path) -> Sequence[str]:
        record = _dataset(tmp)
        edit(tmp, record)
        return _write(tmp, record, command)

    return make


def _raw(content: bytes) -> Any:
    return lambda tmp: _write(tmp, content)


def _image(tmp: Path, record: dict[str, Any], rel: str) -> None:
    record["training"][0]["image"] = rel
    record["training"][0].pop("label")
    record.pop("labels")


def _sheared(tmp: Path, record: dict[str, Any]) -> None:
    affine = AFFINE.copy()
    affine[0, 1] = 0.2
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), affine), tmp / "sh.nii.gz")
    _image(tmp, record, "sh.nii.gz")


def _nan(tmp: Path, record: dict[str, Any]) -> None:
    data = np.zeros(SHAPE, np.float32)
    data[1, 2, 3] = np.nan
    save_volume(data[None], tmp / "nan.nii.gz", like=AFFINE)
    _image(tmp, record, "nan.nii.gz")


def _corrupt_gzip(tmp: Path, record: dict[str, Any]) -> None:
    data = np.random.default_rng(0).integers(-1000, 1000, SHAPE).astype(np.int16)
    save_volume(data[None], tmp / "crc.nii.gz", like=AFFINE)
    raw = bytearray((tmp / "crc.nii.gz").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (tmp / "crc.nii.gz").write_bytes(bytes(raw))
    _image(tmp, record, "crc.nii.gz")


def _link_outside(tmp: Path, record: dict[str, Any]) -> None:
    outside = tmp.parent / f"{tmp.name}_outside"
    outside.mkdir()
    save_volume(np.zeros((1, *SHAPE), np.int16), outside / "z.nii.gz", like=AFFINE)
    os.symlink(outside / "z.nii.gz", tmp / "images" / "z.nii.gz")
    record["training"][0]["image"] = "images/z.nii.gz"


def _dicom_folder(tmp: Path, record: dict[str, Any]) -> None:
    (tmp / "series").mkdir()
    record["training"][0]["image"] = "series"


def _two_d(tmp: Path, record: dict[str, Any]) -> None:
    nib.save(nib.Nifti1Image(np.zeros((12, 10), np.int16), np.eye(4)), tmp / "flat.nii")
    _image(tmp, record, "flat.nii")


def _set(key: str, value: Any) -> Callable[[Path, dict[str, Any]], None]:
    def edit(tmp: Path, record: dict[str, Any]) -> None:
        record[key] = value

    return edit


def _label_value_string(tmp: Path, record: dict[str, Any]) -> None:
    record["labels"][1]["value"] = "1"


def _nul_path(tmp: Path, record: dict[str, Any]) -> None:
    record["training"][0]["label"] = "labels/a\x00.nii.gz"


def _many(tmp: Path, record: dict[str, Any]) -> None:
    record["training"][0]["image"] = "images/missing.nii.gz"
    record["training"].append({"id": "b", "image": "images/a.nii.gz", "label": "gone.nii.gz"})


def _folder(tmp: Path) -> Sequence[str]:
    return ["validate", str(tmp)]


M = r"{tmp}/dataset\.json has \d+ problems?:\n  "

CATALOGUE = [
    BadInput("manifest-json-list", _raw(b"[1, 2]"), 2, M + r"\(file\): must hold a JSON object "),
    BadInput("manifest-json-number", _raw(b"42"), 2, M + r"\(file\): must hold a JSON object"),
    BadInput(
        "manifest-invalid-json",
        _raw(b'{"name": "a",'),
        2,
        M + r"\(file\): not valid JSON: Expecting property name .* at line 1 column 14",
    ),
    BadInput("manifest-empty-file", _raw(b""), 2, M + r"\(file\): is empty; a manifest is a JSON"),
    BadInput(
        "manifest-not-utf8",
        _raw(b'{"name": "\xff"}'),
        2,
        M + r"\(file\): cannot be read as UTF-8 text: byte 0xff at offset 10 .*save the file as",
    ),
    BadInput(
        "manifest-nan-literal",
        _edited(_set("description", float("nan"))),
        2,
        M + r"description: NaN is not a JSON number .*write a finite number or null",
    ),
    BadInput(
        "manifest-huge-number",
        _raw(b'{"schema_version": ' + b"9" * 5000 + b"}"),
        2,
        M + r"\(file\): not valid JSON for medimg: Exceeds the limit \(4300 digits\).*smaller",
    ),
    BadInput(
        "manifest-duplicate-key",
        _raw(b'{"schema_version": 1, "name": "a", "name": "b"}'),
        2,
        M + r"name: key 'name' is given more than once in one object; keep one",
    ),
    BadInput(
        "manifest-deep-nesting",
        _raw(b"[" * 100000 + b"]" * 100000),
        2,
        M + r"\(file\): JSON nested too deeply to read",
    ),
    BadInput(
        "manifest-is-a-folder",
        _folder,
        2,
        r"error: {tmp} has 1 problem:\n  \(file\): is a folder, not a manifest file",
    ),
    BadInput(
        "manifest-label-value-string",
        _edited(_label_value_string),
        2,
        M + r"labels\[1\]\.value: must be a JSON integer, got str '1'; write 1 without quotes",
    ),
    BadInput(
        "manifest-path-nul-byte",
        _edited(_nul_path),
        2,
        M + r"training\[0\]\.label: 'labels/a\\x00\.nii\.gz' holds the control character",
    ),
    BadInput(
        "manifest-absolute-path",
        _edited(lambda tmp, r: r["training"][0].update(image="/etc/hostname")),
        2,
        M + r"training\[0\]\.image: '/etc/hostname' is outside the manifest's folder .*"
        r"\"allow_paths_outside_root\": true",
    ),
    BadInput(
        "manifest-dotdot-path",
        _edited(lambda tmp, r: r["training"][0].update(label="../a.nii.gz")),
        2,
        M + r"training\[0\]\.label: '\.\./a\.nii\.gz' is outside the manifest's folder",
    ),
    BadInput(
        "manifest-symlink-outside-root",
        _edited(_link_outside),
        2,
        M + r"training\[0\]\.image: 'images/z\.nii\.gz' leads outside the manifest's folder "
        r"through the link {tmp}/images/z\.nii\.gz -> {tmp}_outside/z\.nii\.gz",
    ),
    BadInput(
        "manifest-empty-folder-image",
        _edited(_dicom_folder),
        2,
        M + r"training\[0\]\.image: cannot read series: {tmp}/series: holds no DICOM image "
        r"\(0 files left out\); point to the folder that holds the series' \.dcm files",
    ),
    BadInput(
        "manifest-sheared-image",
        _edited(_sheared),
        2,
        M + r"training\[0\]\.image: sh\.nii\.gz has a sheared affine: voxel axes deviate "
        r"11\.310 degrees from orthogonal, which training refuses; resample it",
    ),
    BadInput(
        "manifest-nan-voxels",
        _edited(_nan),
        2,
        M + r"training\[0\]\.image: nan\.nii\.gz: 1 NaN and 0 infinite voxels \(first at voxel "
        r"\(1, 2, 3\)\)",
    ),
    BadInput(
        "manifest-corrupt-gzip-image",
        _edited(_corrupt_gzip),
        2,
        M + r"training\[0\]\.image: crc\.nii\.gz: corrupt gzip stream: CRC check failed.*"
        r"the file is damaged",
    ),
    BadInput(
        "manifest-2d-image-for-ct",
        _edited(_two_d),
        2,
        M + r"training\[0\]\.image: is 2D \(shape \(12, 10\)\) but CT images are 3D; fix",
    ),
    BadInput(
        "manifest-every-problem-listed",
        _edited(_many),
        2,
        M + r"training\[0\]\.image: file not found: images/missing\.nii\.gz .*\n"
        r"  training\[1\]\.label: file not found: gone\.nii\.gz",
    ),
    BadInput(
        "manifest-string-opt-in",
        _edited(_set("allow_paths_outside_root", "yes")),
        2,
        M + r"allow_paths_outside_root: must be true or false \(JSON booleans\), got 'yes'",
    ),
    BadInput(
        "fingerprint-manifest-label-value-string",
        _edited(_label_value_string, command="fingerprint"),
        2,
        M + r"labels\[1\]\.value: must be a JSON integer, got str '1'",
    ),
    BadInput(
        "fingerprint-manifest-duplicate-key",
        lambda tmp: _write(tmp, b'{"schema_version": 1, "schema_version": 1}', "fingerprint"),
        2,
        M + r"schema_version: key 'schema_version' is given more than once",
    ),
]


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e.kind for e in CATALOGUE])
def test_bad_manifest(entry: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_bad_input(entry, tmp_path, capsys)
