from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.inference import InferenceConfig, open_source, plan_inference
from medimg.inference._runtime import choose_device, prefetched, resolve_precision


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"roi_size_vox": (96, 96)}, r"roi_size_vox must be 3 positive integers .*\(96, 96\)"),
        ({"roi_size_vox": (8, 0, 8)}, r"roi_size_vox must be 3 positive integers"),
        ({"overlap": 1.0}, r"overlap must be >= 0 and < 1, got 1.0"),
        ({"overlap": -0.1}, r"overlap must be >= 0 and < 1, got -0.1"),
        ({"sigma_scale": 0.0}, r"sigma_scale must be > 0, got 0.0"),
        ({"batch_size": 0}, r"batch_size must be >= 1 or None, got 0"),
        ({"mirror_axes": (0, 3)}, r"mirror_axes must be distinct spatial axes .*\(0, 3\)"),
        ({"mirror_axes": (1, 1)}, r"mirror_axes must be distinct"),
        (
            {"output": "argmax"},
            r"output must be one of labels, probabilities, logits, got 'argmax'",
        ),
        ({"precision": "fp8"}, r"precision must be one of .* got 'fp8'"),
        ({"memory_budget_bytes": 0}, r"memory_budget_bytes must be > 0 or None, got 0"),
    ],
)
def test_bad_config_values_raise(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        InferenceConfig(**kwargs)


def test_device_choice() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device("auto").type == expected
    with pytest.raises(ConfigError, match=r"device must be 'auto' or a torch device, got 'gpu0'"):
        choose_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_raises() -> None:
    with pytest.raises(ConfigError, match=r"device 'cuda:0' was asked for but CUDA is not"):
        choose_device("cuda:0")


def test_precision_resolution_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == torch.float32
    assert resolve_precision("bfloat16", cpu) == torch.bfloat16
    assert resolve_precision("auto", cpu) in (torch.float32, torch.bfloat16)
    with pytest.raises(ConfigError, match=r"precision 'float16' needs a CUDA device, got device"):
        resolve_precision("float16", cpu)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_where_native(monkeypatch, native) -> None:
    """CPU by its flags; CUDA by bf16 support, and never float16 (too narrow unasked)."""
    from medimg.inference import _runtime

    monkeypatch.setattr(_runtime, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: native)
    expected = torch.bfloat16 if native else torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("float16", torch.device("cuda")) == torch.float16


def test_bad_inputs_raise(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"image must be a Volume, an array or tensor .* got int"):
        open_source(3)
    with pytest.raises(ConfigError, match=r"with 4 non-empty axes, got shape \(1, 0, 4, 4\)"):
        open_source(np.zeros((1, 0, 4, 4)))
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), path)
    with pytest.raises(ConfigError, match=r"image file must be 3D or 4D \(X, Y, Z\[, C\]\), got"):
        open_source(path)


def test_nifti_with_channels_is_read_channel_first(tmp_path) -> None:
    data = np.random.default_rng(0).normal(size=(5, 4, 3, 2)).astype(np.float32)
    path = tmp_path / "two.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    source = open_source(path)
    assert source.shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(source.read(1, 3).numpy(), np.moveaxis(data, -1, 0)[..., 1:3])


def test_memory_budget_too_small_raises() -> None:
    net = torch.nn.Conv3d(1, 2, 1)
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), memory_budget_bytes=1000, device="cpu")
    with pytest.raises(
        ConfigError, match=r"memory budget must cover the smallest plan's predicted"
    ):
        plan_inference(net, (1, 20, 20, 20), cfg)


def test_prefetch_reraises_producer_errors() -> None:
    def broken():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetched(broken, enabled=True))
    assert list(prefetched(lambda: iter(range(5)), enabled=True)) == [0, 1, 2, 3, 4]


def test_heap_trimmer_trims_only_past_the_slack(monkeypatch) -> None:
    from medimg.inference import _runtime

    idle = iter([100, 80, 150, 200, 260, 90, 300, 370, 330])
    trims: list[int] = []
    monkeypatch.setattr(_runtime, "idle_resident_bytes", lambda: next(idle))
    monkeypatch.setattr(_runtime, "release_freed_memory", lambda: trims.append(1))
    trimmer = _runtime.HeapTrimmer(slack=100, warmup=2)
    for _ in range(4):  # 100 and 80 set the floor (their most); 150 and 200 are within
        trimmer.after_batch()
    assert (trimmer.floor, trimmer.trims) == (100, 0)
    trimmer.after_batch()  # 260 > 100 + 100: trim, which leaves 90 (the floor stays 100)
    assert (trimmer.floor, trimmer.trims) == (100, 1)
    trimmer.after_batch()  # 300: trim, but 370 is left: the floor rises to it
    assert (trimmer.floor, trimmer.trims) == (370, 2)
    trimmer.after_batch()  # 330 is within 370 + 100
    assert trimmer.trims == 2
    assert len(trims) == 2


_IDLE_PROBE = """
import ctypes
from medimg.inference._runtime import idle_resident_bytes, release_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: the block comes from the heap
libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: free() keeps it resident
release_freed_memory()
before = idle_resident_bytes()
block = libc.malloc(64 << 20)
ctypes.memset(block, 1, 64 << 20)  # resident and allocated: not idle
held = idle_resident_bytes()
libc.free(ctypes.c_void_p(block))  # resident and free: idle
freed = idle_resident_bytes()
release_freed_memory()
print(before, held, freed, idle_resident_bytes())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and glibc's mallinfo2"
)
def test_idle_resident_bytes_sees_freed_heap_pages() -> None:
    # in a child: the probe changes glibc's malloc settings for the rest of its process
    done = subprocess.run(
        [sys.executable, "-c", _IDLE_PROBE], capture_output=True, text=True, check=True
    )
    before, held, freed, trimmed = (int(v) for v in done.stdout.split())
    mib = 1 << 20
    assert before > 0
    assert abs(held - before) < 16 * mib  # allocated and touched: resident, not idle
    assert freed - held > 48 * mib  # freed into the heap: still resident, now idle
    assert freed - trimmed > 48 * mib  # trimmed: handed back
