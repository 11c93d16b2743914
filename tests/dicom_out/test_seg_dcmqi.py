"""dcmqi's SEG files (QIICR/dcmqi data/segmentations @ b6137d9ee8cf, BSD-3-style) read
identically to its NRRD label maps on the 3-slice GE CT, and a SEG medimg writes from those
NRRDs on that CT reads back identically (realdata; skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimg.errors import ImageReadError
from medimg.io import load_volume, read_image, read_image_header
from medimg.io.dicom.seg import read_seg_segments, seg_info, write_seg


@pytest.fixture
def dcmqi(realdata: Path) -> Path:
    return realdata / "dicom" / "dcmqi"


def test_liver_seg_reads_as_its_nrrd_on_the_ct_grid(dcmqi: Path) -> None:
    seg = load_volume(dcmqi / "liver.dcm")
    nrrd = load_volume(dcmqi / "liver_seg.nrrd")
    assert seg.source.same_grid(read_image_header(dcmqi / "ct-3slice"))
    np.testing.assert_array_equal(seg.array, nrrd.array)
    assert int((seg.array == 1).sum()) == 107_098  # the README's count
    assert [s.label for s in seg_info(dcmqi / "liver.dcm")] == ["Liver"]


def test_partial_overlaps_refused_as_label_map_and_read_per_segment(dcmqi: Path) -> None:
    with pytest.raises(ImageReadError, match=r"partial_overlaps\.dcm: its segments overlap "
                       r"\(1 'GREEN' and 2 'ORANGE' share 3017 voxels"):  # fmt: skip
        load_volume(dcmqi / "partial_overlaps.dcm")
    geometry, segments, masks = read_seg_segments(dcmqi / "partial_overlaps.dcm")
    assert geometry.same_grid(read_image_header(dcmqi / "ct-3slice"))
    assert [s.number for s in segments] == [1, 2, 3, 4, 5]
    # dcmqi's NRRDs: segments 1, 4, 5 (which do not overlap) in -1, segment 2 in -2, 3 in -3
    one, two, three = (
        load_volume(dcmqi / f"partial_overlaps-{k}.nrrd").array[0] for k in (1, 2, 3)
    )
    for number, nrrd in ((1, one), (4, one), (5, one), (2, two), (3, three)):
        np.testing.assert_array_equal(masks[number], nrrd == number)


def test_nrrd_labels_written_as_seg_on_the_ct_read_back_identically(
    dcmqi: Path, tmp_path: Path
) -> None:
    ct = read_image(dcmqi / "ct-3slice")
    for kind in ("binary", "labelmap"):
        from medimg.io.dicom.seg import SegOptions

        out = write_seg(dcmqi / "liver_spine_seg.nrrd", dcmqi / "ct-3slice", tmp_path / f"{kind}.dcm",
                        names={1: "liver", 2: "spine"}, options=SegOptions(segmentation_type=kind))  # fmt: skip
        back = load_volume(out.path)
        assert back.source.same_grid(ct.source)
        np.testing.assert_array_equal(back.array, load_volume(dcmqi / "liver_spine_seg.nrrd").array)
    assert out.voxels == {1: 107_098, 2: 12_439}
