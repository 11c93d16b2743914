"""Sliding-window inference: medimg.inference vs monai.inferers.sliding_window_inference.

Run everything (long: tens of minutes on 2 cores)::

    OMP_NUM_THREADS=2 python benchmarks/bench_inference.py
    OMP_NUM_THREADS=2 python benchmarks/bench_inference.py --quick          # small sizes, minutes
    OMP_NUM_THREADS=2 python benchmarks/bench_inference.py --parts speed --size 256 --repeats 3

Parts (``--parts speed,memory,scale``):

* **speed**: MONAI's 3D UNet, channels (16, 32, 64, 128, 256), strides 2, ROI 96, Gaussian,
  overlap 0.5, trained for ``--train-steps`` steps on a synthetic CT phantom
  (``medimg.synthetic.ct_phantom``, 4 classes) so that its argmax means something. Then, on a
  ``--size``-cubed phantom: MONAI (``sw_batch_size=--monai-batch``, float32), MONAI inside
  ``torch.autocast("cpu", torch.bfloat16)`` (what a user writes by hand: the second peer, which
  the bfloat16 ratio is read against), medimg float32 and medimg bfloat16. Reports median time,
  peak memory, and argmax agreement with MONAI float32 and with medimg float32.
* **memory**: a ``--memory-size``-cubed volume (512 in the full run) through a small 14-class
  network: peak memory of MONAI vs medimg (input in memory, like MONAI) vs medimg reading the
  input slab by slab from an uncompressed ``.nii``. Output: uint8 labels for all three (MONAI's
  argmax is taken slab by slab so it does not add a full int64 map to MONAI's peak).
* **scale**: a ``--scale-shape`` volume (512x512x1700 in the full run: its float32 14-class map
  would need 25.0 GB) read from an uncompressed ``.nii`` and written to one, slab by slab.

medimg runs with its defaults: the planner's batch (2 windows on the CPU), channels-last,
the fast CPU layers (``InferenceConfig.fast_layers``), background prefetch; with
``--calibrate`` (the default) the planner measures batch, layout and layer forms on four of the
image's windows first (``InferenceConfig.calibrate``; cached per machine, so only the first
child pays; the plan, calibration included, is made before the clock starts and its time is
printed as ``plan``).

Every measurement runs in its own fresh subprocess. Time is the wall time of the inference
call alone (imports, model building and input loading excluded). Peak memory is the child's
``VmHWM`` (peak resident set size, which ``exec`` resets) from ``/proc/self/status``; "added"
is that minus the resident size just before the call. ``ru_maxrss`` is not used because on
Linux a child can report its parent's high-water mark there. medimg's planner prediction is
printed next to the measured figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GIB = 1024**3
UNET_CHANNELS = (16, 32, 64, 128, 256)
ROI = (96, 96, 96)


# ----------------------------------------------------------------------------- child side


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _build_net(spec: dict[str, Any]) -> Any:
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    if spec["net"] == "unet":
        net = UNet(3, 1, spec["classes"], UNET_CHANNELS, (2, 2, 2, 2), num_res_units=spec["res"])
    else:
        net = torch.nn.Sequential(
            torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 14, 1)
        )
    if spec.get("weights"):
        net.load_state_dict(torch.load(spec["weights"], weights_only=True))
    return net.eval()


def _load_input(spec: dict[str, Any]) -> Any:
    if spec["input"].endswith(".nii"):
        return spec["input"]  # medimg reads it slab by slab
    return np.load(spec["input"])


def _run_monai(net: Any, image: Any, spec: dict[str, Any]) -> np.ndarray:
    import contextlib

    import torch
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(image)[None]
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if spec.get("autocast")
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        out = sliding_window_inference(
            x, ROI, spec["monai_batch"], net, overlap=0.5, mode="gaussian", sigma_scale=0.125
        )
        labels = np.empty(out.shape[2:], dtype=np.uint8)
        for z in range(0, out.shape[-1], 16):  # slab-wise argmax: no full int64 map
            labels[..., z : z + 16] = out[0, ..., z : z + 16].argmax(0).numpy()
    return labels


def _plan_medimg(net: Any, image: Any, spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Config, source and plan (a calibration, when asked for, runs here: not timed)."""
    from medimg.inference import InferenceConfig, plan_inference
    from medimg.inference._stitch import window_grid
    from medimg.inference.sliding import _calibration_windows
    from medimg.inference.source import open_source

    cfg = InferenceConfig(
        roi_size_vox=ROI,
        batch_size=spec.get("batch"),
        precision=spec["precision"],
        overlap=spec.get("overlap", 0.5),
        calibrate=bool(spec.get("calibrate")),
    )
    source = open_source(image)
    grid = window_grid(source.shape[1:], cfg.roi_size_vox, cfg.overlap)
    plan = plan_inference(
        net,
        source.shape,
        cfg,
        result_in_memory=not spec.get("output_nii"),
        input_in_memory=source.random_access,
        windows=lambda: _calibration_windows(source, grid),
    )
    return cfg, source, plan


def _run_medimg(net: Any, planned: tuple[Any, Any, Any], spec: dict[str, Any]) -> Any:
    from medimg.inference import predict_to_nifti, predict_volume

    cfg, source, plan = planned
    if spec.get("output_nii"):
        predict_to_nifti(net, source, spec["output_nii"], cfg, affine=np.eye(4), overwrite=True)
        return None
    return predict_volume(net, source, cfg, plan=plan)


def child(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    net = _build_net(spec)
    image = _load_input(spec)
    plan, planned, plan_s = None, None, 0.0
    if spec["method"] == "medimg":
        t0 = time.perf_counter()
        planned = _plan_medimg(net, image, spec)
        plan, plan_s = planned[2], time.perf_counter() - t0
    before = _kib("VmRSS")
    start = time.perf_counter()
    if planned is None:
        labels = _run_monai(net, image, spec)
    else:
        labels = _run_medimg(net, planned, spec)
    seconds = time.perf_counter() - start
    if labels is not None and spec.get("labels_out"):
        np.save(spec["labels_out"], labels)
    result = {
        "seconds": seconds,
        "peak": _kib("VmHWM") * 1024,
        "added": (_kib("VmHWM") - before) * 1024,
        "predicted": None if plan is None else plan.memory.host_bytes,
        "batch": spec.get("monai_batch") if plan is None else plan.batch_size,
        "plan_s": plan_s,
        "settings": None if plan is None else _settings(plan),
    }
    print(json.dumps(result))


def _settings(plan: Any) -> str:
    dtype = str(plan.compute_dtype).removeprefix("torch.")
    layout = "cl" if plan.channels_last else "ncdhw"
    layers = "own" if not plan.fast_layers else ("fast-f32" if plan.float32_layers else "fast")
    return f"{dtype} {layout} {layers}{' calibrated' if plan.calibration else ''}"


# ---------------------------------------------------------------------------- parent side


def measure(spec: dict[str, Any], repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"child failed ({spec['method']}):\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    keys = ("seconds", "peak", "added")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["predicted"] = runs[0]["predicted"]
    out["batch"] = runs[0]["batch"]
    out["plan_s"] = [round(r["plan_s"], 1) for r in runs]
    out["settings"] = runs[-1]["settings"]
    out["all_seconds"] = [round(r["seconds"], 1) for r in runs]
    return out


def _normalised_phantom(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from medimg.synthetic import ct_phantom

    spacing = 300.0 / size  # a 300 mm field of view at every size
    ph = ct_phantom((size, size, size), (spacing, spacing, spacing), seed=seed)
    image = np.clip((ph.image.array + 1000.0) / 1400.0, 0.0, 1.5).astype(np.float32)
    return image, ph.label.array[0]


def train_unet(size: int, steps: int, res: int, path: Path) -> float:
    """Train the UNet a few steps on random 64-cubed crops of a phantom; return the last loss."""
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    image, label = _normalised_phantom(size, seed=1)
    net = UNet(3, 1, 4, UNET_CHANNELS, (2, 2, 2, 2), num_res_units=res)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = np.random.default_rng(0)
    crop = min(64, size)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        x0, y0, z0 = (int(rng.integers(0, size - crop + 1)) for _ in range(3))
        sl = np.s_[:, x0 : x0 + crop, y0 : y0 + crop, z0 : z0 + crop]
        x = torch.from_numpy(np.ascontiguousarray(image[sl]))[None]
        y = torch.from_numpy(np.ascontiguousarray(label[None][sl]).astype(np.int64))[None]
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), path)
    return float(loss.detach())


def _row(name: str, r: dict[str, Any], ref: dict[str, Any] | None) -> str:
    ratio = ""
    if ref is not None:
        ratio = f"  time x{r['seconds'] / ref['seconds']:.2f}  peak x{r['peak'] / ref['peak']:.2f}"
    pred = "" if r["predicted"] is None else f"  (plan: +{r['predicted'] / GIB:.2f})"
    how = "" if not r.get("settings") else f"  [{r['settings']}; plan {r['plan_s']} s]"
    return (
        f"  {name:<34} {r['seconds']:8.1f} s {r['all_seconds']}  batch {r['batch']}"
        f"  peak {r['peak'] / GIB:6.2f} GiB"
        f"  added {r['added'] / GIB:5.2f}{pred}{ratio}{how}"
    )


def part_speed(args: argparse.Namespace, work: Path) -> None:
    import torch

    size = args.size
    print(f"\n== speed: UNet {UNET_CHANNELS} ROI 96 on {size}^3, {args.threads} threads ==")
    weights = work / "unet.pt"
    t0 = time.perf_counter()
    loss = train_unet(min(size, 128), args.train_steps, args.res_units, weights)
    print(
        f"  trained {args.train_steps} steps in {time.perf_counter() - t0:.0f} s, loss {loss:.3f}"
    )
    image, _ = _normalised_phantom(size, seed=2)
    np.save(work / "speed.npy", image)
    base = {
        "net": "unet",
        "classes": 4,
        "res": args.res_units,
        "weights": str(weights),
        "threads": args.threads,
        "input": str(work / "speed.npy"),
    }
    runs = {
        f"monai float32 (sw_batch_size={args.monai_batch})": {
            **base,
            "method": "monai",
            "monai_batch": args.monai_batch,
        },
        **(
            {
                f"monai + autocast(bfloat16) (sw_batch_size={args.monai_batch})": {
                    **base,
                    "method": "monai",
                    "monai_batch": args.monai_batch,
                    "autocast": True,
                }
            }
            if args.monai_autocast
            else {}
        ),
        **{
            f"medimg {p}": {**base, "method": "medimg", "precision": p, "calibrate": args.calibrate}
            for p in args.precisions.split(",")
        },
    }
    results, labels = {}, {}
    for i, (name, spec) in enumerate(runs.items()):
        spec["labels_out"] = str(work / f"labels{i}.npy")
        results[name] = measure(spec, args.repeats)
        labels[name] = np.load(spec["labels_out"])
    ref_name = next(iter(runs))
    for name, r in results.items():
        print(_row(name, r, None if name == ref_name else results[ref_name]))
    peer = next((n for n in runs if "autocast" in n), None)
    for name in [n for n in runs if n.startswith("medimg") and n != "medimg float32"]:
        if peer is not None:
            r, p = results[name], results[peer]
            print(f"  {name} vs {peer}: time x{r['seconds'] / p['seconds']:.2f}")
    for name in list(runs)[1:]:
        agree = float((labels[name] == labels[ref_name]).mean())
        print(f"  argmax agreement {name} vs MONAI float32: {agree * 100:.4f}%")
        if "medimg float32" in labels and name != "medimg float32":
            own = float((labels[name] == labels["medimg float32"]).mean())
            print(f"  argmax agreement {name} vs medimg float32: {own * 100:.4f}%")
    classes = np.unique(labels[ref_name])
    print(
        f"  classes predicted by MONAI: {classes.tolist()}; bf16 autocast on this CPU: "
        f"{'native' if _native_bf16() else 'emulated (no AVX512-BF16/AMX)'}; torch "
        f"{torch.__version__}"
    )


def _native_bf16() -> bool:
    from medimg.inference._runtime import cpu_has_native_bf16

    return cpu_has_native_bf16()


def part_memory(args: argparse.Namespace, work: Path) -> None:
    import nibabel as nib

    n = args.memory_size
    print(f"\n== memory: {n}^3, small 14-class network, ROI 96, labels out ==")
    image = np.random.default_rng(0).normal(size=(1, n, n, n)).astype(np.float32)
    np.save(work / "mem.npy", image)
    nib.save(nib.Nifti1Image(image[0], np.eye(4)), work / "mem.nii")
    del image
    base = {"net": "small", "threads": args.threads, "input": str(work / "mem.npy")}
    runs = {
        "monai (input in memory)": {**base, "method": "monai", "monai_batch": 4},
        "medimg (input in memory)": {**base, "method": "medimg", "precision": "float32"},
        "medimg (input read from .nii)": {
            **base,
            "method": "medimg",
            "precision": "float32",
            "input": str(work / "mem.nii"),
        },
    }
    results = {name: measure(spec, 1) for name, spec in runs.items()}
    ref = results["monai (input in memory)"]
    for name, r in results.items():
        print(_row(name, r, None if r is ref else ref))


def part_scale(args: argparse.Namespace, work: Path) -> None:
    import nibabel as nib

    shape = tuple(int(v) for v in args.scale_shape.split("x"))
    class_map = 14 * 4 * int(np.prod(shape))
    print(f"\n== scale: {shape} int16 .nii in, labels .nii out, small 14-class network ==")
    print(f"  the float32 class map would need {class_map / 1e9:.1f} GB")
    print(f"  overlap {args.scale_overlap}")
    path = work / "big.nii"
    img = nib.Nifti1Image(np.zeros((*shape[:2], 1), np.int16), np.eye(4))
    img.header.set_data_shape(shape)
    with open(path, "wb") as f:  # written plane by plane: the volume never sits in memory
        f.write(img.header.binaryblock + b"\x00" * 4)
        rng = np.random.default_rng(0)
        for _ in range(shape[2]):
            f.write(rng.integers(-1000, 1000, size=shape[:2], dtype=np.int16).tobytes("F"))
    spec = {
        "net": "small",
        "threads": args.threads,
        "input": str(path),
        "method": "medimg",
        "overlap": args.scale_overlap,
        "precision": "float32",
        "output_nii": str(work / "big_labels.nii"),
    }
    r = measure(spec, 1)
    print(_row("medimg .nii -> .nii", r, None))
    out = nib.load(work / "big_labels.nii")
    print(
        f"  output {out.shape} {out.get_data_dtype()}; peak {r['peak'] / 1e9:.2f} GB "
        f"(target < 4 GB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--parts", default="speed,memory,scale")
    parser.add_argument("--size", type=int, default=256, help="speed: volume edge (voxels)")
    parser.add_argument("--memory-size", type=int, default=512)
    parser.add_argument("--scale-shape", default="512x512x1700")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="float32,bfloat16", help="speed: medimg runs")
    parser.add_argument("--scale-overlap", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--res-units", type=int, default=0, help="UNet num_res_units")
    parser.add_argument("--monai-batch", type=int, default=1, help="MONAI sw_batch_size")
    parser.add_argument(
        "--no-monai-autocast",
        dest="monai_autocast",
        action="store_false",
        help="speed: leave out the MONAI + torch.autocast(bfloat16) peer",
    )
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="speed: medimg with the planner's fixed choices instead of a calibration",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    if args.quick:
        args.size, args.memory_size, args.scale_shape = 128, 192, "192x192x400"
        args.repeats, args.train_steps = 1, 20
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for part in args.parts.split(","):
            {"speed": part_speed, "memory": part_memory, "scale": part_scale}[part](args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
