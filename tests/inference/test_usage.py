"""Per-case time and peak memory: VmHWM reset per case on Linux, ru_maxrss elsewhere."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from medimg.inference import measure_usage
from medimg.inference import usage as usage_module


def _resettable() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _resettable(), reason="needs a writable /proc/self/clear_refs (Linux)")
def test_vmhwm_is_reset_for_each_case() -> None:
    big = np.ones(128 * 2**20, dtype=np.uint8)  # touched: 128 MB resident
    with measure_usage() as large:
        big += 1
    del big
    with measure_usage() as small:
        time.sleep(0.01)
    assert (large.method, small.method) == ("VmHWM", "VmHWM")
    assert large.peak_memory_bytes >= 128 * 2**20
    # the high-water mark was reset: the small case does not inherit the large one's peak
    assert small.peak_memory_bytes < large.peak_memory_bytes - 64 * 2**20
    assert small.time_s >= 0.01


def test_falls_back_to_ru_maxrss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(usage_module, "_PROC", tmp_path / "no-proc")
    with pytest.raises(KeyError), measure_usage() as failed:
        raise KeyError("the block failed")
    assert failed.method == "ru_maxrss"
    assert failed.peak_memory_bytes > 10 * 2**20  # the interpreter alone
    assert failed.time_s >= 0.0
