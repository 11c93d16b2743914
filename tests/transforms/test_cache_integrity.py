"""The preprocessing cache is keyed by each input file's content (size + SHA-256) by default.

Before issue 12 the default key was path, size and ``mtime_ns``: a file rewritten with its
``mtime`` put back (``cp -p``, ``rsync -t``, ``os.utime``) hit the old entry and training used
the old arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

import medimg.io.integrity as integrity
from medimg.errors import ConfigError
from medimg.io import save_volume
from medimg.synthetic import grid_affine
from medimg.transforms.cache import CachedChain

SHAPE = (5, 4, 3)
AFFINE = grid_affine(SHAPE, (1.0, 2.0, 3.0), axcodes="LPS")


class Loading:
    """A stand-in chain: the image's voxels as a tensor (so a stale hit shows in the values)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.calls += 1
        loaded: Any = nib.load(str(data["image"]))
        array = np.asarray(loaded.dataobj, dtype=np.float32)
        return {**data, "image": torch.from_numpy(array)}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    values = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    return save_volume(values[None], tmp_path / "data" / "i.nii.gz", like=AFFINE)


def _rewrite_keeping_mtime(path: Path, offset: float) -> None:
    st = path.stat()
    img: Any = nib.load(path)
    array = np.asarray(img.dataobj, dtype=np.float32) + offset
    nib.save(nib.Nifti1Image(array, img.affine, img.header), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("key_by", ["identity", "content", "stat"])
def test_a_rewrite_with_its_mtime_put_back_misses(image: Path, tmp_path: Path, key_by: str) -> None:
    inner = Loading()
    cached = CachedChain(inner, tmp_path / "cache", "params", key_by=key_by)  # type: ignore[arg-type]
    assert float(cached({"image": str(image)})["image"].sum()) == 1770.0  # 0 + ... + 59
    _rewrite_keeping_mtime(image, 1.0)
    assert float(cached({"image": str(image)})["image"].sum()) == 1770.0 + 60  # not stale
    assert inner.calls == 2
    fresh = CachedChain(Loading(), tmp_path / "cache", "params", key_by=key_by)  # type: ignore[arg-type]
    assert float(fresh({"image": str(image)})["image"].sum()) == 1830.0  # a new process too


def test_default_hashes_each_file_once_and_survives_touch_and_copy(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real = integrity.sha256_file

    def counting(path: Any) -> str:
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(integrity, "sha256_file", counting)
    inner = Loading()
    cache = tmp_path / "cache"
    assert CachedChain(inner, cache, "params").key_by == "identity"
    for _ in range(3):  # three "epochs", then a new process's chain
        CachedChain(inner, cache, "params")({"image": str(image)})
    CachedChain(inner, cache, "params")({"image": str(image)})
    assert (inner.calls, len(hashed)) == (1, 1)  # the index's stat shortcut
    (record,) = (cache / "identities").glob("*.json")
    assert json.loads(record.read_text())["path"] == str(image.resolve())
    os.utime(image)  # touch: same bytes
    CachedChain(inner, cache, "params")({"image": str(image)})
    copy = tmp_path / "copy.nii.gz"
    copy.write_bytes(image.read_bytes())
    CachedChain(inner, cache, "params")({"image": str(copy)})
    assert inner.calls == 1  # both hit: the content decides
    assert len(hashed) == 3  # re-hashed once each (new stat fields), then recorded


def test_an_unreadable_index_record_is_rehashed(image: Path, tmp_path: Path) -> None:
    inner = Loading()
    cache = tmp_path / "cache"
    CachedChain(inner, cache, "params")({"image": str(image)})
    (record,) = (cache / "identities").glob("*.json")
    record.write_text("{truncated")
    CachedChain(inner, cache, "params")({"image": str(image)})
    assert inner.calls == 1  # same content, same entry
    assert json.loads(record.read_text())["size"] == image.stat().st_size  # rewritten whole


def _worker(args: tuple[str, str]) -> float:
    image, cache = args
    torch.set_num_threads(1)
    return float(CachedChain(Loading(), cache, "params")({"image": image})["image"].sum())


def test_processes_share_entries_and_index(image: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ProcessPoolExecutor(2) as pool:
        sums = list(pool.map(_worker, [(str(image), str(cache))] * 6))
    assert sums == [1770.0] * 6
    names = sorted(p.relative_to(cache).parts[0] for p in cache.rglob("*") if p.is_file())
    assert len(names) == 2  # one entry, one index record; no temporary left
    assert not [p for p in cache.rglob(".*") if integrity.is_temporary_name(p.name)]


def test_key_by_is_checked(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"key_by must be 'stat' or 'content' or 'identity' \(the default\), got 'mtime'",
    ):
        CachedChain(Loading(), tmp_path, "params", key_by="mtime")  # type: ignore[arg-type]
