"""Fixtures of the serve tests: a tiny trained model and a real ``medimg serve`` process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from medimg.synthetic.datasets import write_ct_segmentation_dataset
from medimg.training import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def seg_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 5 seeded cases on oblique, anisotropic, LPS- or RAS-stored grids; 1 in the test split
    return write_ct_segmentation_dataset(tmp_path_factory.mktemp("serve-data"), 5, seed=11)


@pytest.fixture(scope="session")
def seg_model(seg_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a tiny DynUNet trained for 2 epochs (a few seconds on CPU).

    Validated once, after the last epoch: the sliding-window validation was half the training
    time, and any trained model serves the tests (they compare the service with the command
    line on the same model).
    """
    from pipelines.segmentation import SegmentationConfig, train

    out = tmp_path_factory.mktemp("serve-run")
    cfg = SegmentationConfig(
        manifest=seg_dataset,
        out_dir=out,
        network="dynunet",
        base_features=4,
        roi_size_vox=(16, 16, 8),
        batch_size=2,
        samples_per_case=1,
        train=TrainConfig(max_epochs=2, learning_rate=1e-2, device="cpu", validate_every_epochs=2),
    )
    train(cfg)
    return out


@pytest.fixture(scope="session")
def case_images(seg_dataset: Path) -> list[Path]:
    return sorted((seg_dataset.parent / "imagesTr").glob("*.nii.gz"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """A ``medimg serve`` subprocess on 127.0.0.1."""

    data: Path
    args: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 120.0) -> Server:
        return self.launch().wait_ready(timeout_s=timeout_s)

    def launch(self) -> Server:
        """Start the process; :meth:`wait_ready` waits for ``/readyz``."""
        self.log = self.data / f"server-{time.monotonic_ns()}.log"
        self.data.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "medimg",
            "serve",
            "--data",
            str(self.data),
            "--port",
            str(self.port),
            *self.args,
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=ENV
            )
        return self

    def wait_ready(self, *, timeout_s: float = 120.0) -> Server:
        assert self.process is not None
        assert self.log is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"medimg serve exited {self.process.returncode}:\n" + self.log.read_text()
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("medimg serve was not ready in time:\n" + self.log.read_text())

    def kill(self) -> None:
        """kill -9 the server (its workers die with it)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def output(self) -> str:
        return "" if self.log is None else self.log.read_text()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(*args: str, data: Path | None = None) -> Server:
        server = Server(data=data or tmp_path / "serve", args=list(args))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
"""Server and command line run with the same thread count, so their floats agree bit for bit."""


@dataclass
class CliRun:
    """`medimg predict` of every case image, running in the background until waited for."""

    process: subprocess.Popen[bytes]
    labels: dict[str, Path]
    log: Path

    def wait(self) -> dict[str, Path]:
        self.process.wait()
        assert self.process.returncode == 0, self.log.read_text()
        return self.labels


@pytest.fixture(scope="session")
def cli_run(
    seg_dataset: Path, seg_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliRun]:
    """Start `medimg predict` of every case image (a manifest whose training split holds them
    all); the shared server starts while it runs (the machine has 2 cores, each is 1 thread)."""
    record = json.loads(seg_dataset.read_text())
    record["training"] = record["training"] + record.pop("test")
    manifest = seg_dataset.parent / "all_cases.json"
    manifest.write_text(json.dumps(record))
    out = tmp_path_factory.mktemp("cli-predict")
    command = [
        sys.executable,
        "-m",
        "medimg",
        "predict",
        "--model",
        str(seg_model),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--split",
        "training",
    ]
    log = out.parent / f"{out.name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=ENV, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT
        )
    labels = {case["id"]: out / f"{case['id']}.nii.gz" for case in record["training"]}
    yield CliRun(process, labels, log)
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def cli_labels(cli_run: CliRun) -> dict[str, Path]:
    """`medimg predict` of every case image, by case id."""
    return cli_run.wait()


def create_token(data: Path) -> str:
    """`medimg serve token create --data DATA`: the token is the last word of the last line."""
    done = subprocess.run(
        [sys.executable, "-m", "medimg", "serve", "token", "create", "--data", str(data)],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1].split()[-1]


@dataclass
class Served:
    """The session's shared server (a token exists, so every call must carry it)."""

    server: Server
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=self.auth, timeout=60, **kwargs)  # type: ignore[arg-type]


SHARED_LIMITS = {"max_upload_mb": 4, "max_decoded_mb": 32, "upload_timeout_s": 3}


@pytest.fixture(scope="session")
def served(
    seg_model: Path, cli_run: CliRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`medimg serve` with 2 workers, a token and small limits the hostile tests run into;
    jobs may ask for float32 (form field precision)."""
    data = tmp_path_factory.mktemp("shared") / "serve"
    token = create_token(data)
    args = [
        "--model",
        str(seg_model),
        "--workers",
        "2",
        "--max-queued",
        "8",
        "--max-jobs-per-token",
        "12",
        "--max-upload-mb",
        "4",
        "--max-decoded-mb",
        "32",
        "--upload-timeout-s",
        "3",
        "--job-precision",
        "float32",
    ]
    server = Server(data=data, args=args).start()  # while cli_run predicts
    yield Served(server, token)
    server.stop()


def wait_done(client: httpx.Client, job_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
    """Poll the job until it is done or failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")
