"""Segmentation prediction streams: no float class map in memory, the same label bytes as before."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.inference import (
    Slab,
    predict_volume,
    source_label_slabs,
    streamed_source_label_slabs,
    write_slabs_nifti,
)
from medimg.io import save_volume
from medimg.io.integrity import is_temporary_name, remove_stale_temporaries
from medimg.keys import Keys
from medimg.manifests import ResolvedCase
from medimg.synthetic import ct_phantom, grid_affine
from medimg.tasks._segmentation_predict import predict_case
from medimg.tasks.segmentation import inference_config
from medimg.training import apply_chain
from medimg.transforms import PreprocessConfig, preprocessing_for


def _net(n_classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv3d(1, n_classes, kernel_size=3, padding=1)


def _oblique_case(tmp_path: Path) -> tuple[ResolvedCase, object]:
    shape = (23, 19, 11)
    affine = grid_affine(shape, (1.6, 1.3, 4.0), axcodes="LPS", rotation_deg=(7.0, -4.0, 11.0))
    path = tmp_path / "case.nii.gz"
    save_volume(ct_phantom(shape, affine=affine, seed=3).image.array, path, like=affine)
    cfg = PreprocessConfig(
        target_spacing_mm=(1.4, 1.4, 1.9), hu_window="soft_tissue", crop_foreground_above=-500.0
    )
    return ResolvedCase(split="test", case_id="case", images=(path,)), preprocessing_for("CT", cfg)


def test_streamed_prediction_writes_the_bytes_of_the_in_memory_path(tmp_path: Path) -> None:
    case, chain = _oblique_case(tmp_path)
    net, infer = _net(4, seed=0), inference_config((8, 8, 8), 0.5, (0,))
    # the previous path: the whole class map in memory, then slabs onto the stored grid
    sample = apply_chain(chain, {"image": str(case.images[0])})
    record = sample[Keys.RECORD]
    with torch.no_grad():
        probabilities = predict_volume(
            net, torch.as_tensor(sample["image"]).as_subclass(torch.Tensor),
            replace(infer, output="probabilities"),
        )  # fmt: skip
    old = write_slabs_nifti(
        source_label_slabs(probabilities, record), tmp_path / "old" / "case.nii.gz",
        shape=record.source_shape, affine=record.source_affine,
    )  # fmt: skip
    new = predict_case(case, chain, (net, None), infer, tmp_path / "new" / "case.nii.gz")  # type: ignore[arg-type]  # the network settings are not read
    assert new.read_bytes() == old.read_bytes()
    assert len(np.unique(probabilities.argmax(axis=0))) > 1  # not a constant map
    assert [p.name for p in new.parent.iterdir()] == ["case.nii.gz"]  # scratch file deleted


def test_scratch_file_is_a_temporary_that_stale_cleanup_removes(tmp_path: Path) -> None:
    case, chain = _oblique_case(tmp_path)
    sample = apply_chain(chain, {"image": str(case.images[0])})
    record = sample[Keys.RECORD]
    probabilities = torch.rand(3, *record.grid_shape).softmax(dim=0)
    gz = record.grid_shape[2]
    slabs = [Slab(z, probabilities[..., z : min(z + 2, gz)].clone()) for z in range(0, gz, 2)]
    out = tmp_path / "out"
    out.mkdir()
    labels = streamed_source_label_slabs(slabs, record, scratch_dir=out, name="case.nii.gz")
    first = next(labels)
    assert first.z_start == 0
    (scratch,) = out.iterdir()  # what a kill -9 now would leave behind
    assert is_temporary_name(scratch.name), scratch.name
    assert scratch.stat().st_size == probabilities.numel() * 4
    labels.close()
    assert list(out.iterdir()) == []
    scratch.write_bytes(b"left by a killed run")
    assert remove_stale_temporaries(out) == [scratch]


_MEASURE = """
import functools, sys
from pathlib import Path
import numpy as np, torch
import medimg.inference as inference
from medimg.inference import measure_usage
from medimg.io import save_volume
from medimg.manifests import ResolvedCase
from medimg.tasks._segmentation_predict import predict_case
from medimg.tasks.segmentation import inference_config
from medimg.transforms import PreprocessConfig, preprocessing_for
torch.set_num_threads(1)
# stored-grid slabs of 2 MB, so the class map's size is what the bound is measured against
inference.streamed_source_label_slabs = functools.partial(
    inference.streamed_source_label_slabs, slab_bytes=2 * 2**20
)
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
tmp, n_classes = Path(sys.argv[1]), int(sys.argv[2])
shape = tuple(int(n) for n in sys.argv[3].split("x"))
chain = preprocessing_for("CT", PreprocessConfig(target_spacing_mm=(1.5, 1.5, 1.5), hu_window="soft_tissue"))
net = torch.nn.Conv3d(1, n_classes, 1)
infer = inference_config((16, 16, 16), 0.25)
rng = np.random.default_rng(0)
affine = np.diag([1.5, 1.5, 1.5, 1.0])
for name, size in (("warm", (32, 32, 40)), ("big", shape)):
    path = tmp / f"{name}.nii"
    save_volume(rng.normal(0.0, 200.0, size).astype(np.float32), path, like=affine)
    case = ResolvedCase(split="test", case_id=name, images=(path,))
    before = kib("VmRSS")
    with measure_usage() as usage:
        predict_case(case, chain, (net, None), infer, tmp / "out" / f"{name}.nii.gz")
class_map = n_classes * int(np.prod(shape)) * 4
print(class_map / (usage.peak_memory_bytes - before * 1024), usage.method)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux /proc")
def test_predict_case_peak_memory_is_a_fraction_of_the_class_map(tmp_path: Path) -> None:
    # 64 classes over 64 x 64 x 320 voxels: a 336 MB float class map on the preprocessed grid
    # (the stored grid here). Streamed, the case's RSS growth is the stitcher's open step of
    # windows (64 x 64 x 12 planes x 64 classes, 13 MB), the preprocessed image and one slab
    # of each grid, measured in a fresh process.
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path), "64", "64x64x320"],
        capture_output=True,
        text=True,
        check=True,
    )
    ratio, method = done.stdout.split()
    assert method == "VmHWM"
    assert float(ratio) >= 4.0, done.stdout
