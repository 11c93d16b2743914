"""Lesion-wise metrics of label maps and label components as world-mm boxes, hand-worked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg.errors import ConfigError, GeometryError
from medimg.evaluation import (
    ScanFindings,
    WorldBox,
    detections_from_label_map,
    froc,
    label_components,
    lesion_components,
    lesion_scores,
    lesions_from_label_map,
    summarize_lesions,
    world_box_to_voxel,
)

SHAPE = (7, 6, 5)  # non-cubic, so an axis swap changes the answers


def test_connectivity_6_18_26() -> None:
    # Three voxels: (1,1,1); (2,2,1) shares an edge with it; (3,3,2) shares a corner with (2,2,1).
    m = np.zeros(SHAPE, np.uint8)
    m[1, 1, 1] = m[2, 2, 1] = m[3, 3, 2] = 1
    assert label_components(m, connectivity=6)[1] == 3
    assert label_components(m, connectivity=18)[1] == 2
    components, n = label_components(m)  # 26 by default
    assert n == 1
    assert components.dtype == np.int32
    assert set(np.unique(components)) == {0, 1}


def test_label_components_of_one_label_only() -> None:
    m = np.zeros(SHAPE, np.uint8)
    m[0, 0, 0] = 1
    m[5, 5, 4] = 2
    assert label_components(m, label=2)[1] == 1
    assert label_components(m, label=3)[1] == 0


def _maps() -> tuple[np.ndarray, np.ndarray]:
    """Reference: lesions T1 (2x2x2 = 8 voxels at the origin corner) and T2 (1 voxel).

    Prediction: P1 overlapping T1 in 2 voxels (P1 has 2 voxels: IoU 2/8), P2 far from both.
    """
    ref = np.zeros(SHAPE, np.uint8)
    ref[0:2, 0:2, 0:2] = 1  # T1
    ref[5, 4, 3] = 1  # T2
    pred = np.zeros(SHAPE, np.uint8)
    pred[0, 0, 0:2] = 1  # P1: inside T1, 2 voxels
    pred[3, 5, 4] = 1  # P2: touches nothing (not adjacent to T2 at (5, 4, 3))
    return pred, ref


def test_lesion_scores_any_overlap() -> None:
    pred, ref = _maps()
    s = lesion_scores(pred, ref)
    # T1 detected (any overlap), T2 missed; P2 is a false positive: sensitivity 1/2.
    assert s.detected == (True, False)
    assert (s.n_true, s.n_predicted, s.n_detected, s.n_false_positive) == (2, 2, 1, 1)
    assert s.sensitivity == 0.5
    assert (s.label, s.connectivity, s.min_iou) == (1, 26, 0.0)


@pytest.mark.parametrize(
    ("min_iou", "detected", "false_positives"),
    [(0.2, (True, False), 1), (0.25, (False, False), 2), (0.3, (False, False), 2)],
)
def test_lesion_scores_iou_rule(
    min_iou: float, detected: tuple[bool, ...], false_positives: int
) -> None:
    # P1 vs T1: |T1 ∩ P1| = 2, |T1 ∪ P1| = 8, IoU 0.25; detected only when 0.25 > min_iou.
    # P1 then detects nothing, so it becomes a false positive too.
    pred, ref = _maps()
    s = lesion_scores(pred, ref, min_iou=min_iou)
    assert s.detected == detected
    assert s.n_false_positive == false_positives


def test_merged_component_detects_both_lesions() -> None:
    ref = np.zeros(SHAPE, np.uint8)
    ref[1, 1, 1] = ref[1, 1, 3] = 1  # two lesions 2 voxels apart along z
    pred = np.zeros(SHAPE, np.uint8)
    pred[1, 1, 1:4] = 1  # one bar over both
    s = lesion_scores(pred, ref)
    assert (s.detected, s.n_predicted, s.n_false_positive) == ((True, True), 1, 0)


def test_empty_maps_and_summary() -> None:
    empty = np.zeros(SHAPE, np.uint8)
    none = lesion_scores(empty, empty)
    assert (none.n_true, none.n_false_positive) == (0, 0)
    assert math.isnan(none.sensitivity)
    pred, ref = _maps()
    # pooled over 3 scans: 2 true lesions, 1 detected, 1 FP component -> 1/3 FP per scan
    summary = summarize_lesions([lesion_scores(pred, ref), none, none])
    assert (summary.n_scans, summary.n_true, summary.n_detected) == (3, 2, 1)
    assert summary.sensitivity == 0.5
    assert summary.false_positives_per_scan == pytest.approx(1 / 3)
    assert math.isnan(summarize_lesions([none]).sensitivity)


def test_lesion_errors() -> None:
    pred, ref = _maps()
    with pytest.raises(
        GeometryError, match=r"must have one shape, got \(7, 6, 5\) and \(7, 6, 4\)"
    ):
        lesion_scores(pred, ref[:, :, :4])
    with pytest.raises(
        GeometryError, match=r"label map must be 3D \(X, Y, Z\), got shape \(7, 6\)"
    ):
        label_components(ref[:, :, 0])
    with pytest.raises(ConfigError, match="connectivity must be 6, 18 or 26, got 8"):
        lesion_scores(pred, ref, connectivity=8)
    with pytest.raises(ConfigError, match=r"min_iou must be in \[0, 1\), got 1.0"):
        lesion_scores(pred, ref, min_iou=1.0)
    with pytest.raises(ConfigError, match="scores must hold at least one scan"):
        summarize_lesions([])


C = S = math.sqrt(2) / 2
# 45 degrees about z, then spacing (1, 2, 3) mm along the array axes, origin (10, 20, 30) mm.
OBLIQUE = np.array(
    [[C, -2 * S, 0.0, 10.0], [S, 2 * C, 0.0, 20.0], [0.0, 0.0, 3.0, 30.0], [0, 0, 0, 1.0]]
)


def test_component_box_and_centre_through_an_oblique_affine() -> None:
    # Component: voxels (1,1,1) and (2,1,1).
    # Centres: A(1,1,1) + t = (10 - sqrt2/2, 20 + 3 sqrt2/2, 33), A(2,1,1) + t = (10, 20 + 2 sqrt2, 33).
    # Centre of mass: (10 - sqrt2/4, 20 + 7 sqrt2/4, 33).
    # Half a voxel cell in world axes: 0.5 * sum_j |A_ij| = (3 sqrt2/4, 3 sqrt2/4, 1.5).
    # Box: min = (10 - sqrt2/2 - 3 sqrt2/4, 20 + 3 sqrt2/2 - 3 sqrt2/4, 31.5)
    #          = (10 - 5 sqrt2/4, 20 + 3 sqrt2/4, 31.5);
    #      max = (10 + 3 sqrt2/4, 20 + 2 sqrt2 + 3 sqrt2/4, 34.5) = (10 + 3 sqrt2/4, 20 + 11 sqrt2/4, 34.5).
    # Volume: 2 voxels * |det A| (1 * 2 * 3 = 6 mm3) = 12 mm3 = 0.012 mL.
    # Equivalent sphere diameter: (6 * 12 / pi) ** (1/3) = (72 / pi) ** (1/3) = 2.8405 mm.
    r2 = math.sqrt(2)
    m = np.zeros(SHAPE, np.uint8)
    m[1:3, 1, 1] = 1
    probs = np.zeros(SHAPE, np.float32)
    probs[1, 1, 1], probs[2, 1, 1] = 0.5, 0.75
    (comp,) = lesion_components(m, OBLIQUE, probabilities=probs)
    assert (comp.index, comp.n_voxels) == (1, 2)
    assert comp.volume_ml == pytest.approx(0.012)
    assert comp.center_of_mass_mm == pytest.approx((10 - r2 / 4, 20 + 7 * r2 / 4, 33))
    assert comp.box.min_mm == pytest.approx((10 - 5 * r2 / 4, 20 + 3 * r2 / 4, 31.5))
    assert comp.box.max_mm == pytest.approx((10 + 3 * r2 / 4, 20 + 11 * r2 / 4, 34.5))
    assert comp.score == pytest.approx(0.625)  # mean probability (0.5 + 0.75) / 2
    assert comp.equivalent_diameter_mm == pytest.approx((72 / math.pi) ** (1 / 3))
    (det,) = detections_from_label_map(m, OBLIQUE, probabilities=probs)
    assert (det.center_mm, det.box, det.score, det.label) == (
        comp.center_of_mass_mm,
        comp.box,
        comp.score,
        1,
    )
    (les,) = lesions_from_label_map(m, OBLIQUE)
    assert les.diameter_mm == pytest.approx(2.8405, abs=1e-4)
    assert les.box == comp.box
    # The box's eight corners, back in voxel indices, cover the two voxels' cells (0.5..2.5 along
    # i, 0.5..1.5 along j and k) and more: the world box of an oblique cell is larger than it.
    lo, hi = world_box_to_voxel(comp.box, OBLIQUE)
    assert np.all(lo <= np.array([0.5, 0.5, 0.5]) + 1e-9)
    assert np.all(hi >= np.array([2.5, 1.5, 1.5]) - 1e-9)
    assert lo[2] == pytest.approx(0.5)  # z is not rotated: tight there
    assert hi[2] == pytest.approx(1.5)


def test_world_box_to_voxel_is_exact_on_a_right_angle_lps_grid() -> None:
    # LPS-like storage: x and y flipped, spacing (0.5, 0.8, 2.5) mm, origin (100, 50, -20) mm.
    affine = np.array([[-0.5, 0, 0, 100.0], [0, -0.8, 0, 50.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1.0]])
    m = np.zeros(SHAPE, np.uint8)
    m[2:4, 1, 3] = 1
    (comp,) = lesion_components(m, affine)
    # voxel cells 1.5..3.5, 0.5..1.5, 2.5..3.5 -> world x 100 - 0.5 * (3.5, 1.5) = (98.25, 99.25)
    assert comp.box.min_mm == pytest.approx((98.25, 50 - 0.8 * 1.5, -20 + 2.5 * 2.5))
    assert comp.box.max_mm == pytest.approx((99.25, 50 - 0.8 * 0.5, -20 + 2.5 * 3.5))
    assert comp.score == 1.0
    lo, hi = world_box_to_voxel(comp.box, affine)
    assert lo == pytest.approx([1.5, 0.5, 2.5])
    assert hi == pytest.approx([3.5, 1.5, 3.5])


def test_component_errors() -> None:
    m = np.zeros(SHAPE, np.uint8)
    m[1, 1, 1] = 1
    with pytest.raises(GeometryError, match="affine must be an invertible 4x4"):
        lesion_components(m, np.zeros((4, 4)))
    with pytest.raises(GeometryError, match=r"probabilities must have the label map's shape"):
        lesion_components(m, np.eye(4), probabilities=np.zeros((2, 2, 2)))
    bad = np.full(SHAPE, np.nan, np.float32)
    with pytest.raises(ConfigError, match="probabilities must be finite inside the components"):
        lesion_components(m, np.eye(4), probabilities=bad)


def test_segmentation_scored_with_the_detection_froc() -> None:
    # Truth: two 3x3x3 cubes (27 voxels each) on a 1 x 1 x 2.5 mm grid. Prediction: one of them
    # (mean probability 0.9) and a false blob elsewhere (0.6). Equivalent diameters of 67.5 mm3:
    # (6 * 67.5 / pi) ** (1/3) = 5.05 mm, radius 2.52 mm; the hit's centre of mass equals the
    # cube's, 0 mm away. FROC over 1 scan: (0, 0) -> (0, 1/2) at 0.9 -> (1, 1/2) at 0.6: 0.5 at
    # every rate, CPM 0.5.
    shape = (20, 12, 8)
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    ref = np.zeros(shape, np.uint8)
    ref[2:5, 2:5, 2:5] = 1
    ref[12:15, 6:9, 2:5] = 1
    pred = np.zeros(shape, np.uint8)
    probs = np.zeros(shape, np.float32)
    pred[2:5, 2:5, 2:5], probs[2:5, 2:5, 2:5] = 1, 0.9
    pred[8:10, 9:11, 6:8], probs[8:10, 9:11, 6:8] = 1, 0.6
    lesions = lesions_from_label_map(ref, affine)
    assert [les.diameter_mm for les in lesions] == pytest.approx([(405 / math.pi) ** (1 / 3)] * 2)
    scan = ScanFindings(
        scan_id="s",
        lesions=lesions,
        detections=detections_from_label_map(pred, affine, probabilities=probs),
    )
    r = froc([scan])
    assert r.sensitivities == pytest.approx([0.5] * 7)
    assert r.cpm == pytest.approx(0.5)
    # The same lesions, lesion-wise: sensitivity 1/2 and 1 FP component.
    s = lesion_scores(pred, ref)
    assert (s.sensitivity, s.n_false_positive) == (0.5, 1)
    assert isinstance(lesions[0].box, WorldBox)


def test_segmentation_scores_carry_lesion_counts_into_csv_and_summary(tmp_path) -> None:
    import csv

    from medimg.evaluation import score_case, summarize, write_case_csv

    # Case a: two reference lesions of label 1; the prediction hits one and adds one elsewhere.
    ref = np.zeros(SHAPE, np.uint8)
    ref[0:2, 0:2, 0:2] = 1
    ref[5:7, 4:6, 3:5] = 1
    pred = np.zeros_like(ref)
    pred[1, 1, 1] = 1  # inside the first lesion
    pred[3, 0, 4] = 1  # touches no lesion: a false positive
    # Case b: one lesion, found; no false positive.
    ref_b = np.zeros(SHAPE, np.uint8)
    ref_b[3, 3, 2] = 1
    spacing = (1.0, 2.0, 3.0)
    cases = [
        score_case("a", pred, ref, spacing_mm=spacing, labels={1: "nodule"}),
        score_case("b", ref_b, ref_b, spacing_mm=spacing, labels={1: "nodule"}),
    ]
    les = cases[0].labels[0].lesions
    assert (les.n_true, les.n_detected, les.n_false_positive) == (2, 1, 1)
    summary = summarize(cases)["labels"]["nodule"]["lesions"]
    # 2 of 3 lesions found, 1 false positive over 2 scans.
    assert summary == {
        "n_reference": 3,
        "n_detected": 2,
        "sensitivity": pytest.approx(2 / 3),
        "false_positives_per_scan": 0.5,
    }
    text = write_case_csv(cases, tmp_path / "cases.csv").read_text().splitlines()
    rows = list(csv.DictReader(text))
    assert [(r["lesions_reference"], r["lesions_detected"], r["lesions_false_positive"])
            for r in rows] == [("2", "1", "1"), ("1", "1", "0")]  # fmt: skip


def test_two_dimensional_scores_have_no_lesion_counts() -> None:
    from medimg.evaluation import score_case, summarize

    ref = np.zeros((5, 4), np.uint8)
    ref[1:3, 1:3] = 1
    case = score_case("x", ref, ref, spacing_mm=(1.0, 1.0), labels={1: "x"})
    assert case.labels[0].lesions is None
    assert "lesions" not in summarize([case])["labels"]["x"]
