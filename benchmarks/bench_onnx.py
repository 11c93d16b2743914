"""Sliding-window inference: onnxruntime (``--backend onnxruntime``) vs torch float32.

Both run medimg's own sliding window (:func:`medimg.inference.predict_volume`: Gaussian
weighting, overlap 0.5, the planner's batch) over the same synthetic CT phantom
(``medimg.synthetic.ct_phantom`` on a ``--size``-cubed grid, HU scaled by 1/1000); only the
network differs. torch runs medimg's float32 defaults (channels-last, the fast CPU layers);
onnxruntime runs the graph :func:`medimg.inference.onnx.export_onnx` writes, on the CPU
execution provider with as many intra-op threads as torch uses. The network is medimg's
segmentation network ``--network`` (random weights, seeded: time does not depend on them)
with ``--features`` channels at the first level and window ``--roi``.

Prints the median of ``--repeats`` timed runs each (after one warm-up run), the ratio
onnxruntime / torch, the largest logit difference on one window and the share of voxels whose
label agrees. Export time is printed apart (it is paid once per checkpoint: the cache).

    OMP_NUM_THREADS=2 python benchmarks/bench_onnx.py --size 96 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _timed(run: Any, repeats: int) -> tuple[float, Any]:
    result = run()  # warm-up: oneDNN and onnxruntime pick their kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="volume edge in voxels (cubed)")
    parser.add_argument("--roi", type=int, default=64, help="window edge in voxels (cubed)")
    parser.add_argument("--network", default="unet", help="unet, dynunet or segresnet")
    parser.add_argument("--features", type=int, default=16, help="first-level channels")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend")
    args = parser.parse_args(argv)

    import torch

    from medimg.inference import InferenceConfig, predict_volume
    from medimg.inference.onnx import OnnxNetwork, export_onnx, onnx_session
    from medimg.networks import NetworkConfig, build_network
    from medimg.synthetic.phantoms import ct_phantom

    roi = (args.roi,) * 3
    cfg = NetworkConfig(name=args.network, out_channels=4, roi_size_vox=roi,
                        base_features=args.features)  # fmt: skip
    torch.manual_seed(0)
    net = build_network(cfg).eval()
    phantom = ct_phantom((args.size,) * 3, (1.5, 1.5, 1.5), seed=0)
    image = torch.as_tensor(np.asarray(phantom.image.array, np.float32) / 1000.0)
    infer = InferenceConfig(roi_size_vox=roi, device="cpu", output="labels")

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = export_onnx(net, in_channels=1, spatial_dims=3, path=Path(folder) / "n.onnx",
                           sample_size_vox=roi)  # fmt: skip
        export_s = time.perf_counter() - start
        ort_net = OnnxNetwork(onnx_session(path), out_channels=4, dense=True)
        window = image[None, :, : args.roi, : args.roi, : args.roi].contiguous()
        with torch.no_grad():
            diff = float((ort_net(window) - net(window)).abs().max())
        t_torch, labels_torch = _timed(lambda: predict_volume(net, image, infer), args.repeats)
        t_ort, labels_ort = _timed(lambda: predict_volume(ort_net, image, infer), args.repeats)

    agree = float(np.mean(labels_torch == labels_ort))
    threads = torch.get_num_threads()
    print(f"{args.network} (features {args.features}), volume {args.size}^3, window "
          f"{args.roi}^3, {threads} threads, medians of {args.repeats}")  # fmt: skip
    print(f"  export to ONNX (once per checkpoint): {export_s:.2f} s")
    print(f"  torch float32:  {t_torch:.2f} s")
    print(f"  onnxruntime:    {t_ort:.2f} s   ratio onnxruntime / torch = {t_ort / t_torch:.2f}")
    print(f"  max |logit difference| on one window: {diff:.2e}; labels agree on {agree:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
