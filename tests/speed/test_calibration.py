"""The planner's calibration: choice logic on injected measurements, agreement, cache safety."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.inference import InferenceConfig, plan_inference, predict_volume
from medimg.inference import _calibration as cal
from medimg.inference._calibration import (
    CalibrationCache,
    CalibrationRequest,
    RunSettings,
    candidates,
    choose_precision,
)

CPU = torch.device("cpu")


@pytest.fixture
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache" / "calibration.json"
    monkeypatch.setattr(cal, "default_cache_path", lambda: path)
    return path


def near_tie_net(gap: float) -> torch.nn.Module:
    """Two classes, logits ``x`` and ``(1 + gap) * x``: class 1 wins wherever ``x > 0``.

    bfloat16 keeps 8 significant bits, so autocast rounds ``1 + 2**-12`` to 1: both logits
    tie and argmax says 0 on every positive voxel (half of them); ``1 + 2**-2`` survives.
    """
    net = torch.nn.Conv3d(1, 2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([1.0, 1.0 + gap]).reshape(2, 1, 1, 1, 1))
    return net


@pytest.mark.parametrize(
    ("native", "agreement", "f32", "bf16", "expected"),
    [
        (True, 0.9990, 2.0, 1.0, torch.bfloat16),  # the threshold itself passes
        (True, 0.9989, 2.0, 1.0, torch.float32),  # just below
        (True, None, 2.0, 1.0, torch.float32),  # never compared
        (False, 1.0, 2.0, 1.0, torch.float32),  # emulated: never chosen however fast
        (True, 1.0, 1.0, 1.5, torch.float32),  # native but slower
        (True, 1.0, 1.0, 1.0, torch.float32),  # a tie keeps float32
    ],
)
def test_auto_precision_choice(
    native: bool, agreement: float | None, f32: float, bf16: float, expected: torch.dtype
) -> None:
    got = choose_precision(native=native, agreement=agreement, float32_s=f32, bfloat16_s=bf16)
    assert got == expected


def test_candidates_per_device_and_precision() -> None:
    f32 = candidates(CPU, torch.float32, (1, 2))
    bf16 = candidates(CPU, torch.bfloat16, (2,))
    assert len(f32) == 6
    assert not any(s.float32_layers for s in f32)
    assert RunSettings(2, True, True, True) in bf16
    assert all(s.channels_last for s in bf16 if s.fast_layers)  # fast norms need channels-last
    cuda = candidates(torch.device("cuda"), torch.bfloat16, (4, 8))
    assert not any(s.fast_layers for s in cuda)  # CPU forms only


def _inject(
    monkeypatch: pytest.MonkeyPatch, table: dict[str, dict[RunSettings, float]]
) -> list[str]:
    """Replace timing by ``table`` (by precision name); return the precisions timed."""
    timed: list[str] = []

    def fake(
        _m: object, _w: object, _device: torch.device, dtype: torch.dtype, _batches: object
    ) -> dict[RunSettings, float]:
        name = str(dtype).removeprefix("torch.")
        timed.append(name)
        return table[name]

    monkeypatch.setattr(cal, "_time_all", fake)
    return timed


def test_plan_takes_the_fastest_measured_settings_and_caches_them(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow, fast = RunSettings(2, True, True), RunSettings(1, False, False)
    timed = _inject(monkeypatch, {"float32": {slow: 0.30, fast: 0.20}})
    net = near_tie_net(0.25)
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), calibrate=True, prefetch=False)
    plan = plan_inference(net, (1, 20, 20, 20), cfg)
    assert (plan.batch_size, plan.channels_last, plan.fast_layers) == (1, False, False)
    assert plan.compute_dtype == torch.float32
    assert plan.calibration is not None
    assert not plan.calibration.from_cache
    assert "contiguous memory with own layers (calibrated)" in plan.describe()
    again = plan_inference(net, (1, 20, 20, 20), cfg)
    assert again.calibration is not None
    assert again.calibration.from_cache
    assert timed == ["float32"]  # the second plan timed nothing
    doc = json.loads(cache_file.read_text())
    assert doc["version"] == cal._VERSION
    (entry,) = doc["entries"].values()
    assert entry["settings"] == {
        "batch_size": 1,
        "channels_last": False,
        "fast_layers": False,
        "float32_layers": False,
    }
    assert "torch" in entry["machine"]


def test_a_fixed_batch_size_bounds_the_choice(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = {RunSettings(2, True, True): 0.3, RunSettings(2, False, False): 0.1}
    _inject(monkeypatch, {"float32": table})
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), calibrate=True, batch_size=2)
    plan = plan_inference(near_tie_net(0.25), (1, 20, 20, 20), cfg)
    assert (plan.batch_size, plan.channels_last) == (2, False)


@pytest.mark.parametrize(
    ("gap", "expected"), [(2.0**-2, torch.bfloat16), (2.0**-12, torch.float32)]
)
def test_auto_checks_argmax_agreement_on_the_image_windows(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch, gap: float, expected: torch.dtype
) -> None:
    """Agreement computed for real (bfloat16 autocast, emulated where not native)."""
    monkeypatch.setattr(cal, "native_bf16", lambda _d: True)
    monkeypatch.setattr("medimg.inference.planner._calibration.native_bf16", lambda _d: True)
    settings = RunSettings(2, False, False)
    _inject(monkeypatch, {"float32": {settings: 0.2}, "bfloat16": {settings: 0.1}})
    image = np.random.default_rng(3).normal(size=(1, 24, 20, 16)).astype(np.float32)
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), precision="auto", prefetch=False)
    net = near_tie_net(gap)
    labels = predict_volume(net, image, cfg)
    plan = plan_inference(
        net, image.shape, cfg, windows=torch.from_numpy(image[None, :, :8, :8, :8])
    )
    assert plan.calibration is not None
    agreement = plan.calibration.agreement
    assert agreement is not None
    if expected == torch.bfloat16:
        assert agreement == 1.0
    else:
        assert 0.3 < agreement < 0.7  # the positive half of the voxels flips to class 0
    assert plan.compute_dtype == expected
    reference = predict_volume(net, image, InferenceConfig(roi_size_vox=(8, 8, 8)))
    assert (labels == reference).all()  # bfloat16 is chosen only where it agrees


def test_auto_without_native_bfloat16_is_float32_and_measures_nothing(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("medimg.inference.planner._calibration.native_bf16", lambda _d: False)
    monkeypatch.setattr("medimg.inference._runtime.cpu_has_native_bf16", lambda: False)
    timed = _inject(monkeypatch, {})
    cfg = InferenceConfig(roi_size_vox=(8, 8, 8), precision="auto")
    plan = plan_inference(near_tie_net(0.25), (1, 20, 20, 20), cfg)
    assert plan.compute_dtype == torch.float32
    assert plan.calibration is None
    assert timed == []
    assert not cache_file.exists()


@pytest.mark.slow
def test_real_calibration_of_a_small_unet_predicts_the_same_labels(cache_file: Path) -> None:
    """No injected figures: whatever is fastest here, float32 labels do not change."""
    from monai.networks.nets.unet import UNet

    torch.manual_seed(0)
    net = UNet(3, 1, 3, (4, 8), (2,), num_res_units=0)
    image = np.random.default_rng(1).normal(size=(1, 20, 18, 16)).astype(np.float32)
    base = InferenceConfig(roi_size_vox=(16, 16, 16), prefetch=False)
    calibrated = InferenceConfig(roi_size_vox=(16, 16, 16), prefetch=False, calibrate=True)
    expected = predict_volume(net, image, base)
    got = predict_volume(net, image, calibrated)
    assert (got == expected).mean() > 0.9999
    request = CalibrationRequest(CPU, (torch.float32,), (1, 2), CalibrationCache(cache_file))
    result = cal.calibrate(net, torch.from_numpy(image[None, :, :16, :16, :16]), request)
    assert result.from_cache  # predict_volume's calibration measured the same windows' key
    assert set(result.seconds_per_window["float32"]) == {
        s.label() for s in candidates(CPU, torch.float32, (1, 2))
    }


def _writer(path: str, tag: int) -> None:
    cache = CalibrationCache(Path(path))
    for i in range(25):
        cache.put(f"{tag}-{i}", {"seconds": i})


def test_two_processes_writing_at_once_keep_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), tag)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    entries = json.loads(path.read_text())["entries"]
    assert len(entries) == 50
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shared")]  # no temporaries


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"version": 99, "entries": {}}'])
def test_an_unreadable_cache_is_treated_as_empty_and_rewritten(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    cache = CalibrationCache(path)
    assert cache.get("k") is None
    cache.put("k", 1.5)
    assert cache.get("k") == 1.5
    assert json.loads(path.read_text()) == {"version": cal._VERSION, "entries": {"k": 1.5}}


def test_weights_digest_covers_scalar_buffers_and_changes_with_a_weight() -> None:
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))
    before = cal.weights_digest(net)  # BatchNorm's num_batches_tracked is a 0-d int64
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0, 0] += 1.0
    assert cal.weights_digest(net) != before
