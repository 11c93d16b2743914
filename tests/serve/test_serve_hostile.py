"""Hostile requests: each answered with a 4xx JSON error while the server keeps serving."""

from __future__ import annotations

import gzip
import io
import json
import re
import socket
import struct
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
from conftest import Served


def _nifti_bytes(shape: tuple[int, ...] = (6, 5, 4)) -> bytes:
    image = nib.Nifti1Image(np.zeros(shape, np.int16), np.diag([1.0, 1.0, 2.5, 1.0]))
    return bytes(image.to_bytes())


def _claims_5_gb() -> bytes:
    # a valid 352-byte NIfTI-1 header whose dim says 2048 x 2048 x 640 int16 = 5.4 GB
    header = bytearray(_nifti_bytes()[:352])
    struct.pack_into("<8h", header, 40, 3, 2048, 2048, 640, 1, 1, 1, 1)
    return gzip.compress(bytes(header))


def _corrupt_gzip(case: bytes) -> bytes:
    damaged = bytearray(case)
    for offset in range(len(damaged) // 2, len(damaged) // 2 + 64):
        damaged[offset] ^= 0x5A
    return bytes(damaged)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _zip_bomb(claimed: int | None) -> bytes:
    """48 MiB of zeros deflated to ~50 KB; `claimed` rewrites the size its headers declare."""
    data = bytearray(_zip({"slice.dcm": bytes(48 * 2**20)}))
    if claimed is not None:  # a lying archive: local header offset 22, central header 24
        struct.pack_into("<I", data, 22, claimed)
        central = data.rfind(b"PK\x01\x02")
        struct.pack_into("<I", data, central + 24, claimed)
    return bytes(data)


def _symlink_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo("link.dcm")
        info.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        archive.writestr(info, "/etc/passwd")
    return out.getvalue()


HOSTILE: list[tuple[str, Callable[[bytes], bytes], int, str]] = [
    ("corrupt gzip", _corrupt_gzip, 400, r"CRC|damaged|invalid|corrupt"),
    ("truncated gzip", lambda case: case[: len(case) // 2], 400, r"truncated|length|end"),
    ("truncated raw", lambda case: gzip.decompress(case)[:2000], 400, r"truncated"),
    ("not an image", lambda case: b"Patient^Name,1970\n" * 50, 400, r"not a NIfTI, NRRD"),
    ("claims 5 GB", lambda case: _claims_5_gb(), 413, r"claims a \(2048, 2048, 640\)"),
    ("zip with ../", lambda case: _zip({"../../etc/cron.d/x": b"x"}), 400, r"climbs out"),
    ("zip absolute", lambda case: _zip({"/etc/passwd": b"x"}), 400, r"absolute path"),
    ("zip symlink", lambda case: _symlink_zip(), 400, r"symbolic link"),
    ("zip bomb", lambda case: _zip_bomb(None), 413, r"inflates to 50331648 bytes"),
    ("zip bomb lying", lambda case: _zip_bomb(1000), 400, r"cannot be inflated|CRC"),
    ("zip claims 4 GB", lambda case: _zip_bomb(2**32 - 1), 413, r"zip bomb"),
    (
        "too many members",
        lambda case: _zip({f"{i}.dcm": b"" for i in range(5001)}),
        413,
        r"5001 members",
    ),
    (
        "nrrd data file",
        lambda case: (
            b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\n"
            b"encoding: raw\ndata file: /etc/shadow\n\n"
        ),
        400,
        r"separate data file",
    ),
]


@pytest.mark.parametrize(
    ("kind", "make", "status", "pattern"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_upload_is_refused(
    served: Served,
    case_images: list[Path],
    kind: str,
    make: Callable[[bytes], bytes],
    status: int,
    pattern: str,
) -> None:
    body = make(case_images[0].read_bytes())
    jobs = served.server.data / "jobs"
    before = set(jobs.iterdir())
    with served.client() as client:
        answer = client.post("/v1/jobs", files={"file": ("scan.nii.gz", body)})
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert re.search(pattern, answer.json()["detail"]), answer.json()
        assert client.get("/healthz").status_code == 200
    assert set(jobs.iterdir()) == before  # nothing of a refused upload is left


def test_tokens_are_required_and_checked(served: Served, case_images: list[Path]) -> None:
    url = served.server.url
    body = {"file": ("a.nii.gz", case_images[0].read_bytes())}
    none = httpx.post(f"{url}/v1/jobs", files=body)
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in none.json()["detail"]
    wrong = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer mdg_wrong"})
    assert wrong.status_code == 401
    assert "not valid" in wrong.json()["detail"]
    basic = httpx.get(f"{url}/v1/models", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200  # health needs no token
    assert httpx.get(f"{url}/v1/models", headers=served.auth).status_code == 200


def test_oversized_body_is_refused(served: Served) -> None:
    with served.client() as client:
        big = client.post("/v1/jobs", files={"file": ("a", bytes(5 * 2**20))})
        assert big.status_code == 413
        assert "at most" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            for _ in range(6):
                yield bytes(2**20)

        streamed = client.post(
            "/v1/jobs",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert streamed.status_code == 413
        assert client.get("/healthz").status_code == 200


def test_slow_upload_times_out(served: Served) -> None:
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {served.token}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
        '--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=30) as s:
        s.sendall(head)
        s.sendall(b"\x00" * 100)  # ... and then nothing more (a slowloris client)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert time.monotonic() - started < 20
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 408 " in status_line, reply
    assert "did not arrive within 3 s" in json.loads(rest.partition(b"\r\n\r\n")[2])["detail"]
    assert httpx.get(f"{served.server.url}/healthz").status_code == 200
