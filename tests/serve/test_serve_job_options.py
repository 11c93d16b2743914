"""Per-job prediction options (form fields of POST /v1/jobs) on the shared server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, ROOT, Served, wait_done

from medimg.io import load_volume


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"sw_overlap": "1.5"}, 422, r"form field 'sw_overlap': sw_overlap must be in \[0, 1\)"),
        ({"sw_overlap": "half"}, 422, r"form field 'sw_overlap' must be a number in \[0, 1\)"),
        ({"sw_overlap": "nan"}, 422, r"form field 'sw_overlap' must be a number"),
        ({"mirror_axes": "0 5"}, 422, r"form field 'mirror_axes': mirror_axes must be distinct"),
        ({"mirror_axes": "x"}, 422, r"form field 'mirror_axes' must be spatial axes among"),
        (
            {"threshold": "0.5"},
            422,
            r"form field 'threshold' is no per-job option of a "
            r"segmentation model; it takes sw_overlap, mirror_axes, seg_type, precision",
        ),
        (
            {"seg_type": "tiled"},
            422,
            r"form field 'seg_type': seg_type must be binary or labelmap, got 'tiled'",
        ),
        (
            {"seg_type": "labelmap"},
            422,
            r"form field 'seg_type' sets the DICOM SEG of a zip of one DICOM series; this "
            r"upload is a nifti-gz file",
        ),
        (
            {"precision": "bfloat16"},
            422,
            r"form field 'precision' must be one this service "
            r"allows per job: float32; got 'bfloat16'.*--job-precision",
        ),
    ],
    ids=[
        "overlap range",
        "overlap text",
        "overlap nan",
        "axis 5",
        "axes text",
        "threshold",
        "seg type",
        "seg type of a file",
        "precision",
    ],
)
def test_bad_option_is_refused_naming_the_field(
    served: Served, case_images: list[Path], fields: dict[str, str], status: int, detail: str
) -> None:
    import re

    with served.client() as client:
        files = {"file": ("scan", case_images[0].read_bytes())}
        answer = client.post("/v1/jobs", files=files, data=fields)
        assert answer.status_code == status, answer.text
        assert re.search(detail, answer.json()["detail"]), answer.json()["detail"]
        assert client.get("/healthz").status_code == 200


def _start_cli(
    dataset: Path, image: Path, model: Path, out: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `medimg predict` of the dataset's case of `image` with `extra` options."""
    record = json.loads(dataset.read_text())
    cases = record["training"] + record.pop("test")
    (case,) = [c for c in cases if Path(c["image"]).name == image.name]
    record["training"], record["test"] = [c for c in cases if c is not case], [case]
    manifest = dataset.parent / "options_case.json"  # image paths are relative to it
    manifest.write_text(json.dumps(record))
    command = [sys.executable, "-m", "medimg", "predict", "--model", str(model), "--manifest",
               str(manifest), "--out", str(out), "--device", "cpu", "--split", "test",
               *extra]  # fmt: skip
    process = subprocess.Popen(command, env=ENV, cwd=ROOT, stderr=subprocess.PIPE)
    return process, out / f"{case['id']}.nii.gz"


@pytest.mark.slow
def test_job_options_give_the_command_lines_result(
    served: Served, seg_dataset: Path, seg_model: Path, case_images: list[Path],
    cli_labels: dict[str, Path], tmp_path: Path,
) -> None:  # fmt: skip
    import torch

    from medimg.tasks import SegmentationPredictOptions, load_model

    image = case_images[1]
    # `medimg predict --mirror-axes 0 2 --precision float32` runs beside the service's jobs
    extra = ("--mirror-axes", "0", "2", "--precision", "float32")
    cli, out = _start_cli(seg_dataset, image, seg_model, tmp_path / "cli", *extra)
    with served.client() as client:
        ids = {}
        for name, fields in [("mirror", {"mirror_axes": "0,2", "precision": "float32"}), ("overlap", {"sw_overlap": "0"}),
                             ("plain", {"sw_overlap": "", "mirror_axes": ""})]:  # fmt: skip
            answer = client.post("/v1/jobs", files={"file": ("scan", image.read_bytes())},
                                 data=fields)  # fmt: skip
            assert answer.status_code == 202, answer.text
            ids[name] = answer.json()["id"]
        jobs = {name: wait_done(client, job_id) for name, job_id in ids.items()}
        labels = {}
        for name, job in jobs.items():
            assert job["status"] == "done", job
            path = tmp_path / f"{name}.nii.gz"
            path.write_bytes(client.get(f"/v1/jobs/{job['id']}/result").content)
            labels[name] = load_volume(path).array
    assert jobs["mirror"]["options"] == {"mirror_axes": [0, 2], "precision": "float32"}
    assert jobs["overlap"]["options"] == {"sw_overlap": 0.0}
    assert jobs["plain"]["options"] == {"mirror_axes": []}  # empty axes: no mirroring
    # mirror axes and precision: what `medimg predict` writes with them, voxel for voxel
    _, stderr = cli.communicate(timeout=300)
    assert cli.returncode == 0, stderr.decode()
    expected = load_volume(out).array
    np.testing.assert_array_equal(labels["mirror"], expected)
    # no overlap: fewer windows than the model's stored overlap; load_model with it agrees
    assert 0 < jobs["overlap"]["progress"]["total"] < jobs["plain"]["progress"]["total"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1), so floats agree bit for bit
    try:
        model = load_model(seg_model, device="cpu",
                           options=SegmentationPredictOptions(sw_overlap=0.0))  # fmt: skip
        own = model.predict(image).label_map
    finally:
        torch.set_num_threads(threads)
    assert own is not None
    np.testing.assert_array_equal(labels["overlap"], own.array)
    # the model's stored overlap with no mirroring: the plain command line's result
    plain = load_volume(cli_labels[image.name.removesuffix(".nii.gz")]).array
    np.testing.assert_array_equal(labels["plain"], plain)
