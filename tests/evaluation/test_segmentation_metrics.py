from __future__ import annotations

import numpy as np
import pytest

from medimg.errors import ConfigError, GeometryError
from medimg.evaluation import dice, hausdorff95_mm, score_case, surface_dice, volume_ml

SPACING = (1.0, 1.0, 2.5)


def _box(shape: tuple[int, int, int] = (12, 10, 8), z0: int = 1, x0: int = 2) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[x0 : x0 + 3, 3:6, z0 : z0 + 3] = True
    return mask


def test_dice_of_box_and_its_one_voxel_shift() -> None:
    # 3x3x3 boxes shifted by one voxel along x share 2x3x3 = 18 voxels: 2*18/(27+27) = 2/3
    assert dice(_box(x0=2), _box(x0=3)) == pytest.approx(2 / 3)
    assert dice(_box(), _box()) == 1.0


def test_hausdorff_two_voxels_respects_anisotropic_spacing() -> None:
    a, b = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    a[2, 2, 1] = b[2, 2, 3] = True
    assert hausdorff95_mm(a, b, SPACING) == 5.0  # 2 voxels along z at 2.5 mm
    a2, b2 = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    a2[1, 2, 2] = b2[3, 2, 2] = True
    assert hausdorff95_mm(a2, b2, SPACING) == 2.0  # 2 voxels along x at 1.0 mm


def test_box_shifted_along_z_hd95_and_surface_dice() -> None:
    a, b = _box(z0=1), _box(z0=2)
    # Each 3x3x3 box has 26 boundary voxels (all but its centre). From A to B's boundary: A's
    # bottom face (9 voxels, z=1) is 2.5 mm from B's bottom face; A's top-face centre lies on
    # B's centre voxel (not boundary), 1.0 mm in-plane from B's boundary; the other 16 are on
    # B's boundary (0 mm). Sorted: 16 x 0, 1 x 1.0, 9 x 2.5 -> 95th percentile (index 23.75) is
    # 2.5. Symmetric by construction.
    assert hausdorff95_mm(a, b, SPACING) == 2.5
    # within 1.0 mm: 17 of 26 each way -> 34 / 52
    assert surface_dice(a, b, SPACING, tolerance_mm=1.0) == pytest.approx(34 / 52)
    assert surface_dice(a, b, SPACING, tolerance_mm=2.5) == 1.0


def test_volume_ml_known_answer() -> None:
    # 27 voxels of 1 x 1 x 2.5 mm = 67.5 mm^3 = 0.0675 mL
    assert volume_ml(_box(), SPACING) == pytest.approx(0.0675)


def test_empty_conventions() -> None:
    empty = np.zeros((12, 10, 8), bool)
    assert (dice(empty, empty), hausdorff95_mm(empty, empty, SPACING)) == (1.0, 0.0)
    assert surface_dice(empty, empty, SPACING, tolerance_mm=1.0) == 1.0
    # one empty: Dice 0, NSD 0, HD95 = grid diagonal sqrt(12^2 + 10^2 + 20^2) mm
    assert dice(_box(), empty) == 0.0
    assert surface_dice(empty, _box(), SPACING, tolerance_mm=1.0) == 0.0
    assert hausdorff95_mm(_box(), empty, SPACING) == pytest.approx(np.sqrt(144 + 100 + 400))


@pytest.mark.filterwarnings(
    # MONAI 1.6 passes its own deprecated argument internally (get_mask_edges)
    "ignore:.*always_return_as_numpy.*:FutureWarning"
)
def test_matches_monai_on_a_phantom() -> None:
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    from medimg.synthetic import ct_phantom

    ref = ct_phantom((24, 20, 12), (4.0, 4.5, 7.0), seed=1).label.array[0] == 1
    pred = np.roll(ref, (1, -1, 1), axis=(0, 1, 2)) & ~np.roll(ref, 6, axis=0)
    spacing = (4.0, 4.5, 7.0)

    def onehot(m: np.ndarray) -> object:
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))

    monai_hd = compute_hausdorff_distance(onehot(pred), onehot(ref), percentile=95, spacing=spacing)
    monai_nsd = compute_surface_dice(onehot(pred), onehot(ref), [5.0], spacing=spacing)
    assert hausdorff95_mm(pred, ref, spacing) == pytest.approx(float(monai_hd), rel=1e-6)
    assert surface_dice(pred, ref, spacing, tolerance_mm=5.0) == pytest.approx(
        float(monai_nsd), rel=1e-6
    )


def test_score_case_per_label() -> None:
    ref = np.zeros((12, 10, 8), np.uint8)
    ref[_box(x0=2)] = 1
    ref[_box(x0=7)] = 2
    pred = ref.copy()
    pred[_box(x0=7)] = 0  # label 2 missed entirely
    case = score_case(
        "c1", pred, ref, spacing_mm=SPACING, labels={1: "liver", 2: "spleen", 3: "lesion"}
    )
    liver, spleen, lesion = case.labels
    assert (liver.dice, liver.hd95_mm, liver.volume_difference_ml) == (1.0, 0.0, 0.0)
    assert (spleen.dice, spleen.prediction_empty, spleen.reference_empty) == (0.0, True, False)
    assert spleen.volume_difference_ml == pytest.approx(-0.0675)
    assert (lesion.dice, lesion.reference_empty) == (1.0, True)
    assert case.mean_dice == pytest.approx(2 / 3)


def test_errors() -> None:
    with pytest.raises(GeometryError, match=r"same shape, got \(12, 10, 8\) and \(12, 10, 7\)"):
        dice(_box(), np.zeros((12, 10, 7), bool))
    with pytest.raises(GeometryError, match=r"same shape, got \(12, 10, 8\) and \(12, 10\)"):
        hausdorff95_mm(_box(), np.zeros((12, 10), bool), SPACING)
    with pytest.raises(ConfigError, match=r"one value > 0 per axis .* got \(1.0, 1.0\)"):
        surface_dice(_box(), _box(), (1.0, 1.0), tolerance_mm=1.0)
    with pytest.raises(ConfigError, match=r"tolerance_mm must be >= 0, got -1.0"):
        surface_dice(_box(), _box(), SPACING, tolerance_mm=-1.0)
