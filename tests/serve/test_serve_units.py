"""The service's parts in-process: store, tokens, upload checks, settings, expiry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg.errors import ConfigError
from medimg.serve import Job, JobStore, ServeSettings, TokenStore, UploadError
from medimg.serve.app import _sweeper
from medimg.serve.settings import is_loopback
from medimg.serve.store import AdmissionError
from medimg.serve.uploads import UploadLimits, check_upload, sniff


def _job(job_id: str, owner: str = "anonymous", created: float = 0.0) -> Job:
    return Job.queued(
        job_id, model="m", owner=owner, input="input.nii.gz", input_kind="nifti-gz",
        created=created or time.time(),
    )  # fmt: skip


def test_store_queue_claim_finish_and_limits(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    limits = {"max_queued": 2, "max_active_per_owner": 3, "retry_after_s": 7}
    store.submit(_job("a", created=1.0), **limits)
    store.submit(_job("b", created=2.0), **limits)
    with pytest.raises(AdmissionError, match=r"queue is full \(2 jobs waiting, at most 2\)"):
        store.submit(_job("c"), **limits)
    claimed = store.claim(worker_pid=123)
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.attempts) == ("a", "running", 1)  # oldest first
    store.submit(_job("c"), **limits)  # a place in the queue came free
    wider = {**limits, "max_queued": 5}
    with pytest.raises(AdmissionError, match=r"holds 3 unfinished jobs, at most 3") as info:
        store.submit(_job("d"), **wider)
    assert info.value.retry_after_s == 7
    assert store.progress("a", 2, 5)
    assert store.finish("a", {"labels": "result/labels.nii.gz"}, {"x": 1})
    done = store.get("a")
    assert done is not None
    assert done.to_json()["progress"] == {"done": 2, "total": 5}
    assert done.to_json()["findings"] == {"x": 1}
    assert store.counts() == {"queued": 2, "running": 0, "done": 1, "failed": 0}
    assert store.delete("b")
    assert not store.progress("b", 1, 1)  # a deleted job tells its worker to stop


def test_recover_reruns_then_fails(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.submit(_job("a"), max_queued=5, max_active_per_owner=5, retry_after_s=1)
    store.claim(worker_pid=1)
    assert store.recover(max_attempts=2) == (1, 0)  # first stop: queued again
    store.claim(worker_pid=2)
    assert store.recover(max_attempts=2) == (0, 1)  # second: failed with the reason
    job = store.get("a")
    assert job is not None
    assert job.status == "failed"
    assert "stopped while this job was running, 2 times" in (job.error or "")


def test_worker_death_fails_its_job_only(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    for name in ("a", "b"):
        store.submit(_job(name), max_queued=5, max_active_per_owner=5, retry_after_s=1)
    store.claim(worker_pid=10)
    assert store.fail_running_of(10, "killed") == ["a"]
    assert store.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 1}


def test_expired_results_are_deleted(tmp_path: Path) -> None:
    settings = ServeSettings(data_dir=tmp_path, result_ttl_s=0.05)
    store = JobStore(settings.db_path)
    store.submit(_job("old"), max_queued=5, max_active_per_owner=5, retry_after_s=1)
    store.claim(worker_pid=1)
    store.finish("old", {}, None)
    (settings.jobs_dir / "old").mkdir(parents=True)
    stop = threading.Event()
    thread = threading.Thread(target=_sweeper, args=(settings, store, stop))
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join()
    assert store.get("old") is None
    assert not (settings.jobs_dir / "old").exists()


def test_tokens(tmp_path: Path) -> None:
    tokens = TokenStore(JobStore(tmp_path / "jobs.sqlite3"))
    assert not tokens.active()
    info, token = tokens.create("ws1")
    assert token.startswith("mdg_")
    assert len(token) == 4 + 43  # 256 random bits, URL-safe
    assert tokens.active()
    assert tokens.check(token) == info.id
    assert tokens.check(token + "x") is None
    assert token not in (tmp_path / "jobs.sqlite3").read_bytes().decode("latin-1")  # hashed
    assert tokens.revoke(info.id).revoked is not None
    assert tokens.check(token) is None
    assert not tokens.active()
    with pytest.raises(ConfigError, match=r"token name must be 1 to 100 printable"):
        tokens.create("a\nb")


def test_content_decides_not_the_name(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.diag([1.0, 1.0, 2.5, 1.0]))
    raw = tmp_path / "scan.nii.gz"  # an uncompressed NIfTI under a .gz name
    nib.save(image, tmp_path / "x.nii")
    (tmp_path / "x.nii").rename(raw)
    assert sniff(raw) == "nifti"
    folder = tmp_path / "job"
    folder.mkdir()
    checked = check_upload(raw, folder, UploadLimits(2**20, 10))
    assert checked.path == folder / "input.nii"
    assert checked.shape == (6, 5, 4)
    tiny = tmp_path / "tiny.nii"
    nib.save(image, tiny)
    with pytest.raises(UploadError, match=r"claims a \(6, 5, 4\) volume of int16 \(240 bytes"):
        check_upload(tiny, folder, UploadLimits(100, 10))


def test_settings() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")
    with pytest.raises(ConfigError, match=r"serve setting workers is out of range, got 0"):
        ServeSettings(data_dir=Path("d"), workers=0)


def test_job_options_are_stored_and_an_old_store_gains_the_column(tmp_path: Path) -> None:
    import dataclasses
    import sqlite3

    from medimg.serve._options import job_options

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:  # a store made before per-job options
        db.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, owner TEXT NOT NULL, "
            "status TEXT NOT NULL, input TEXT NOT NULL, input_kind TEXT NOT NULL, "
            "created REAL NOT NULL, started REAL, finished REAL, done INTEGER NOT NULL "
            "DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
            "worker_pid INTEGER, error TEXT, result TEXT, findings TEXT)"
        )
        db.execute(
            "INSERT INTO jobs (id, model, owner, status, input, input_kind, created) "
            "VALUES ('old', 'm', 'anonymous', 'queued', 'input.nii', 'nifti', 1.0)"
        )
    db.close()
    store = JobStore(path)
    old = store.get("old")
    assert old is not None
    assert old.options is None
    assert old.to_json()["options"] == {}
    form = [
        ("file", "x"),
        ("sw_overlap", "0.25"),
        ("mirror_axes", "2 0"),
        ("precision", "bfloat16"),
    ]
    options = job_options("segmentation", form, precisions=("float32", "bfloat16"))
    assert options == {"sw_overlap": 0.25, "mirror_axes": [2, 0], "precision": "bfloat16"}
    limits = {"max_queued": 5, "max_active_per_owner": 5, "retry_after_s": 1}
    store.submit(dataclasses.replace(_job("new"), options=options), **limits)
    new = store.get("new")
    assert new is not None
    assert new.options == options
    assert JobStore(path).get("new") == new  # opening it again changes nothing
    detection = job_options("detection", [("min_score", "0.3")], precisions=())
    assert detection == {"min_score": 0.3}
    with pytest.raises(UploadError, match=r"form field 'min_score': min_score must be in \[0, 1\]"):
        job_options("detection", [("min_score", "2")], precisions=())
    with pytest.raises(UploadError, match=r"form field 'sw_overlap' is no per-job option of a "
                       r"classification model; it takes threshold, precision"):  # fmt: skip
        job_options("classification", [("sw_overlap", "0.1")], precisions=())


def test_unknown_job_precision_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"job_precisions \(--job-precision\) must be among"):
        ServeSettings(data_dir=tmp_path, job_precisions=("fp8",))


def test_every_vendor_file_the_page_serves_is_package_data() -> None:
    """A wheel built after ``npm ci`` carries the viewer's files, so a pip install serves them."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    from medimg.serve.app import _VENDOR

    root = Path(__file__).resolve().parents[2]
    with (root / "pyproject.toml").open("rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["medimg"]
    for path in _VENDOR.values():
        assert f"serve/web/node_modules/{path}" in data, path
