"""``medimg predict --ray local``: the same outputs as local predict, and a worker killed mid-run.

One Ray run (start-up costs seconds on 2 cores): a local cluster of two CPUs predicts six cases
while the test SIGKILLs the first worker process it sees running a case (its process title is
``ray::medimg_predict_case``; the first case of a worker is the slow one, as it loads torch,
MONAI and the model). Ray runs that case again in a new worker; the driver records each case
once. Then: every case ``written`` exactly once, none failed or pending, and every label map
byte-identical to the one local predict wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medimg.cli import main
from medimg.synthetic.datasets import write_ct_segmentation_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _case_workers() -> list[int]:
    """Pids of processes whose title says they run a case for Ray."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::medimg_predict_case"):
            pids.append(int(entry.name))
    return pids


def _kill_one_worker_while(proc: subprocess.Popen[str], timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        pids = _case_workers()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        time.sleep(0.05)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's workers through /proc")
def test_ray_predicts_like_local_and_survives_a_killed_worker(tmp_path: Path) -> None:
    manifest = write_ct_segmentation_dataset(tmp_path / "data", 7, seed=5)  # 6 training cases
    run = tmp_path / "run"
    assert main(["train", "--manifest", str(manifest), "--out", str(run), "--device", "cpu",
                 "--epochs", "1", "--features", "4", "--roi", "16", "16", "8",
                 "--no-augment"]) == 0  # fmt: skip
    common = ["predict", "--model", str(run), "--manifest", str(manifest), "--split", "training",
              "--device", "cpu"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    ray_out = tmp_path / "ray"
    proc = subprocess.Popen(
        [sys.executable, "-m", "medimg", *common, "--out", str(ray_out), "--ray", "local",
         "--ray-local-cpus", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = _kill_one_worker_while(proc, timeout_s=240)
    _out, err = proc.communicate(timeout=300)
    assert killed is not None, err[-3000:]
    assert proc.returncode == 0, err[-3000:]
    assert (
        not Path(f"/proc/{killed}").exists()
        or b"medimg" not in Path(f"/proc/{killed}/cmdline").read_bytes()
    )
    summary = json.loads((ray_out / "summary.json").read_text())
    ids = [c["case_id"] for c in summary["cases"]]
    assert len(ids) == len(set(ids)) == 6
    assert (summary["written"], summary["failed"], summary["pending"]) == (6, 0, 0)
    assert summary["finished"] is True
    recorded = [line for line in err.splitlines() if "written by a Ray worker" in line]
    assert len(recorded) == 6  # each case recorded once, the killed one included
    for case in ids:
        local = (tmp_path / "local" / f"{case}.nii.gz").read_bytes()
        assert (ray_out / f"{case}.nii.gz").read_bytes() == local, case
    assert not [p for p in ray_out.iterdir() if ".tmp" in p.name]
    local_keys = json.loads((tmp_path / "local" / "summary.json").read_text())["cases"]
    assert [c["resume_key"] for c in summary["cases"]] == [c["resume_key"] for c in local_keys]
