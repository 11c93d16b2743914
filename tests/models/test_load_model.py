"""Run folder, package and Python API predict the same, voxel for voxel, for every task.

``medimg predict --model RUN`` and ``--model PACKAGE`` write byte-identical outputs, resume
each other's (the resume key is the weights' digest), and ``load_model(...).predict(image)``
gives the same label map / probabilities / boxes, from a path or a Volume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medimg import load_model
from medimg.cli import main
from medimg.errors import InputContractError, OutputExistsError
from medimg.io import load_volume, save_volume

pytestmark = pytest.mark.slow  # three tasks, each predicted five ways (about 40 s here)


def _image(manifest: Path) -> Path:
    return manifest.parent / json.loads(manifest.read_text())["test"][0]["image"]


def _predict(model: Path, manifest: Path, out: Path, *extra: str) -> None:
    argv = ["predict", "--model", str(model), "--manifest", str(manifest), "--out", str(out)]
    assert main([*argv, "--device", "cpu", *extra]) == 0


def _summary(out: Path, name: str = "summary.json") -> dict[str, object]:
    summary: dict[str, object] = json.loads((out / name).read_text())
    return summary


def test_segmentation_is_the_same_from_run_package_and_api(
    runs: dict[str, Path], packages: dict[str, Path], datasets: dict[str, Path], tmp_path: Path
) -> None:
    manifest, image = datasets["segmentation"], _image(datasets["segmentation"])
    _predict(runs["segmentation"], manifest, tmp_path / "run")
    _predict(packages["segmentation"], manifest, tmp_path / "pkg")
    written = (tmp_path / "run" / "case_004.nii.gz").read_bytes()
    assert (tmp_path / "pkg" / "case_004.nii.gz").read_bytes() == written
    # the package reuses the run folder's outputs: the same weights, the same resume key
    _predict(packages["segmentation"], manifest, tmp_path / "run")
    assert _summary(tmp_path / "run")["skipped"] == 1

    calls: list[tuple[int, int]] = []
    model = load_model(packages["segmentation"], device="cpu")
    prediction = model.predict(image, progress=lambda done, total: calls.append((done, total)))
    assert prediction.labels_nifti == written  # the very bytes medimg predict writes
    assert calls
    assert calls[-1][0] == calls[-1][1]
    stored = load_volume(image)
    assert prediction.label_map is not None
    assert prediction.label_map.spatial_shape == stored.spatial_shape  # the stored grid
    np.testing.assert_allclose(prediction.label_map.affine, stored.affine, atol=1e-5)
    from_run = load_model(runs["segmentation"], device="cpu").predict(stored)  # a Volume
    assert from_run.labels_nifti == written
    labels = np.asarray(prediction.label_map.array)
    liver = prediction.findings["labels"]["liver"]
    # volume in mL: voxels times the stored grid's voxel volume (mm^3) / 1000
    voxel_ml = float(np.prod(stored.spacing_mm)) / 1000
    assert liver["voxels"] == int((labels == 1).sum())
    assert liver["volume_ml"] == pytest.approx(liver["voxels"] * voxel_ml, rel=1e-6)
    files = prediction.write(tmp_path / "api")
    assert files["labels"].read_bytes() == written
    assert json.loads(files["findings"].read_text()) == prediction.findings
    with pytest.raises(OutputExistsError):
        prediction.write(tmp_path / "api")


def test_classification_is_the_same_from_run_package_and_api(
    runs: dict[str, Path], packages: dict[str, Path], datasets: dict[str, Path], tmp_path: Path
) -> None:
    manifest, image = datasets["classification"], _image(datasets["classification"])
    _predict(runs["classification"], manifest, tmp_path / "run")
    _predict(packages["classification"], manifest, tmp_path / "pkg")
    table = (tmp_path / "run" / "test.csv").read_bytes()
    assert (tmp_path / "pkg" / "test.csv").read_bytes() == table
    (case,) = _summary(tmp_path / "run", "test.summary.json")["cases"]  # type: ignore[misc]
    for source in (runs["classification"], packages["classification"]):
        found = load_model(source, device="cpu").predict(image).findings
        assert list(found["probabilities"].values()) == case["result"]["probabilities"]
        assert found["predicted"] == case["result"]["predicted"]
        assert found["multi_label"] is False


def test_detection_is_the_same_from_run_package_and_api(
    runs: dict[str, Path], packages: dict[str, Path], datasets: dict[str, Path], tmp_path: Path
) -> None:
    manifest, image = datasets["detection"], _image(datasets["detection"])
    case_id = json.loads(manifest.read_text())["test"][0]["id"]
    _predict(runs["detection"], manifest, tmp_path / "run")
    _predict(packages["detection"], manifest, tmp_path / "pkg")
    doc = (tmp_path / "run" / f"{case_id}.json").read_bytes()
    assert (tmp_path / "pkg" / f"{case_id}.json").read_bytes() == doc
    found = load_model(packages["detection"], device="cpu").predict(image).findings
    assert found["boxes"] == json.loads(doc)["boxes"]
    assert found["stored_grid"] == json.loads(doc)["stored_grid"]


def test_describe_is_json_and_names_the_model(
    runs: dict[str, Path], packages: dict[str, Path]
) -> None:
    from medimg.packages import read_package

    package = load_model(packages["classification"], device="cpu")
    folder = load_model(runs["classification"], device="cpu")
    described = json.loads(json.dumps(package.describe()))
    assert described["task"] == "classification" == folder.task
    assert described["outputs"] == {"0": "normal", "1": "nodule"}
    assert described["sha256"] == read_package(packages["classification"]).sha256
    assert described["kind"] == "package"
    assert folder.describe()["kind"] == "folder"
    assert package.weights_sha256 == folder.weights_sha256  # the same weights, two files
    assert folder.contract["channels"] == 1
    assert folder.contract["spatial_dims"] == 3
    assert folder.card.startswith("# classification")
    assert "Input contract" in folder.card
    assert folder.name == "classification"  # the run folder's name


def test_signed_and_encrypted_packages_load_with_trust_and_passphrase(
    runs: dict[str, Path], datasets: dict[str, Path], tmp_path: Path
) -> None:
    from medimg.errors import PackagePassphraseError, PackageSignatureError
    from medimg.packages import generate_keypair, pack_model

    keys, other = generate_keypair(tmp_path / "alice"), generate_keypair(tmp_path / "bob")
    package = pack_model(runs["segmentation"], tmp_path / "s.medimg", sign_key=keys.private,
                         passphrase="correct horse")  # fmt: skip
    model = load_model(package, trust=[keys.public], passphrase="correct horse", device="cpu")
    assert model.describe()["encrypted"] is True
    with pytest.raises(PackageSignatureError, match="not in the trust store"):
        load_model(package, trust=[other.public], passphrase="correct horse")
    with pytest.raises(PackagePassphraseError):
        load_model(package, trust=[keys.public], passphrase="wrong")
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse\n")
    manifest = datasets["segmentation"]
    _predict(package, manifest, tmp_path / "out", "--trust", str(keys.public),
             "--passphrase-file", str(secret))  # fmt: skip
    assert "correct horse" not in (tmp_path / "out" / "run.json").read_text()


def test_an_image_outside_the_contract_is_refused(
    runs: dict[str, Path], packages: dict[str, Path], tmp_path: Path
) -> None:
    from medimg.errors import PackageError

    flat = save_volume(np.zeros((12, 10), np.float32), tmp_path / "xray.nii.gz",
                       like=np.diag([0.5, 0.5, 1.0, 1.0]))  # fmt: skip
    package = load_model(packages["segmentation"], device="cpu")
    with pytest.raises(PackageError, match=r"xray\.nii\.gz does not meet the input contract of "
                       r".*segmentation\.medimg \(member 'contract\.json' field 'spatial_dims': "
                       r"the model takes 3, got 2\)"):  # fmt: skip
        package.predict(flat)
    with pytest.raises(PackageError, match=r"field 'modality': the model takes CT, got MR"):
        package.predict(flat, modality="MR")
    folder = load_model(runs["segmentation"], device="cpu")
    with pytest.raises(InputContractError, match=r"model .*segmentation/model expects CT "
                       r"images, 1 channel, 3D; image .*xray\.nii\.gz is 2D \(shape 12 x 10\)"):  # fmt: skip
        folder.predict(flat)
