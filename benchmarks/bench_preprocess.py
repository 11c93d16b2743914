"""Benchmark medimg's CT preprocessing chain and its way back against stock MONAI and TorchIO.

Run from the repository root::

    python benchmarks/bench_preprocess.py            # 3 repeats per method, prints a table
    python benchmarks/bench_preprocess.py --repeats 5 --keep-dir /tmp/bench

What is measured
----------------
Forward: a 512x512x300 int16 CT at 0.7x0.7x2.5 mm, stored LPS as ``.nii.gz`` (generated here
into a temporary folder), loaded, reoriented to RAS, resampled to 1.5 mm isotropic (linear) and
windowed to [-1000, 1000] HU -> [0, 1]:

* ``medimg``: ``preprocessing_for("CT", PreprocessConfig(...))``;
* ``monai``: LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd (bilinear),
  ScaleIntensityRanged, all defaults otherwise;
* ``torchio``: ScalarImage, ToCanonical, Resample(1.5, linear), Clamp, RescaleIntensity;
* ``sitk``: the same chain in SimpleITK (ReadImage as float32, Resample, IntensityWindowing).

Back: a 2-class probability map on the 1.5 mm grid brought onto the original 512x512x300 grid:

* ``medimg-back``: :func:`medimg.transforms.to_source_grid` (linear), whole volume;
* ``medimg-back-slabs``: the same in slabs of 30 slices of the stored last axis;
* ``monai-back``: ``Compose.inverse`` of the MONAI chain (Spacingd and Orientationd inverses);
* nnU-Net v2's export of the same map took 27.5 s on a machine like this one (figure given
  with the task; nnU-Net cannot be installed here), used as a fixed reference.

Each method runs in its own subprocess; times are per volume inside the process (imports and
file generation excluded), medians over ``--repeats``; memory is the subprocess's peak resident
set (``ru_maxrss``), imports included. Every method gets the same thread count (``--threads``,
default 1: on a machine shared with other jobs, two torch threads fighting for a busy core made
every method slower and the timings erratic).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = (512, 512, 300)
SPACING = (0.7, 0.7, 2.5)
TARGET = 1.5
HU = (-1000.0, 1000.0)
NNUNET_EXPORT_S = 27.5  # nnU-Net v2 export of the same map, figure given with the task
SLAB = 30


def make_ct(path: Path) -> None:
    """Write a seeded CT-like int16 volume (body, organs, bone, noise), stored LPS."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    x = (np.arange(SHAPE[0]) - SHAPE[0] / 2) * SPACING[0]
    y = (np.arange(SHAPE[1]) - SHAPE[1] / 2) * SPACING[1]
    xx, yy = np.meshgrid(x, y, indexing="ij")
    body = (xx / 160) ** 2 + (yy / 120) ** 2 <= 1
    liver = ((xx - 50) / 70) ** 2 + ((yy + 10) / 60) ** 2 <= 1
    spine = (xx / 18) ** 2 + ((yy - 80) / 18) ** 2 <= 1
    data = np.empty(SHAPE, dtype=np.int16, order="F")
    for k in range(SHAPE[2]):
        sl = np.full(SHAPE[:2], -1000.0, dtype=np.float32)
        sl[body] = 40.0
        if 50 < k < 220:
            sl[liver] = 110.0
        sl[spine] = 700.0
        sl += rng.normal(0, 20, size=SHAPE[:2]).astype(np.float32)
        data[:, :, k] = np.round(sl).astype(np.int16)
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = [
        SHAPE[0] * SPACING[0] / 2,
        SHAPE[1] * SPACING[1] / 2,
        -SHAPE[2] * SPACING[2] / 2,
    ]
    nib.save(nib.Nifti1Image(data, affine), str(path))


# ---------------------------------------------------------------------------------------------
# forward methods: each returns a (setup, run) pair; run(path) -> output array (C, X, Y, Z)


def medimg_forward() -> Callable[[Path], Any]:
    from medimg.keys import Keys
    from medimg.transforms import PreprocessConfig, preprocessing_for

    cfg = PreprocessConfig(
        target_spacing_mm=(TARGET,) * 3,
        image_interp="linear",
        lowres_axis_interp="linear",
        hu_window=HU,
    )
    chain = preprocessing_for("CT", cfg)
    return lambda path: chain({Keys.IMAGE.value: str(path)})["image"]


def monai_chain() -> Any:
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )

    return Compose(
        [
            LoadImaged("image", reader="NibabelReader"),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(TARGET,) * 3, mode="bilinear"),
            ScaleIntensityRanged(
                "image", a_min=HU[0], a_max=HU[1], b_min=0.0, b_max=1.0, clip=True
            ),
        ]
    )


def monai_forward() -> Callable[[Path], Any]:
    chain = monai_chain()
    return lambda path: chain({"image": str(path)})["image"]


def torchio_forward() -> Callable[[Path], Any]:
    import torchio as tio

    chain = tio.Compose(
        [
            tio.ToCanonical(),
            tio.Resample(TARGET, image_interpolation="linear"),
            tio.Clamp(out_min=HU[0], out_max=HU[1]),
            tio.RescaleIntensity(out_min_max=(0, 1), in_min_max=HU),
        ]
    )

    def run(path: Path) -> Any:
        subject = tio.Subject(image=tio.ScalarImage(path))
        return chain(subject)["image"].data

    return run


def sitk_forward() -> Callable[[Path], Any]:
    import SimpleITK as sitk

    def run(path: Path) -> Any:
        img = sitk.ReadImage(str(path), sitk.sitkFloat32)
        size = [
            round((n - 1) * s / TARGET) + 1
            for n, s in zip(img.GetSize(), img.GetSpacing(), strict=True)
        ]
        out = sitk.Resample(
            img,
            size,
            sitk.Transform(),
            sitk.sitkLinear,
            img.GetOrigin(),
            (TARGET,) * 3,
            img.GetDirection(),
            0.0,
            sitk.sitkFloat32,
        )
        out = sitk.IntensityWindowing(out, HU[0], HU[1], 0.0, 1.0)
        return sitk.GetArrayViewFromImage(out)

    return run


# ---------------------------------------------------------------------------------------------
# back methods: setup (untimed) returns run() -> output


def _probabilities(shape: tuple[int, ...]) -> Any:
    import torch

    rng = np.random.default_rng(1)
    fg = torch.from_numpy(rng.random(shape, dtype=np.float32))
    return torch.stack([1 - fg, fg])


def medimg_back(slabs: bool) -> Callable[[], Any]:
    from medimg.keys import Keys
    from medimg.transforms import PreprocessConfig, preprocessing_for, to_source_grid

    def setup(path: Path) -> Callable[[], Any]:
        cfg = PreprocessConfig(target_spacing_mm=(TARGET,) * 3, image_interp="linear", hu_window=HU)
        sample = preprocessing_for("CT", cfg)({Keys.IMAGE.value: str(path)})
        record = sample[Keys.RECORD]
        prob = _probabilities(tuple(sample["image"].shape[1:]))
        del sample
        if not slabs:
            return lambda: to_source_grid(prob, record)

        def run() -> Any:
            total = 0.0
            for z0 in range(0, SHAPE[2], SLAB):
                part = to_source_grid(prob, record, z_range=(z0, min(z0 + SLAB, SHAPE[2])))
                total += float(part[1, ::64, ::64].sum())  # a consumer writing the slab out
            return total

        return run

    return setup  # type: ignore[return-value]


def monai_back() -> Callable[[Path], Callable[[], Any]]:
    from monai.data import MetaTensor

    def setup(path: Path) -> Callable[[], Any]:
        chain = monai_chain()
        out = chain({"image": str(path)})["image"]
        prob = _probabilities(tuple(out.shape[1:]))
        affine, meta, ops = out.affine, dict(out.meta), list(out.applied_operations)
        del out

        def run() -> Any:
            # inverse() consumes the trace: give each repeat a fresh one (no voxel copy)
            pred = MetaTensor(prob, affine=affine.clone(), meta=copy.deepcopy(meta))
            pred.applied_operations = copy.deepcopy(ops)
            return chain.inverse({"image": pred})["image"]

        return run

    return setup


FORWARD = {
    "medimg": medimg_forward,
    "monai": monai_forward,
    "torchio": torchio_forward,
    "sitk": sitk_forward,
}
BACK = {
    "medimg-back": lambda: medimg_back(False),
    "medimg-back-slabs": lambda: medimg_back(True),
    "monai-back": monai_back,
}


def worker(
    method: str, path: Path, repeats: int, save: Path | None, threads: int
) -> dict[str, Any]:
    """Run one method ``repeats`` times in this process; return times and peak memory."""
    import torch

    torch.set_num_threads(threads)
    times = []
    out: Any = None
    if method in FORWARD:
        run = FORWARD[method]()
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = run(path)
            times.append(time.perf_counter() - t0)
            if save is None:
                out = None
    else:
        job = BACK[method]()(path)
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = job()
            times.append(time.perf_counter() - t0)
            out = None
    if save is not None and out is not None:
        np.save(save, np.asarray(out, dtype=np.float32))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {
        "method": method,
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_gb": peak_gb,
    }


def _spawn(
    method: str, path: Path, repeats: int, save: Path | None, threads: int
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--file",
        str(path),
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ]
    if save is not None:
        cmd += ["--save", str(save)]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        return {"method": method, "error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _compare(a_path: Path, b_path: Path) -> str:
    a, b = np.load(a_path), np.load(b_path)
    a = a.reshape(b.shape) if a.size == b.size else a
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} vs {b.shape}"
    diff = np.abs(a - b)
    big = (diff > 1e-3).mean()
    return f"max |diff| {diff.max():.2e}, mean {diff.mean():.2e}, voxels > 1e-3: {big:.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep-dir", type=Path, default=None, help="reuse/keep the test file here")
    parser.add_argument("--methods", default=",".join([*FORWARD, *BACK]))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per method (torch, OpenMP, ITK); same for all",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.file, args.repeats, args.save, args.threads)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "ct_512x512x300.nii.gz"
        if not path.exists():
            print(f"writing {path} ...", flush=True)
            make_ct(path)
        results = {}
        for method in args.methods.split(","):
            save = folder / f"{method}.npy" if method in ("medimg", "monai") else None
            results[method] = _spawn(method, path, args.repeats, save, args.threads)
            print(json.dumps(results[method]), flush=True)
        _report(results, folder)
    return 0


def _report(results: dict[str, dict[str, Any]], folder: Path) -> None:
    print("\nmethod               median s   peak GB   time vs monai   memory vs monai")
    ref = results.get("monai", {})
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<20} failed: {r['error']}")
            continue
        base = results.get("monai-back", {}) if "back" in name else ref
        t_ratio = r["median_s"] / base["median_s"] if "median_s" in base else float("nan")
        m_ratio = r["peak_gb"] / base["peak_gb"] if "peak_gb" in base else float("nan")
        print(
            f"{name:<20} {r['median_s']:8.2f}   {r['peak_gb']:7.2f}   "
            f"{t_ratio:13.3f}   {m_ratio:15.3f}"
        )
    for name in ("medimg-back", "medimg-back-slabs"):
        if "median_s" in results.get(name, {}):
            ratio = results[name]["median_s"] / NNUNET_EXPORT_S
            print(
                f"{name} vs nnU-Net v2 export ({NNUNET_EXPORT_S} s, reference figure): {ratio:.3f}"
            )
    if (folder / "medimg.npy").exists() and (folder / "monai.npy").exists():
        print("medimg vs monai output:", _compare(folder / "medimg.npy", folder / "monai.npy"))


if __name__ == "__main__":
    sys.exit(main())
