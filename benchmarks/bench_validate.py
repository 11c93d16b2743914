"""Time `medimg validate` on a 200-case synthetic CT manifest against a naive MONAI check.

Run: OMP_NUM_THREADS=1 python benchmarks/bench_validate.py [--cases 200] [--repeats 3]

medimg (``load_manifest(path)``) checks: the JSON itself (duplicate keys, NaN, nesting), schema
(unknown keys, types, modality, duplicate ids, empty splits, declared labels/classes, channel
counts), paths inside the manifest's folder (links resolved), files exist and headers parse,
training's load policies (shear, 2D/3D by the reader's rule, dtype, decode limit, finite voxels:
the synthetic CT images are float32, so every image's voxels are read), every ``.nii.gz`` body's
gzip CRC (one streaming pass), image/label grids agree within 0.001 mm (shape and affine), and
label values declared (label maps' voxels). "without label values" skips only the last.

Peer (what a MONAI user writes without medimg): ``monai.data.load_decathlon_datalist`` on the
same data as an MSD ``dataset.json``, then ``nibabel.load`` of each image and label header and a
shape comparison. It checks that the keys ``image``/``label`` exist, files exist and parse,
and shapes match; it does not check unknown keys, modality, duplicate ids, affines (an image
and label shifted by 5 mm pass), label values, channel counts or 2D/3D. A second peer line adds
reading each label map and ``numpy.unique`` so the label-value check is compared like for like.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peer(msd_json: Path, *, label_values: bool) -> None:
    from monai.data import load_decathlon_datalist

    items = load_decathlon_datalist(str(msd_json), is_segmentation=True, data_list_key="training")
    for item in items:
        image, label = nib.load(item["image"]), nib.load(item["label"])
        if image.shape != label.shape:
            raise ValueError(f"{item['label']}: shape {label.shape} != {image.shape}")
        if label_values:
            values = np.unique(np.asarray(label.dataobj))
            if not set(values.tolist()) <= {0, 1, 2, 3}:
                raise ValueError(f"{item['label']}: undeclared values {values}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from medimg.manifests import Tolerances, load_manifest
    from medimg.synthetic.datasets import write_ct_segmentation_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifest = write_ct_segmentation_dataset(tmp, args.cases, seed=0)
        print(f"generated {args.cases} cases in {time.perf_counter() - start:.1f} s")
        record = json.loads(manifest.read_text())
        cases = record["training"] + record.get("test", [])
        msd = Path(tmp) / "msd_dataset.json"
        msd.write_text(
            json.dumps({"training": [{"image": c["image"], "label": c["label"]} for c in cases]})
        )
        load_manifest(manifest)  # warm file caches once, as a user's second run would be
        _peer(msd, label_values=True)  # and import MONAI outside the timings

        full = _median_time(lambda: load_manifest(manifest), args.repeats)
        headers = _median_time(
            lambda: load_manifest(manifest, tolerances=Tolerances(check_label_values=False)),
            args.repeats,
        )
        schema = _median_time(lambda: load_manifest(manifest, check_files=False), args.repeats)
        peer = _median_time(lambda: _peer(msd, label_values=False), args.repeats)
        peer_values = _median_time(lambda: _peer(msd, label_values=True), args.repeats)

    n = args.cases
    print(f"median of {args.repeats} runs, {n} cases (image + label each):")
    print(f"  medimg validate, all checks           {full:7.3f} s  ({1000 * full / n:.1f} ms/case)")
    print(f"  medimg validate, without label values {headers:7.3f} s")
    print(f"  medimg validate, schema only          {schema:7.3f} s")
    print(f"  MONAI datalist + nibabel headers      {peer:7.3f} s")
    print(f"  MONAI datalist + headers + np.unique  {peer_values:7.3f} s")
    print(f"  ratio all checks / peer with values   {full / peer_values:7.2f}")
    print(f"  ratio no label values / peer headers  {headers / peer:7.2f}")
    print(f"  under 10 s: {'yes' if full < 10 else 'NO'}")


if __name__ == "__main__":
    main()
