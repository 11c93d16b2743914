"""``medimg serve`` against ``medimg predict`` on the same CT cases: latency, throughput, overhead.

Both run the same model on the same ``--cases`` phantoms of ``--size``^3 voxels (1 mm, CT in
HU, int16 ``.nii.gz``), one worker / one process, ``--threads`` torch threads each. The model
is trained here for one epoch on the synthetic CT set (its weights do not change the timing),
or given with ``--model RUN``:

* default: ``medimg train``'s default network (DynUNet, 16 base features, ROI 96^3) at
  1.5 mm, so a 256^3 case is 171^3 voxels for the network, as for a real CT model;
* ``--tiny``: a 4-feature DynUNet at the synthetic set's 4-6.5 mm, under a second a case,
  which shows the service's fixed cost per job (upload, checks, queue, result) nearly alone.

* ``medimg predict``: one batch over a manifest of the cases; per-case seconds from its
  ``summary.json`` and the whole command's wall time (start-up included);
* ``medimg serve --workers 1``: each case uploaded and long-polled to done one after another
  (latency = submit to result downloaded, as a client sees it), then all submitted at once
  (throughput). Polling every 50 ms instead made the worker's runs 7 % slower than
  predict's on 2 cores: each answered poll takes CPU from the worker's two torch threads.

One extra case is run first on both sides and not counted (the first case of a process pays
for building the network and warming up torch). The two sides alternate for ``--rounds``
rounds on one running server, so the drift of a shared machine falls on both alike; the
throughput ratio is taken per round and its median printed.

The issue's target: the service's overhead per case at most 10 % of predict's per-case time
(p50 latency against predict's p50 case time). Default size 256 (the issue's 256^3); a quick
look: ``--size 96 --cases 3``.

Usage::

    python benchmarks/bench_serve.py [--size 256] [--cases 3] [--rounds 2] [--threads 2]
                                     [--model RUN] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="cube edge in voxels (default 256)")
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="predict/serve rounds, alternating")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", type=Path, default=None, help="a run folder (default: train one)")
    p.add_argument("--tiny", action="store_true", help="train a tiny model (fixed costs alone)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep files here (default: temp)")
    return p.parse_args()


def _train(work: Path, tiny: bool) -> Path:
    from medimg.synthetic.datasets import write_ct_segmentation_dataset
    from medimg.training import TrainConfig
    from medimg.transforms import PreprocessConfig
    from pipelines.segmentation import SegmentationConfig, train

    manifest = write_ct_segmentation_dataset(work / "train-data", 5, seed=0)
    size: dict[str, Any] = (
        {"base_features": 4, "roi_size_vox": (32, 32, 16)}
        if tiny
        else {"preprocess": PreprocessConfig(target_spacing_mm=(1.5, 1.5, 1.5))}
    )
    cfg = SegmentationConfig(
        manifest=manifest,
        out_dir=work / "run",
        network="dynunet",
        batch_size=2,
        samples_per_case=1,
        train=TrainConfig(max_epochs=1, learning_rate=1e-2, device="cpu"),
        **size,
    )
    train(cfg)
    return work / "run"


def _cases(work: Path, size: int, n: int) -> Path:
    """`n` CT phantoms of size^3 at 1 mm and a manifest listing them all in its training split."""
    from medimg.io import save_volume
    from medimg.synthetic.phantoms import ct_phantom

    folder = work / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(n):
        phantom = ct_phantom((size, size, size), (1.0, 1.0, 1.0), seed=i)
        path = folder / f"ct_{i:02d}.nii.gz"
        image = np.rint(phantom.image.array).astype(np.int16)
        save_volume(image, path, like=phantom.image.affine)
        cases.append({"id": path.name.removesuffix(".nii.gz"), "image": f"cases/{path.name}"})
    manifest = work / "bench_serve.json"
    manifest.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": "bench_serve",
                "channels": [{"name": "CT", "modality": "CT"}],
                "labels": [
                    {"value": 0, "name": "background"},
                    {"value": 1, "name": "liver"},
                    {"value": 2, "name": "spleen"},
                    {"value": 3, "name": "lesion"},
                ],
                "training": cases,
            }
        )
    )
    return manifest


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def _predict(model: Path, manifest: Path, out: Path, threads: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "medimg",
            "predict",
            "--model",
            str(model),
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--split",
            "training",
            "--device",
            "cpu",
        ],
        check=True,
        env=_env(threads),
        capture_output=True,
    )
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    return wall, [float(case["time_s"]) for case in summary["cases"]]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(model: Path, data: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medimg",
            "serve",
            "--model",
            str(model),
            "--data",
            str(data),
            "--port",
            str(port),
            "--workers",
            "1",
            "--max-decoded-mb",
            "4096",
            "--max-upload-mb",
            "2048",
        ],
        env=_env(threads),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("medimg serve did not become ready")


def _submit(client: httpx.Client, path: Path) -> str:
    answer = client.post("/v1/jobs", files={"file": (path.name, path.read_bytes())})
    answer.raise_for_status()
    return str(answer.json()["id"])


def _wait(client: httpx.Client, job_id: str) -> dict[str, object]:
    """Long-poll the job (``?wait=60``: one request, answered when it ends), then fetch it."""
    while True:
        job: dict[str, object] = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
        if job["status"] in ("done", "failed"):
            if job["status"] == "failed":
                raise SystemExit(f"job failed: {job['error']}")
            client.get(f"/v1/jobs/{job_id}/result").raise_for_status()
            return job


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _serve_round(
    client: httpx.Client, images: list[Path]
) -> tuple[list[float], list[float], float]:
    """Latency and worker run time per case (one after another), then all at once: wall."""
    latency, run_s = [], []
    for path in images:
        started = time.perf_counter()
        job = _wait(client, _submit(client, path))
        latency.append(time.perf_counter() - started)
        run_s.append(float(job["timings"]["run_s"]))  # type: ignore[index]
    started = time.perf_counter()
    for job_id in [_submit(client, path) for path in images]:
        _wait(client, job_id)
    return latency, run_s, time.perf_counter() - started


def main() -> None:
    """Run both sides, alternating, and print their figures and ratios."""
    args = _args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = args.work_dir or Path(tmp)
        model = args.model or _train(work, args.tiny)
        manifest = _cases(work, args.size, args.cases + 1)
        warmup, *images = sorted((work / "cases").glob("*.nii.gz"))
        process, url = _serve(model, work / "serve", args.threads)
        per_case: list[float] = []
        latency: list[float] = []
        run_s: list[float] = []
        walls, rates = [], []
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                _wait(client, _submit(client, warmup))
                for r in range(args.rounds):  # alternating, so drift hits both sides alike
                    out = work / f"predict-{r}"
                    wall, (_, *cases) = _predict(model, manifest, out, args.threads)
                    lat, run, serve_wall = _serve_round(client, images)
                    per_case += cases
                    latency += lat
                    run_s += run
                    walls.append(wall)
                    rates.append((len(images) / serve_wall) / (len(cases) / sum(cases)))
        finally:
            process.terminate()
            process.wait(30)
    n = len(images)
    p50_predict, p50_serve = statistics.median(per_case), statistics.median(latency)
    print(
        f"{n} cases of {args.size}^3 x {args.rounds} rounds, {args.threads} threads, "
        "one worker each (the machine's other load: see the note)"
    )
    print(
        f"medimg predict: per case p50 {p50_predict:.2f} s, p95 {_p95(per_case):.2f} s; "
        f"whole command median {statistics.median(walls):.1f} s for {n + 1} cases, "
        "start-up included"
    )
    print(
        f"medimg serve:   latency  p50 {p50_serve:.2f} s, p95 {_p95(latency):.2f} s; "
        f"worker run p50 {statistics.median(run_s):.2f} s; fixed cost per job (latency - "
        f"run) p50 {statistics.median(a - b for a, b in zip(latency, run_s, strict=True)):.2f} s"
    )
    print(
        f"ratio serve/predict: latency p50 {p50_serve / p50_predict:.3f} (overhead "
        f"{100 * (p50_serve / p50_predict - 1):+.1f} %, target <= +10 %); throughput "
        f"{statistics.median(rates):.3f} of predict's per-case rate (median of rounds: "
        f"{', '.join(f'{x:.3f}' for x in rates)}; target >= 0.909)"
    )


if __name__ == "__main__":
    main()
