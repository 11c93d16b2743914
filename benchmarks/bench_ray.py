"""Batch prediction on Ray: one vs two local workers (one thread each) against local predict.

A seeded synthetic CT dataset (about ``--cases`` cases in its training split; the count is
printed) and a small DynUNet trained for one epoch; then the same split is predicted three
ways into fresh folders, each on one torch thread per process:

* ``local``: ``medimg.tasks.predict`` in this process (the peer);
* ``ray x1`` and ``ray x2``: a local Ray cluster of 1 and 2 CPUs, one case per task with
  ``num_cpus=1``, started before the clock runs (its start-up is printed apart).

Printed: wall time of each, Ray's overhead per case against local (``(ray x1 - local) / n``:
task dispatch, result transfer, and each worker's first import of torch, MONAI and the model),
and the scaling efficiency of two workers (``ray x1 / (2 * ray x2)``; 1.0 is perfect). Outputs
of the three runs are checked byte-identical.

Usage::

    python benchmarks/bench_ray.py [--cases 12] [--features 8]

Measured once (``--cases 8``: 9 cases, 32 x 32 x 16 windows) on the shared 2-core machine at a
load average of 7 (eight people's jobs), so the ratios say little about an idle machine:
local 3.37 s (0.375 s/case); ray x1 11.02 s (+10.7 s cluster start); ray x2 17.55 s (+9.0 s);
overhead +0.85 s per case, mostly each worker's first import of torch/MONAI and the model,
amortised over only 9 cases; scaling efficiency 0.31 -- two workers had no free core to run on.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=12, help="about this many cases predicted")
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--work-dir", type=Path, default=None, help="keep the runs here")
    return p.parse_args()


def _predict(manifest: Path, model: Path, out: Path, ray: object | None) -> float:
    from medimg.tasks import PredictConfig, predict, task_for

    cfg = PredictConfig(manifest=manifest, model_dir=model, out_dir=out, split="training",
                        device="cpu")  # fmt: skip
    start = time.perf_counter()
    result = predict(task_for("segmentation"), cfg, ray=ray)
    elapsed = time.perf_counter() - start
    assert all(c.status == "written" for c in result.cases), result.cases
    return elapsed


def _on_ray(manifest: Path, model: Path, out: Path, cpus: int) -> tuple[float, float]:
    import ray

    from medimg.inference.ray_batch import RayConfig

    start = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", configure_logging=False,
             log_to_driver=False)  # fmt: skip
    startup = time.perf_counter() - start
    try:
        return startup, _predict(manifest, model, out, RayConfig(num_cpus=1.0, local_cpus=cpus))
    finally:
        ray.shutdown()


def main() -> None:
    """Run the comparison and print the table."""
    import torch

    from medimg.cli import main as medimg
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    args = _args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        n_total = args.cases + max(1, (args.cases + 4) // 4)  # the last fifth is the test split
        manifest = write_ct_segmentation_dataset(work / "data", n_total, seed=0)
        run = work / "run"
        train = ["train", "--manifest", str(manifest), "--out", str(run), "--device", "cpu",
                 "--epochs", "1", "--features", str(args.features), "--roi", "32", "32", "16",
                 "--no-augment", "--seed", "0"]  # fmt: skip
        assert medimg(train) == 0
        model = run / "model"
        local = _predict(manifest, model, work / "local", None)
        up1, ray1 = _on_ray(manifest, model, work / "ray1", 1)
        up2, ray2 = _on_ray(manifest, model, work / "ray2", 2)
        n = len(list((work / "local").glob("*.nii.gz")))
        for name in (p.name for p in (work / "local").glob("*.nii.gz")):
            ref = (work / "local" / name).read_bytes()
            assert (work / "ray1" / name).read_bytes() == ref == (work / "ray2" / name).read_bytes()
    print(f"{n} cases, one torch thread per process, {torch.get_num_threads()} here")
    print(f"  local predict        {local:7.2f} s  ({local / n:.3f} s/case)")
    print(f"  ray x1 (+{up1:4.1f} s up) {ray1:7.2f} s  ratio to local {ray1 / local:.2f}")
    print(f"  ray x2 (+{up2:4.1f} s up) {ray2:7.2f} s  ratio to local {ray2 / local:.2f}")
    print(f"  Ray overhead per case vs local: {(ray1 - local) / n:+.3f} s")
    print(f"  scaling efficiency of 2 workers: {ray1 / (2 * ray2):.2f} (1.0 perfect)")


if __name__ == "__main__":
    main()
