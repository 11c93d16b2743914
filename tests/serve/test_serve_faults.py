"""Load and faults: concurrent clients, a worker killed mid-job, the server killed with -9."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import Served, create_token, wait_done

from medimg.io import load_volume


def _same_as_cli(client: httpx.Client, job_id: str, expected: Path, tmp: Path) -> None:
    answer = client.get(f"/v1/jobs/{job_id}/result")
    assert answer.status_code == 200, answer.text
    path = tmp / f"{job_id}.nii.gz"
    path.write_bytes(answer.content)
    np.testing.assert_array_equal(load_volume(path).array, load_volume(expected).array)


@pytest.mark.slow
def test_fifty_jobs_from_eight_clients(
    served: Served, case_images: list[Path], cli_labels: dict[str, Path], tmp_path: Path
) -> None:
    bodies = [(image, image.read_bytes()) for image in case_images]

    def client_run(index: int) -> list[tuple[Path, int, Any]]:
        outcomes = []
        with served.client() as client:
            for n in range(index, 50, 8):  # 50 jobs over 8 clients
                image, body = bodies[n % len(bodies)]
                answer = client.post("/v1/jobs", files={"file": ("scan", body)})
                outcomes.append((image, answer.status_code, answer))
        return outcomes

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for batch in pool.map(client_run, range(8)) for o in batch]
    assert len(outcomes) == 50
    statuses = [status for _, status, _ in outcomes]
    assert set(statuses) <= {202, 429}, statuses
    accepted = [(image, answer.json()["id"]) for image, status, answer in outcomes if status == 202]
    refused = [answer for _, status, answer in outcomes if status == 429]
    assert accepted  # the queue holds 8 and two workers drain it
    for answer in refused:
        assert int(answer.headers["retry-after"]) > 0
        assert "retry" in answer.json()["detail"]
    with served.client() as client:
        for image, job_id in accepted:  # none lost: every accepted job ends done
            job = wait_done(client, job_id)
            assert job["status"] == "done", job
            _same_as_cli(client, job_id, cli_labels[image.name.removesuffix(".nii.gz")], tmp_path)


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _worker_pids(server_pid: int) -> list[int]:
    pids = []
    for pid in _children(server_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:  # not the resource tracker
            pids.append(pid)
    return pids


def _wait_status(client: httpx.Client, job_id: str, status: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get(f"/v1/jobs/{job_id}").json()["status"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never became {status}")


@pytest.mark.slow
def test_worker_crash_and_kill_9_lose_no_job(
    make_server: Any,
    seg_model: Path,
    case_images: list[Path],
    cli_labels: dict[str, Path],
    tmp_path: Path,
) -> None:
    data = tmp_path / "serve"
    token = create_token(data)
    args = ["--model", str(seg_model), "--workers", "1"]
    server = make_server(*args, data=data).start()
    assert server.process is not None
    headers = {"Authorization": f"Bearer {token}"}
    image = case_images[2]
    expected = cli_labels[image.name.removesuffix(".nii.gz")]
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:

        def submit() -> str:
            answer = client.post("/v1/jobs", files={"file": ("scan", image.read_bytes())})
            assert answer.status_code == 202, answer.text
            job_id: str = answer.json()["id"]
            return job_id

        # a worker that dies (a crash, the OOM killer) fails its job only
        crashed = submit()
        _wait_status(client, crashed, "running")
        (worker,) = _worker_pids(server.process.pid)
        os.kill(worker, signal.SIGKILL)
        job = wait_done(client, crashed)
        assert job["status"] == "failed"
        assert "killed by SIGKILL" in job["error"]
        after = submit()  # a new worker takes the next job
        assert wait_done(client, after)["status"] == "done"

        # kill -9 of the server while a job runs and two wait
        jobs = [submit() for _ in range(3)]
        _wait_status(client, jobs[0], "running")
    server.kill()
    time.sleep(0.5)
    assert _worker_pids(server.process.pid) == []  # the workers died with the server
    restarted = make_server(*args, data=data).start()
    with httpx.Client(base_url=restarted.url, headers=headers, timeout=60) as client:
        for job_id in jobs:  # every accepted job ends done, or failed with a reason
            job = wait_done(client, job_id)
            assert job["status"] in ("done", "failed"), job
            if job["status"] == "failed":
                assert job["error"]
            else:
                _same_as_cli(client, job_id, expected, tmp_path)
        assert client.get(f"/v1/jobs/{jobs[0]}").json()["attempts"] == 2  # run again
        _same_as_cli(client, after, expected, tmp_path)  # results stay downloadable
