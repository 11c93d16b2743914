"""SEG on an enhanced multi-frame source, and FRACTIONAL SEGs read as label maps.

The source is a 6 x 5 x 4 CT on an oblique, anisotropic (0.8, 0.9, 2.5 mm), LPS-stored grid,
converted by highdicom into one Legacy Converted Enhanced CT file whose frames are then
permuted by ``PERMUTATION``, so file frame n is not stored slice n - 1: a writer that took file
frame k for stored slice k, or numbered frames from 0, refers to the wrong frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medimg.io import load_volume, read_image, read_image_header, save_volume
from medimg.io.dicom._seg_reference import quiet_highdicom, reference_series
from medimg.io.dicom.seg import SegOptions, write_seg
from medimg.synthetic import grid_affine
from medimg.synthetic.dicom import DicomSeriesSpec, write_dicom_series

SHAPE = (6, 5, 4)
AFFINE = grid_affine(SHAPE, (0.8, 0.9, 2.5), axcodes="LPS", rotation_deg=(10.0, -6.0, 20.0))
PERMUTATION = [2, 0, 3, 1]


@pytest.fixture
def single(tmp_path: Path) -> Path:
    values = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) - 60
    write_dicom_series(values, AFFINE, tmp_path / "ct", DicomSeriesSpec(seed=3), shuffle_seed=2)
    return tmp_path / "ct"


@pytest.fixture
def enhanced(single: Path, tmp_path: Path) -> Path:
    """``single`` as one enhanced multi-frame file, its frames permuted."""
    sources = [pydicom.dcmread(p) for p in sorted(single.iterdir())]
    with quiet_highdicom():  # one INFO line per copied module
        mf = hd.legacy.LegacyConvertedEnhancedCTImage(
            legacy_datasets=sources, series_instance_uid=hd.UID(), series_number=7,
            sop_instance_uid=hd.UID(), instance_number=1,
        )  # fmt: skip
    frames = mf.pixel_array
    mf.PixelData = np.ascontiguousarray(frames[PERMUTATION]).tobytes()
    per_frame = list(mf.PerFrameFunctionalGroupsSequence)
    mf.PerFrameFunctionalGroupsSequence = [per_frame[i] for i in PERMUTATION]
    (tmp_path / "mf").mkdir()
    mf.save_as(tmp_path / "mf" / "ct.dcm")
    return tmp_path / "mf"


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:3, 1:4, 0:2] = 1  # liver on stored slices 0 and 1
    labels[4:6, 0:2, 3] = 2  # spleen on stored slice 3 only
    return labels


def _slice_of(position_lps: list[float]) -> int:
    ras = np.array(position_lps, dtype=np.float64) * (-1, -1, 1)
    return round(float((np.linalg.inv(AFFINE) @ [*ras, 1.0])[2]))


@pytest.mark.parametrize("kind", ["binary", "labelmap"])
def test_frames_of_an_enhanced_source_refer_to_their_frame_numbers(
    kind: str, single: Path, enhanced: Path, tmp_path: Path
) -> None:
    volume = read_image(enhanced)
    np.testing.assert_array_equal(volume.array, read_image(single).array)  # the same grid
    np.testing.assert_allclose(volume.affine, read_image(single).affine, atol=1e-5)
    labels = _labels()
    path = save_volume(labels[None], tmp_path / "l.nii.gz", like=read_image_header(enhanced))
    written = write_seg(path, enhanced, tmp_path / "s.dcm", names={1: "liver", 2: "spleen"},
                        options=SegOptions(segmentation_type=kind))  # fmt: skip
    source = pydicom.dcmread(enhanced / "ct.dcm")
    file_frames = source.PerFrameFunctionalGroupsSequence
    stored = [_slice_of(f.PlanePositionSequence[0].ImagePositionPatient) for f in file_frames]
    assert stored != sorted(stored)  # file frame n is not stored slice n - 1
    ds = pydicom.dcmread(written.path)
    (instance,) = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert instance.ReferencedSOPInstanceUID == source.SOPInstanceUID
    pixels = ds.pixel_array
    seen = set()
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        number = int(ref.ReferencedFrameNumber)  # 1-based file frame
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        in_file = file_frames[number - 1].PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(position, [float(v) for v in in_file], atol=1e-4)
        k = _slice_of(position)
        if kind == "binary":
            segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            np.testing.assert_array_equal(pixels[i].T, labels[:, :, k] == segment)
        else:
            np.testing.assert_array_equal(pixels[i].T, labels[:, :, k])
        seen.add(number)
    assert seen == {1, 2, 3, 4}
    back = load_volume(written.path)
    assert back.source.same_grid(read_image_header(enhanced))
    np.testing.assert_array_equal(back.array[0], labels)


def _fractional(folder: Path, out: Path, fractions: np.ndarray, maximum: int) -> Path:
    """A FRACTIONAL SEG of ``fractions`` ((X, Y, Z, segments) in [0, 1]) written by highdicom."""
    from pydicom.sr.codedict import codes

    ref = reference_series(folder)
    frames = np.ascontiguousarray(fractions.transpose(2, 1, 0, 3)).astype(np.float32)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=name,
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=organ,
            algorithm_type="MANUAL",
        )
        for n, name, organ in ((1, "liver", codes.SCT.Liver), (2, "spleen", codes.SCT.Spleen))
    ]
    seg = hd.seg.Segmentation(
        source_images=ref.datasets, pixel_array=frames, segmentation_type="FRACTIONAL",
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1",
        max_fractional_value=maximum, omit_empty_frames=False,
    )  # fmt: skip
    seg.save_as(out)
    return out


@pytest.mark.parametrize("maximum", [255, 200])
def test_a_fractional_seg_reads_from_half_its_maximum(
    maximum: int, single: Path, tmp_path: Path
) -> None:
    inside = math.ceil(maximum / 2) / maximum  # the smallest stored value >= half the maximum
    below = (math.ceil(maximum / 2) - 1) / maximum
    fractions = np.zeros((*SHAPE, 2), dtype=np.float64)
    fractions[1:3, 1:4, 0:2, 0] = 1.0
    fractions[0, 0, 0, 0] = inside  # liver, just
    fractions[5, 4, 3, 0] = below  # not liver, just
    fractions[4:6, 0:2, 3, 1] = 1.0
    fractions[1, 1, 0, 1] = below  # spleen under the threshold inside the liver: no overlap
    fractions[3, 0, 2, 1] = inside  # spleen, just
    path = _fractional(single, tmp_path / "f.dcm", fractions, maximum)
    assert pydicom.dcmread(path).SegmentationType == "FRACTIONAL"
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[1:3, 1:4, 0:2] = 1
    expected[0, 0, 0] = 1
    expected[4:6, 0:2, 3] = 2
    expected[3, 0, 2] = 2
    back = load_volume(path)
    assert back.source.same_grid(read_image_header(single))
    np.testing.assert_array_equal(back.array[0], expected)
