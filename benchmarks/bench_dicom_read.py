"""Read a 300-slice 512x512 synthetic CT series: medimg vs SimpleITK's ImageSeriesReader.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_dicom_read.py [--slices 300] [--repeats 3]``

Each read runs in a fresh subprocess (readers alternate, so machine noise hits both alike).
Time is the wall time of the read call alone (imports excluded); peak memory is the child's
peak resident set size (``VmHWM`` in ``/proc/self/status``) minus its resident size just before
the read, i.e. what reading added. (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not used:
on Linux a child started by fork+exec inherits the parent's high-water mark in it.)
Medians over the repeats are printed, with medimg / SimpleITK ratios (target: time <= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, sys, time
from pathlib import Path

def status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

reader, folder = sys.argv[1], sys.argv[2]
if reader == "medimg":
    from medimg.io.dicom import load_dicom_series
    import pydicom, numpy  # imported before timing, like SimpleITK below
else:
    import SimpleITK as sitk
before = status_kib("VmRSS")
start = time.perf_counter()
if reader == "medimg":
    array = load_dicom_series(folder).array[0]  # (X, Y, Z)
else:
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(folder))
    image = r.Execute()
elapsed = time.perf_counter() - start
peak = status_kib("VmHWM")  # this process's own high-water mark (ru_maxrss keeps the parent's)
if reader != "medimg":
    array = sitk.GetArrayViewFromImage(image).transpose()  # (z, y, x) -> (X, Y, Z)
shape, checksum = list(array.shape), int((array[::7, ::5, ::3].astype("int64") * 31).sum())
print(json.dumps({"seconds": elapsed, "peak_mib": (peak - before) / 1024,
                  "shape": list(shape), "checksum": checksum}))
"""


def _write_series(folder: Path, n_slices: int) -> None:
    import numpy as np

    from medimg.synthetic import grid_affine
    from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

    rng = np.random.default_rng(0)
    shape = (512, 512, n_slices)
    values = rng.integers(-1000, 1500, size=shape, dtype=np.int16)
    affine = grid_affine(shape, (0.7, 0.7, 1.0), axcodes="LPS")
    spec = DicomSeriesSpec(modality="CT", rescale_intercept=-1024.0)
    write_dicom_series(values, affine, folder, spec, shuffle_seed=1)


def _run(reader: str, folder: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, reader, str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ct"
        _write_series(folder, args.slices)
        results: dict[str, list[dict[str, float]]] = {"medimg": [], "simpleitk": []}
        for _ in range(args.repeats):
            for reader in results:
                results[reader].append(_run(reader, folder))
    checks = {r: (v[0]["shape"], v[0]["checksum"]) for r, v in results.items()}
    if checks["medimg"] != checks["simpleitk"]:
        raise SystemExit(f"readers disagree: {checks}")
    print(f"series: 512x512x{args.slices} int16 CT, {args.repeats} repeats, same voxels: yes")
    medians = {}
    for reader, runs in results.items():
        t = statistics.median(r["seconds"] for r in runs)
        m = statistics.median(r["peak_mib"] for r in runs)
        medians[reader] = (t, m)
        times = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(f"{reader:10s} time {t:6.2f} s (runs {times})  peak memory +{m:7.1f} MiB")
    (t_m, m_m), (t_s, m_s) = medians["medimg"], medians["simpleitk"]
    print(
        f"ratio medimg/SimpleITK: time {t_m / t_s:.2f}x (target <= 1.5x), memory {m_m / m_s:.2f}x"
    )


if __name__ == "__main__":
    main()
