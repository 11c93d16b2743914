"""The on-disk chain cache: hits, invalidation by parameters and files, atomic shared writes."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Hashable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.keys import Keys
from medimg.modality import Modality
from medimg.synthetic import ct_phantom, grid_affine
from medimg.transforms import PreprocessConfig, preprocessing_for
from medimg.transforms.cache import CachedChain, chain_key

CFG = PreprocessConfig(target_spacing_mm=(2.0, 2.0, 3.0), hu_window="soft_tissue")


class Counting:
    """A chain that counts its calls."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.chain = preprocessing_for(Modality.CT, config)
        self.calls = 0

    def __call__(self, data: Mapping[Hashable, Any]) -> Any:
        self.calls += 1
        return self.chain(data)


@pytest.fixture
def case(tmp_path: Path) -> dict[str, str]:
    shape = (12, 10, 6)
    ph = ct_phantom(shape, affine=grid_affine(shape, (3.0, 3.0, 5.0), axcodes="LPS"), seed=0)
    image, label = ph.write(tmp_path / "data", "case")
    return {"image": str(image), "label": str(label), "case_id": "case"}


def _cached(
    config: PreprocessConfig, cache: Path, key_by: str = "stat"
) -> tuple[CachedChain, Counting]:
    inner = Counting(config)
    return CachedChain(inner, cache, chain_key(Modality.CT, config, None), key_by=key_by), inner  # type: ignore[arg-type]


def test_second_call_is_read_from_disk_and_equal(case: dict[str, str], tmp_path: Path) -> None:
    cached, inner = _cached(CFG, tmp_path / "cache")
    first = cached(case)
    again = cached(case)
    assert inner.calls == 1
    assert torch.equal(first["image"].as_tensor(), again["image"].as_tensor())
    assert torch.equal(again["label"].as_tensor(), first["label"].as_tensor())
    np.testing.assert_array_equal(again["image"].affine.numpy(), first["image"].affine.numpy())
    assert again[Keys.RECORD].to_dict() == first[Keys.RECORD].to_dict()
    assert again["case_id"] == "case"


def test_any_parameter_change_misses(case: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached, _ = _cached(CFG, cache)
    cached(case)
    other, inner = _cached(
        PreprocessConfig(target_spacing_mm=(2.0, 2.0, 3.0), hu_window="bone"), cache
    )
    out = other(case)
    assert inner.calls == 1
    assert len(list(cache.rglob("*.pt"))) == 2
    assert float(out["image"].max()) <= 1.0


def test_touching_a_file_misses_by_stat_but_not_by_content(
    case: dict[str, str], tmp_path: Path
) -> None:
    by_stat, stat_inner = _cached(CFG, tmp_path / "stat")
    by_content, content_inner = _cached(CFG, tmp_path / "content", key_by="content")
    by_stat(case)
    by_content(case)
    st = os.stat(case["image"])
    os.utime(case["image"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    by_stat(case)
    by_content(case)
    assert stat_inner.calls == 2
    assert content_inner.calls == 1


def test_in_memory_volumes_are_computed_not_cached(tmp_path: Path) -> None:
    ph = ct_phantom((8, 8, 4), (4.0, 4.0, 7.0), seed=0)
    cached, inner = _cached(CFG, tmp_path / "cache")
    cached({"image": ph.image})
    cached({"image": ph.image})
    assert inner.calls == 2
    assert not (tmp_path / "cache").exists()


def test_unreadable_entry_is_recomputed(
    case: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cached, inner = _cached(CFG, tmp_path / "cache")
    cached(case)
    entry = cached.entry_path(case)
    assert entry is not None
    entry.write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="medimg.transforms.cache"):
        cached(case)
    assert inner.calls == 2
    assert "unreadable" in caplog.text
    cached(case)
    assert inner.calls == 2  # rewritten whole


def test_key_by_must_be_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key_by must be 'stat' or 'content'"):
        CachedChain(lambda d: d, tmp_path, "k", key_by="mtime")  # type: ignore[arg-type]


def _worker(args: tuple[dict[str, str], str]) -> float:
    case, cache = args
    torch.set_num_threads(1)
    chain = preprocessing_for(Modality.CT, CFG, cache_dir=cache)
    return float(chain(case)["image"].sum())


def test_workers_share_a_cache_folder(case: dict[str, str], tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    with ProcessPoolExecutor(2) as pool:
        sums = list(pool.map(_worker, [(case, cache)] * 4))
    assert len(set(sums)) == 1
    entries = list(Path(cache).rglob("*"))
    # one entry, one identity-index record per input file (image, label); no temporary left
    assert sorted(p.suffix for p in entries if p.is_file()) == [".json", ".json", ".pt"]


def test_monai_persistent_dataset_keys_by_the_data_dict_only(
    case: dict[str, str], tmp_path: Path
) -> None:
    # Why we key by parameters: MONAI names an entry by a hash of the data dict alone, so two
    # different chains sharing a cache folder read and write the same entry (the second chain
    # gets the first one's arrays); ours gives each chain its own entry.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from monai.data import PersistentDataset

    data = [{"image": case["image"]}]
    bone_cfg = PreprocessConfig(target_spacing_mm=(2.0, 2.0, 3.0), hu_window="bone")
    soft = preprocessing_for(Modality.CT, CFG)
    bone = preprocessing_for(Modality.CT, bone_cfg)
    monai_soft = PersistentDataset(data, transform=soft, cache_dir=tmp_path / "monai")
    monai_bone = PersistentDataset(data, transform=bone, cache_dir=tmp_path / "monai")
    assert monai_soft.hash_func(data[0]) == monai_bone.hash_func(data[0])
    ours_soft, _ = _cached(CFG, tmp_path / "ours")
    ours_bone, _ = _cached(bone_cfg, tmp_path / "ours")
    assert ours_soft.entry_path(data[0]) != ours_bone.entry_path(data[0])
