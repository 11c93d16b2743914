"""The API against a real ``medimg serve`` (uvicorn on 127.0.0.1, the shared server)."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import Served, wait_done

from medimg.io import load_volume


def test_health_docs_and_headers(served: Served) -> None:
    with served.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "ready"
        spec = client.get("/openapi.json").json()
        assert {"/v1/models", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"} <= set(
            spec["paths"]
        )
        upload = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
        assert "file" in upload["multipart/form-data"]["schema"]["properties"]
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert "http" not in docs.text.replace("http-equiv", "")  # no CDN: local assets only
        assert client.get("/static/swagger-ui-bundle.js").status_code == 200
        page = client.get("/", headers={"Origin": "http://evil.example"})
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert "access-control-allow-origin" not in page.headers  # CORS off by default
        metrics = client.get("/metrics").text
        assert 'medimg_jobs{status="done"}' in metrics


def test_models_listing(served: Served) -> None:
    (model,) = httpx.get(f"{served.server.url}/v1/models", headers=served.auth).json()["models"]
    assert model["task"] == "segmentation"
    assert model["outputs"] == {"1": "liver", "2": "spleen", "3": "lesion"}
    assert model["contract"]["channels"] == 1
    assert "liver" in model["card"]  # the model card (Markdown)
    assert "source" not in model  # the operator's paths stay on the server


def test_job_lifecycle_matches_the_command_line(
    served: Served, case_images: list[Path], cli_labels: dict[str, Path], tmp_path: Path
) -> None:
    image = case_images[1]  # an oblique, anisotropic phantom
    with served.client() as client:
        answer = client.post("/v1/jobs", files={"file": ("scan.bin", image.read_bytes())})
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["status"] == "queued"
        assert len(job["id"]) == 32
        assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
        waited = time.monotonic()  # a long poll: one request, answered when the job ends
        done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 60}, timeout=90).json()
        assert done["status"] == "done", done
        assert time.monotonic() - waited < 60
        assert done["progress"]["done"] == done["progress"]["total"] > 0
        assert done["timings"]["run_s"] > 0
        result = client.get(f"/v1/jobs/{job['id']}/result")  # no format: the NIfTI label map
        assert result.status_code == 200
        assert result.headers["content-type"] == "application/gzip"
        (tmp_path / "labels.nii.gz").write_bytes(result.content)
        labels = load_volume(tmp_path / "labels.nii.gz")
        expected = load_volume(cli_labels[image.name.removesuffix(".nii.gz")])
        np.testing.assert_array_equal(labels.array, expected.array)
        np.testing.assert_allclose(labels.affine, expected.affine, atol=1e-6)
        findings = client.get(f"/v1/jobs/{job['id']}/result", params={"format": "json"}).json()
        liver = findings["findings"]["labels"]["liver"]
        spacing = np.prod(expected.spacing_mm)  # mL = voxels x voxel volume (mm^3) / 1000
        assert liver["volume_ml"] == pytest.approx(liver["voxels"] * spacing / 1000, rel=1e-5)
        for format in ("seg", "sr"):  # a NIfTI upload has no DICOM series to refer to
            refused = client.get(f"/v1/jobs/{job['id']}/result", params={"format": format})
            assert refused.status_code == 409
            assert "not a DICOM series" in refused.json()["detail"]
        same = client.get(f"/v1/jobs/{job['id']}/image")  # a NIfTI upload: the file sent
        assert same.content == image.read_bytes()
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        gone = client.get(f"/v1/jobs/{job['id']}")
        assert gone.status_code == 404
        assert "no job" in gone.json()["detail"]
        assert not (served.server.data / "jobs" / job["id"]).exists()


def test_result_before_done_and_unknown_format(served: Served) -> None:
    with served.client() as client:
        missing = client.get("/v1/jobs/0123/result")
        assert missing.status_code == 404
        bad = client.get("/v1/jobs/0123/result", params={"format": "png"})
        assert bad.status_code == 422
        for wait in ("61", "-1", "soon"):  # the long poll's limit is 60 s
            too_long = client.get("/v1/jobs/0123", params={"wait": wait})
            assert too_long.status_code == 422, wait
            assert "wait" in too_long.text
        no_file = client.post("/v1/jobs", data={"model": "x"})
        assert no_file.status_code in (400, 422)
        assert "detail" in no_file.json()
        wrong_model = client.post("/v1/jobs", files={"file": ("a", b"x")}, data={"model": "no"})
        assert wrong_model.status_code == 422
        assert "must be one of" in wrong_model.json()["detail"]


def test_dicom_zip_job(served: Served, case_images: list[Path], tmp_path: Path) -> None:
    import pydicom

    from medimg.io import read_image, read_image_header
    from medimg.synthetic.dicom import write_dicom_series

    case = load_volume(case_images[3])  # oblique, anisotropic
    series = tmp_path / "series"
    write_dicom_series(np.rint(case.array[0]), case.affine, series)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(series.iterdir()):
            z.write(path, f"study/series 1/{path.name}")  # folders inside are fine
    with served.client() as client:
        answer = client.post("/v1/jobs", files={"file": ("x.zip", archive.getvalue())})
        assert answer.status_code == 202, answer.text
        labelmap = client.post(  # a job's own SEG type
            "/v1/jobs", files={"file": ("x.zip", archive.getvalue())}, data={"seg_type": "labelmap"}
        )
        assert labelmap.status_code == 202, labelmap.text
        as_labelmap = wait_done(client, labelmap.json()["id"])
        assert as_labelmap["status"] == "done", as_labelmap["error"]
        seg_bytes = client.get(f"/v1/jobs/{as_labelmap['id']}/result", params={"format": "seg"})
        (tmp_path / "labelmap.dcm").write_bytes(seg_bytes.content)
        job = wait_done(client, answer.json()["id"])
        assert job["status"] == "done", job["error"]
        assert job["input_kind"] == "dicom"
        assert {"labels", "image", "seg", "sr"} <= set(job["results"])
        for name, params in [("labels.nii.gz", {}), ("seg.dcm", {"format": "seg"}),
                             ("sr.dcm", {"format": "sr"})]:  # fmt: skip
            answer = client.get(f"/v1/jobs/{job['id']}/result", params=params)
            assert answer.status_code == 200, answer.text
            (tmp_path / name).write_bytes(answer.content)
        assert answer.headers["content-type"] == "application/dicom"
        image = client.get(f"/v1/jobs/{job['id']}/image")
        assert image.status_code == 200, image.text
        (tmp_path / "image.nii.gz").write_bytes(image.content)
    labels = load_volume(tmp_path / "labels.nii.gz")
    grid = read_image_header(series)  # the label map lies on the series' grid
    assert labels.spatial_shape == grid.shape
    np.testing.assert_allclose(labels.affine, grid.affine, atol=1e-4)
    # the SEG refers to the uploaded series and reads back as the NIfTI label map
    seg = load_volume(tmp_path / "seg.dcm")
    assert seg.spatial_shape == grid.shape
    np.testing.assert_allclose(seg.affine, grid.affine, atol=1e-4)
    np.testing.assert_array_equal(seg.array, labels.array)
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID
            for p in series.iterdir()}  # fmt: skip
    head = pydicom.dcmread(tmp_path / "seg.dcm", stop_before_pixels=True)
    assert head.Modality == "SEG"
    assert head.SegmentationType == "BINARY"
    labelmap_head = pydicom.dcmread(tmp_path / "labelmap.dcm", stop_before_pixels=True)
    assert labelmap_head.SegmentationType == "LABELMAP"
    np.testing.assert_array_equal(load_volume(tmp_path / "labelmap.dcm").array, labels.array)
    assert {s.SeriesInstanceUID for s in head.ReferencedSeriesSequence} == uids
    assert pydicom.dcmread(tmp_path / "sr.dcm").Modality == "SR"
    # the image the page shows under the labels: the series as medimg reads it, same grid
    shown, read = load_volume(tmp_path / "image.nii.gz"), read_image(series)
    assert shown.spatial_shape == labels.spatial_shape
    np.testing.assert_allclose(shown.affine, labels.affine, atol=1e-4)
    np.testing.assert_allclose(shown.array, read.array)


def test_metaimage_job_has_no_image_copy_or_seg(
    served: Served, case_images: list[Path], tmp_path: Path
) -> None:
    from medimg.io import read_image_header, save_volume

    case = load_volume(case_images[0])
    mha = save_volume(case.array, tmp_path / "scan.mha", like=case)
    with served.client() as client:
        answer = client.post("/v1/jobs", files={"file": ("upload", mha.read_bytes())})
        assert answer.status_code == 202, answer.text
        job = wait_done(client, answer.json()["id"])
        assert job["status"] == "done", job["error"]
        assert job["input_kind"] == "mha"
        assert set(job["results"]) == {"labels", "findings"}
        image = client.get(f"/v1/jobs/{job['id']}/image")
        assert image.status_code == 409
        assert "does not convert" in image.json()["detail"]
        seg = client.get(f"/v1/jobs/{job['id']}/result", params={"format": "seg"})
        assert seg.status_code == 409
        assert "was a mha file, not a DICOM series" in seg.json()["detail"]
        (tmp_path / "labels.nii.gz").write_bytes(client.get(f"/v1/jobs/{job['id']}/result").content)
    labels = load_volume(tmp_path / "labels.nii.gz")
    grid = read_image_header(mha)  # on the upload's grid
    assert labels.spatial_shape == grid.shape
    np.testing.assert_allclose(labels.affine, grid.affine, atol=1e-4)
