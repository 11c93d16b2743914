"""LUNA16 FROC/CPM, 3D box IoU and mAP against hand-worked answers, and the detection figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg.errors import ConfigError, GeometryError, OutputExistsError
from medimg.evaluation import (
    LUNA16_FP_RATES,
    PUBLISHED_LUNA16,
    Detection,
    Lesion,
    ScanFindings,
    WorldBox,
    box_iou,
    froc,
    mean_average_precision,
    save_detection_figure,
    save_froc_figure,
)


def _det(center: tuple[float, float, float], score: float, size: float = 4.0) -> Detection:
    return Detection.from_box(WorldBox.from_center_size(center, (size,) * 3), score=score)


def _two_scans() -> list[ScanFindings]:
    """2 scans, 3 lesions, 7 detections; the answer is worked out in test_froc_hand_worked."""
    scan_a = ScanFindings(
        scan_id="a",
        lesions=(
            Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),  # L1, radius 5
            Lesion(center_mm=(40, 0, 0), diameter_mm=6.0),  # L2, radius 3
        ),
        detections=(
            _det((1, 0, 0), 0.9),  # on L1 (1 mm from its centre): hit
            _det((0, 2, 0), 0.3),  # also on L1: a second hit, ignored (LUNA16)
            _det((100, 0, 0), 0.8),  # nowhere: FP
            _det((43, 0, 0), 0.4),  # exactly on L2's radius (3 mm): a miss (strict <), so FP
        ),
    )
    scan_b = ScanFindings(
        scan_id="b",
        lesions=(Lesion(center_mm=(0, 0, 0), diameter_mm=8.0),),  # L3, radius 4
        detections=(
            _det((0, 0, 3.9), 0.6),  # on L3: hit
            _det((0, 50, 0), 0.7),  # FP
            _det((0, -50, 0), 0.2),  # FP
        ),
    )
    return [scan_a, scan_b]


def test_froc_hand_worked() -> None:
    # Lesion entries: L1 best score 0.9, L3 0.6, L2 missed. FP scores 0.8, 0.7, 0.4, 0.2.
    # Thresholds from the top, (FP per scan = FP / 2 scans, sensitivity = hits / 3 lesions):
    #   start (0, 0); 0.9 -> (0, 1/3); 0.8 -> (0.5, 1/3); 0.7 -> (1, 1/3); 0.6 -> (1, 2/3);
    #   0.4 -> (1.5, 2/3); 0.2 -> (2, 2/3).
    # At 1/8, 1/4, 1/2: 1/3. At 1: the vertical step at x=1 is taken at its top (np.interp's
    # choice in LUNA16), 2/3. At 2, 4, 8: 2/3 (flat after the last point).
    # CPM = (3 * 1/3 + 4 * 2/3) / 7 = 11/21.
    r = froc(_two_scans())
    third, two_thirds = 1 / 3, 2 / 3
    assert r.fp_rates == LUNA16_FP_RATES
    assert r.sensitivities == pytest.approx([third] * 3 + [two_thirds] * 4)
    assert r.cpm == pytest.approx(11 / 21)
    assert (r.n_scans, r.n_lesions, r.n_detected) == (2, 3, 2)
    assert (r.n_false_positives, r.n_ignored_duplicates, r.n_ignored_excluded) == (4, 1, 0)
    assert r.curve_fp_per_scan == pytest.approx([0, 0, 0.5, 1, 1, 1.5, 2])
    assert r.curve_sensitivity == pytest.approx(
        [0, third, third, third, two_thirds, two_thirds, two_thirds]
    )
    assert r.sensitivity_ci is None
    assert r.cpm_ci is None


def test_hit_on_radius_boundary_misses_and_just_inside_hits() -> None:
    lesion = Lesion(center_mm=(40, 0, 0), diameter_mm=6.0)
    on = froc([ScanFindings(scan_id="s", lesions=(lesion,), detections=(_det((43, 0, 0), 0.5),))])
    inside = froc(
        [ScanFindings(scan_id="s", lesions=(lesion,), detections=(_det((42.999, 0, 0), 0.5),))]
    )
    assert (on.n_detected, on.n_false_positives) == (0, 1)
    assert (inside.n_detected, inside.n_false_positives, inside.cpm) == (1, 0, 1.0)


def test_two_hits_on_one_lesion_count_once_with_the_higher_score() -> None:
    # Hits scored 0.2 and 0.7 on one lesion; one FP scored 0.5 in 1 scan.
    # LUNA16: the lesion enters with 0.7, the 0.2 hit is ignored (not an FP): points (0,0),
    # (0,1) at 0.7, (1,1) at 0.5, so sensitivity 1 at every rate.
    # Were the 0.2 hit an FP it would give FP count 2; were the lesion scored 0.2, sensitivity
    # would be 0 below 1 FP per scan.
    scan = ScanFindings(
        scan_id="s",
        lesions=(Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),),
        detections=(_det((0, 0, 1), 0.2), _det((0, 1, 0), 0.7), _det((30, 0, 0), 0.5)),
    )
    r = froc([scan])
    assert (r.n_detected, r.n_false_positives, r.n_ignored_duplicates) == (1, 1, 1)
    assert r.sensitivities == pytest.approx([1.0] * 7)


def test_one_detection_inside_two_lesions_hits_both() -> None:
    # Overlapping lesions at x=0 and x=4, radius 5 each; a detection at x=2 lies in both.
    scan = ScanFindings(
        scan_id="s",
        lesions=(
            Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),
            Lesion(center_mm=(4, 0, 0), diameter_mm=10.0),
        ),
        detections=(_det((2, 0, 0), 0.5),),
    )
    r = froc([scan])
    assert (r.n_detected, r.n_lesions, r.n_false_positives, r.cpm) == (2, 2, 0, 1.0)


def test_excluded_findings_are_ignored_not_counted() -> None:
    # One included lesion (hit at 0.9), one excluded finding with a detection on it only (0.95)
    # and one detection on both the excluded and the included lesion (0.1): the first is ignored,
    # the second a (duplicate) hit; the excluded finding is not a lesion to find.
    scan = ScanFindings(
        scan_id="s",
        lesions=(
            Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),
            Lesion(center_mm=(50, 0, 0), diameter_mm=10.0, excluded=True),
            Lesion(center_mm=(3, 0, 0), diameter_mm=10.0, excluded=True),
        ),
        detections=(_det((1, 0, 0), 0.9), _det((50, 0, 1), 0.95), _det((3, 1, 0), 0.1)),
    )
    r = froc([scan])
    assert (r.n_lesions, r.n_detected, r.n_false_positives) == (1, 1, 0)
    assert (r.n_ignored_excluded, r.n_ignored_duplicates) == (1, 1)
    assert r.cpm == 1.0


def test_tied_scores_enter_together_and_interpolate() -> None:
    # 1 scan, 1 lesion; a hit and an FP both scored 0.5: points (0,0) -> (1,1). Linear between
    # them, as LUNA16's np.interp of the ROC points: at 1/8 -> 0.125, 1/4 -> 0.25, 1/2 -> 0.5,
    # 1 and beyond -> 1. CPM = (0.125 + 0.25 + 0.5 + 4) / 7 = 4.875 / 7.
    scan = ScanFindings(
        scan_id="s",
        lesions=(Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),),
        detections=(_det((0, 0, 0), 0.5), _det((20, 0, 0), 0.5)),
    )
    r = froc([scan])
    assert r.sensitivities == pytest.approx([0.125, 0.25, 0.5, 1, 1, 1, 1])
    assert r.cpm == pytest.approx(4.875 / 7)


def test_scans_without_findings_count_in_fp_per_scan() -> None:
    # Same FP as above, now over 4 scans (3 empty): 1 FP / 4 scans = 0.25 per scan.
    scan = ScanFindings(
        scan_id="s",
        lesions=(Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),),
        detections=(_det((20, 0, 0), 0.9), _det((0, 0, 0), 0.5)),
    )
    empty = [ScanFindings(scan_id=f"e{i}") for i in range(3)]
    r = froc([scan, *empty])
    # points (0,0), (0.25, 0) at 0.9, (0.25, 1) at 0.5: sensitivity 0 at 1/8, 1 from 1/4 on.
    assert r.sensitivities == pytest.approx([0, 1, 1, 1, 1, 1, 1])


def test_no_lesions_gives_nan_and_label_filter() -> None:
    r = froc([ScanFindings(scan_id="s", detections=(_det((0, 0, 0), 0.5),))])
    assert math.isnan(r.cpm)
    assert r.n_false_positives == 1
    lesion = Lesion(center_mm=(0, 0, 0), diameter_mm=10.0, label=2)
    scan = ScanFindings(scan_id="s", lesions=(lesion,), detections=(_det((0, 0, 0), 0.5),))
    assert froc([scan]).cpm == 1.0  # class-agnostic by default (LUNA16)
    assert froc([scan], label=2).n_lesions == 1
    assert froc([scan], label=2).n_detected == 0  # the detection is class 1


def test_bootstrap_is_seeded_and_degenerate_when_scans_are_identical() -> None:
    same = ScanFindings(
        scan_id="s",
        lesions=(Lesion(center_mm=(0, 0, 0), diameter_mm=10.0),),
        detections=(_det((0, 0, 0), 0.9), _det((20, 0, 0), 0.5)),
    )
    r = froc([same] * 3, n_bootstrap=50)
    assert r.cpm_ci == pytest.approx((r.cpm, r.cpm))
    scans = _two_scans()
    a, b = froc(scans, n_bootstrap=100, rng=1), froc(scans, n_bootstrap=100, rng=1)
    assert a.cpm_ci == b.cpm_ci
    assert a.cpm_ci is not None
    assert a.sensitivity_ci is not None
    assert a.cpm_ci[0] <= a.cpm_ci[1]
    assert all(lo <= hi for lo, hi in a.sensitivity_ci)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fp_rates": ()}, "fp_rates must be one or more"),
        ({"fp_rates": (-1.0,)}, "fp_rates must be one or more"),
        ({"n_bootstrap": -1}, "n_bootstrap must be >= 0"),
        ({"confidence": 1.0}, "confidence in"),
    ],
)
def test_froc_parameter_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        froc(_two_scans(), **kwargs)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 1),  # scan
            st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 3)),
            st.floats(0, 1),  # score
        ),
        max_size=12,
    ),
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 12), st.integers(1, 8)), min_size=1, max_size=4
    ),
)
def test_froc_sensitivity_is_monotone_and_bounded(
    dets: list[tuple[int, tuple[int, int, int], float]], lesions: list[tuple[int, int, int]]
) -> None:
    scans = [
        ScanFindings(
            scan_id=str(k),
            lesions=tuple(
                Lesion(center_mm=(x, x, 0), diameter_mm=d) for s, x, d in lesions if s == k
            ),
            detections=tuple(_det(c, score) for s, c, score in dets if s == k),
        )
        for k in (0, 1)
    ]
    r = froc(scans)
    assert all(0.0 <= v <= 1.0 for v in r.sensitivities)
    assert list(r.sensitivities) == sorted(r.sensitivities)
    assert r.n_detected <= r.n_lesions
    # a detection is a hit, an FP or ignored on an excluded finding: never two of the last two
    assert r.n_false_positives + r.n_ignored_excluded <= len(dets)


def test_froc_needs_scans() -> None:
    with pytest.raises(ConfigError, match="scans must hold at least one scan"):
        froc([])


def test_record_validation_errors() -> None:
    with pytest.raises(GeometryError, match=r"lesion diameter_mm must be finite and > 0, got 0"):
        Lesion(center_mm=(0, 0, 0), diameter_mm=0.0)
    with pytest.raises(GeometryError, match=r"lesion center_mm must be 3 finite numbers"):
        Lesion(center_mm=(0, float("nan"), 0), diameter_mm=1.0)
    with pytest.raises(GeometryError, match=r"center_mm must be 3 finite numbers \(mm\), got"):
        Lesion(center_mm=(0, 0), diameter_mm=1.0)  # type: ignore[arg-type]
    with pytest.raises(
        GeometryError, match=r"center_mm must be 3 finite numbers \(mm\), got '123'"
    ):
        Lesion(center_mm="123", diameter_mm=1.0)  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match=r"min_mm must be 3 finite numbers"):
        WorldBox(None, (1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match=r"box min_mm must be <= max_mm per axis"):
        WorldBox((0, 0, 1), (1, 1, 0))
    with pytest.raises(GeometryError, match=r"size_mm must be >= 0 per axis"):
        WorldBox.from_center_size((0, 0, 0), (1, -1, 1))
    with pytest.raises(ConfigError, match=r"detection score must be finite, got nan"):
        _det((0, 0, 0), float("nan"))


def test_lesion_from_box_uses_shortest_side() -> None:
    box = WorldBox((0, 0, 0), (4, 6, 8))
    lesion = Lesion.from_box(box, label=3)
    assert (lesion.center_mm, lesion.diameter_mm, lesion.label) == ((2, 3, 4), 4.0, 3)
    assert lesion.iou_box() == box
    cube = Lesion(center_mm=(1, 1, 1), diameter_mm=2.0).iou_box()
    assert (cube.min_mm, cube.max_mm) == ((0, 0, 0), (2, 2, 2))


def test_box_iou_known_boxes() -> None:
    a = WorldBox((0, 0, 0), (2, 2, 2))
    # shifted 1 mm along x: intersection 1*2*2 = 4, union 8 + 8 - 4 = 12
    assert box_iou(a, WorldBox((1, 0, 0), (3, 2, 2))) == pytest.approx(1 / 3)
    # anisotropic: (0..10, 0..10, 0..1) inside (0..10)^3: 100 / 1000
    assert box_iou(WorldBox((0, 0, 0), (10, 10, 10)), WorldBox((0, 0, 0), (10, 10, 1))) == 0.1
    assert box_iou(a, a) == 1.0
    assert box_iou(a, WorldBox((2, 0, 0), (4, 2, 2))) == 0.0  # touching faces
    assert box_iou(WorldBox((0, 0, 0), (0, 0, 0)), WorldBox((0, 0, 0), (0, 0, 0))) == 0.0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-50, 50), min_size=3, max_size=3),
    st.lists(st.floats(0, 20), min_size=3, max_size=3),
    st.lists(st.floats(-50, 50), min_size=3, max_size=3),
    st.lists(st.floats(0, 20), min_size=3, max_size=3),
)
def test_box_iou_is_symmetric_and_bounded(
    c1: list[float], s1: list[float], c2: list[float], s2: list[float]
) -> None:
    a, b = WorldBox.from_center_size(c1, s1), WorldBox.from_center_size(c2, s2)
    iou = box_iou(a, b)
    assert 0.0 <= iou <= 1.0 + 1e-12
    assert iou == pytest.approx(box_iou(b, a))


def _cube_lesion(x: float) -> Lesion:
    return Lesion.from_box(WorldBox.from_center_size((x, 0, 0), (10, 10, 10)))


def _cube_det(x: float, score: float, label: int = 1) -> Detection:
    return Detection.from_box(
        WorldBox.from_center_size((x, 0, 0), (10, 10, 10)), score=score, label=label
    )


def test_ap_of_a_hand_made_ranking() -> None:
    # 2 scans, 3 lesions; ranking TP 0.9, FP 0.8, TP 0.7, FP 0.6; the third lesion is missed.
    # precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3; envelope 1, 2/3, 2/3, 1/2.
    # all points: 1/3 * 1 + 1/3 * 2/3 = 5/9.
    # 101 points: recalls 0.00..0.33 (34) -> 1, 0.34..0.66 (33) -> 2/3, 0.67..1 (34) -> 0:
    # (34 + 22) / 101 = 56/101.
    scans = [
        ScanFindings(
            scan_id="a",
            lesions=(_cube_lesion(0), _cube_lesion(100)),
            detections=(_cube_det(0, 0.9), _cube_det(300, 0.6)),
        ),
        ScanFindings(
            scan_id="b",
            lesions=(_cube_lesion(0),),
            detections=(_cube_det(1, 0.7), _cube_det(-200, 0.8)),
        ),
    ]
    ap = mean_average_precision(scans)
    assert ap.per_label == {1: pytest.approx(5 / 9)}
    assert ap.n_lesions == {1: 3}
    assert (ap.mean_ap, ap.iou_threshold, ap.interpolation) == (
        pytest.approx(5 / 9),
        0.1,
        "all points",
    )
    coco = mean_average_precision(scans, recall_points=101)
    assert coco.mean_ap == pytest.approx(56 / 101)
    assert coco.interpolation == "101 points"


def test_ap_duplicate_is_a_false_positive_and_excluded_is_ignored() -> None:
    # Lesions A, B; detections A 0.9 (TP), A again 0.8 (duplicate: FP), B 0.7 (TP).
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; envelope 1, 2/3, 2/3 -> AP 1/2 + 1/2 * 2/3 = 5/6.
    # A detection on an excluded finding only, ranked first (0.99), is ignored: AP unchanged.
    excluded = Lesion(center_mm=(500, 0, 0), diameter_mm=10.0, excluded=True)
    scan = ScanFindings(
        scan_id="s",
        lesions=(_cube_lesion(0), _cube_lesion(100), excluded),
        detections=(
            _cube_det(0, 0.9),
            _cube_det(2, 0.8),
            _cube_det(100, 0.7),
            _cube_det(500, 0.99),
        ),
    )
    ap = mean_average_precision([scan])
    assert ap.mean_ap == pytest.approx(5 / 6)
    assert ap.n_lesions == {1: 2}


def test_ap_iou_threshold_is_inclusive_and_greedy_takes_best_iou() -> None:
    big = Lesion.from_box(WorldBox((0, 0, 0), (10, 10, 10)))
    at = Detection.from_box(WorldBox((0, 0, 0), (10, 10, 1)), score=0.5)  # IoU exactly 0.1
    below = Detection.from_box(WorldBox((0, 0, 0), (10, 10, 0.9)), score=0.5)  # IoU 0.09
    for det, expected in ((at, 1.0), (below, 0.0)):
        scan = ScanFindings(scan_id="s", lesions=(big,), detections=(det,))
        assert mean_average_precision([scan]).mean_ap == expected
    # Lesions at x=0 and x=6 (cubes of 10 mm); the first detection at x=5 overlaps both (IoU
    # 500/1500 and 900/1100): it must take the x=6 lesion, leaving x=0 for the second, at x=-3
    # (IoU 700/1300 with x=0, but 100/1900 < 0.1 with x=6: an FP had the first taken x=0).
    scan = ScanFindings(
        scan_id="s",
        lesions=(_cube_lesion(0), _cube_lesion(6)),
        detections=(_cube_det(5, 0.9), _cube_det(-3, 0.8)),
    )
    assert mean_average_precision([scan]).mean_ap == 1.0


def test_map_means_over_classes_with_lesions() -> None:
    # class 1: one lesion, found -> AP 1; class 2: one lesion, only an FP -> AP 0; class 3 has
    # detections but no lesion: no AP. mAP = 0.5.
    lesion2 = Lesion(center_mm=(100, 0, 0), diameter_mm=10.0, label=2)
    scan = ScanFindings(
        scan_id="s",
        lesions=(_cube_lesion(0), lesion2),
        detections=(_cube_det(0, 0.9), _cube_det(300, 0.9, label=2), _cube_det(0, 0.9, label=3)),
    )
    ap = mean_average_precision([scan])
    assert ap.per_label == {1: 1.0, 2: 0.0}
    assert ap.mean_ap == 0.5
    assert math.isnan(mean_average_precision([ScanFindings(scan_id="e")]).mean_ap)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iou_threshold": 0.0}, r"iou_threshold must be in \(0, 1\], got 0.0"),
        ({"iou_threshold": float("nan")}, r"iou_threshold must be in \(0, 1\], got nan"),
        ({"recall_points": 1}, r"recall_points must be None or >= 2, got 1"),
    ],
)
def test_map_parameter_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        mean_average_precision(_two_scans(), **kwargs)  # type: ignore[arg-type]


def test_published_anchors_are_labelled_published() -> None:
    monai, nndet = PUBLISHED_LUNA16
    assert monai.sensitivities == (0.835, 0.885, 0.931, 0.957, 0.974, 0.983, 0.988)
    assert monai.cpm == pytest.approx(6.553 / 7)
    assert (nndet.cpm, nndet.sensitivities) == (0.93, None)
    assert all("published" in p.source for p in PUBLISHED_LUNA16)


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_froc_figure(tmp_path: Path) -> None:
    r = froc(_two_scans(), n_bootstrap=20)
    png = save_froc_figure(r, tmp_path / "froc.png", published=PUBLISHED_LUNA16, title="test")
    assert _is_png(png)
    with pytest.raises(OutputExistsError):
        save_froc_figure(r, png)
    assert _is_png(save_froc_figure(froc(_two_scans()), png, overwrite=True))


def test_detection_figure(tmp_path: Path) -> None:
    # 30 x 24 x 10 grid at (1, 1, 2.5) mm; one lesion and two detections near its centre.
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (30, 24, 10)).astype(np.float32)
    image[10:16, 8:14, 3:6] += 4
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    lesion = Lesion(center_mm=(12.5, 10.5, 10.0), diameter_mm=6.0)
    dets = (_det((13.0, 11.0, 10.0), 0.8, 6.0), _det((25.0, 5.0, 10.0), 0.3, 3.0))
    png = save_detection_figure(image, affine, (lesion,), dets, tmp_path / "boxes.png", title="c1")
    assert _is_png(png)
    assert _is_png(save_detection_figure(image, affine, (), dets, tmp_path / "b2.png"))
    assert _is_png(save_detection_figure(image, affine, (), (), tmp_path / "b3.png"))
    with pytest.raises(GeometryError, match=r"image must be a 3D array \(X, Y, Z\), got shape"):
        save_detection_figure(image[0], affine, (), (), tmp_path / "b4.png")
    with pytest.raises(GeometryError, match="affine must be an invertible 4x4"):
        save_detection_figure(image, np.eye(3), (lesion,), (), tmp_path / "b5.png")
