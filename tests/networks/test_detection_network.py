"""RetinaNet detector: config checks, axis conventions, torchvision-free run, a tiny overfit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from medimg.errors import ConfigError
from medimg.networks.detection import (
    Detections,
    DetectorConfig,
    build_detector,
    detect,
    detection_loss,
    train_step,
)

# A tiny detector: strides 2 and 4 along x and y, 2 and 4 along z (stem (2, 2, 2)).
_TINY = {
    "base_features": 4,
    "layers": (1, 1),
    "returned_layers": (1, 2),
    "fpn_channels": 8,
    "anchor_shapes_vox": ((4.0, 4.0, 4.0), (8.0, 4.0, 6.0)),
    "roi_size_vox": (16, 16, 16),
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny convolutions: one thread is faster, and two threads on a busy 2-core machine can be
    # 15x slower (each OpenMP barrier waits for a descheduled thread).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("spatial_dims", 4, "spatial_dims must be 2 or 3, got 4"),
        ("num_classes", 0, "num_classes must be >= 1, got 0"),
        ("layers", (1, 1, 1, 1, 1), r"layers must be 1 to 4 block counts"),
        ("returned_layers", (3, 2), r"returned_layers must be increasing layer numbers in 1..3"),
        ("returned_layers", (1, 4), r"returned_layers must be increasing .* got \(1, 4\)"),
        ("stem_stride_vox", (2, 2), "stem_stride_vox must be 3 values, each 1 or 2"),
        ("stem_stride_vox", (3, 2, 2), "stem_stride_vox must be 3 values, each 1 or 2"),
        ("anchor_shapes_vox", ((4.0, 4.0),), "anchor_shapes_vox must be one or more shapes of 3"),
        ("anchor_shapes_vox", ((4.0, 0.0, 4.0),), "anchor_shapes_vox must be one or more"),
        ("anchor_shapes_vox", (), "anchor_shapes_vox must be one or more"),
        ("box_coder_weights", (1.0,) * 4, "box_coder_weights must be 6 values > 0"),
        ("roi_size_vox", (64, 60, 64), r"roi_size_vox must be 3 positive multiples of \(8, 8, 8\)"),
        ("roi_size_vox", (64, 64), r"roi_size_vox must be 3 positive multiples"),
        ("sampler_positive_fraction", 0.0, r"sampler_positive_fraction must be in \(0, 1\]"),
        ("sampler_pool_size", 0.5, "sampler_pool_size >= 1, got 16 and 0.5"),
        ("nms_iou", 1.5, r"nms_iou must be in \[0, 1\], got 1.5"),
        ("sw_overlap", 1.0, r"sw_overlap must be in \[0, 1\), got 1.0"),
    ],
)
def test_config_refuses(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DetectorConfig(**{field: value})  # type: ignore[arg-type]


def test_strides_and_divisibility_follow_the_stem() -> None:
    # stem (2, 2, 1), layers 1-3: layer i has stride stem * 2**(i-1); anchors double per level
    cfg = DetectorConfig(
        stem_stride_vox=(2, 2, 1), returned_layers=(1, 2, 3), roi_size_vox=(64, 64, 32)
    )
    assert cfg.level_strides_vox == ((2, 2, 1), (4, 4, 2), (8, 8, 4))
    assert cfg.size_divisible == (8, 8, 4)
    assert cfg.feature_map_scales == (1, 2, 4)
    pooled = DetectorConfig(max_pool=True, returned_layers=(2, 3), roi_size_vox=(64, 64, 64))
    assert pooled.level_strides_vox == ((8, 8, 8), (16, 16, 16))
    assert pooled.feature_map_scales == (1, 2)
    assert pooled.size_divisible == (16, 16, 16)


def test_builds_2d_and_3d_with_the_configured_parts() -> None:
    from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher
    from monai.apps.detection.utils.hard_negative_sampler import HardNegativeSampler

    det = build_detector(DetectorConfig(**_TINY, num_classes=2), seed=0)
    assert isinstance(det.proposal_matcher, ATSSMatcher)
    assert isinstance(det.fg_bg_sampler, HardNegativeSampler)
    assert det.num_classes == 2
    assert det.num_anchors_per_loc == 2
    cfg2 = DetectorConfig(
        spatial_dims=2,
        stem_stride_vox=(2, 2),
        anchor_shapes_vox=((4.0, 4.0),),
        roi_size_vox=(32, 32),
    )
    det2 = build_detector(cfg2)
    found = detect(det2, torch.zeros(1, 40, 24))
    assert found.boxes_vox.shape[1] == 4


def test_weights_are_deterministic_given_a_seed_and_leave_global_rng_alone() -> None:
    cfg = DetectorConfig(**_TINY)
    state = torch.get_rng_state()
    a = build_detector(cfg, seed=3).network.state_dict()
    b = build_detector(cfg, seed=3).network.state_dict()
    c = build_detector(cfg, seed=4).network.state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_anchor_axes_follow_array_axes_on_a_non_cubic_grid() -> None:
    # Input (1, 1, 32, 16, 8): the finest level (stride 2) has 16 x 8 x 4 cells; anchor
    # centres are cell * 2 + 1, so the largest centre per axis is 31, 15 and 7 (x, y, z).
    det = build_detector(DetectorConfig(**_TINY))
    image = torch.zeros(1, 1, 32, 16, 8)
    maps = [torch.zeros(1, 2, 16, 8, 4), torch.zeros(1, 2, 8, 4, 2)]
    anchors = det.anchor_generator(image, maps)[0]
    centres = (anchors[:, :3] + anchors[:, 3:]) / 2
    assert centres.max(dim=0).values.tolist() == [31.0, 15.0, 7.0]
    # the (8, 4, 6) anchor keeps its x, y, z extents
    sizes = anchors[:, 3:] - anchors[:, :3]
    assert [8.0, 4.0, 6.0] in sizes.tolist()


@pytest.mark.parametrize(
    ("boxes", "labels", "match"),
    [
        ([[1, 1, 1, 4, 4, 4]], [0, 0], "image 0 has 1 boxes but 2 labels"),
        ([[1, 1, 4, 4, 4, 4]], [0], r"image 0: every box must have x1 > x0"),
        ([[1, 1, 1, 4, 4, 4]], [1], r"image 0: labels must be in 0..0, got \[1\]"),
    ],
)
def test_training_targets_are_checked(
    boxes: list[list[int]], labels: list[int], match: str
) -> None:
    det = build_detector(DetectorConfig(**_TINY))
    with pytest.raises(ConfigError, match=match):
        detection_loss(det, torch.zeros(1, 1, 16, 16, 16), [boxes], [labels])


def test_shapes_are_checked() -> None:
    det = build_detector(DetectorConfig(**_TINY))
    with pytest.raises(ConfigError, match=r"images must be \(B, C, \*spatial\) with B = 2"):
        detection_loss(det, torch.zeros(1, 1, 16, 16, 16), [[], []], [[], []])
    with pytest.raises(ConfigError, match=r"image must be \(C, \*spatial\) with 3 spatial axes"):
        detect(det, torch.zeros(16, 16, 16))
    det.inferer = None
    with pytest.raises(
        ConfigError, match="no sliding-window inferer; build it with build_detector"
    ):
        detect(det, torch.zeros(1, 16, 16, 16))


_WITHOUT_TORCHVISION = textwrap.dedent(
    """
    import sys
    sys.modules["torchvision"] = None  # any import of torchvision now raises ImportError
    import numpy as np, torch
    from medimg.networks.detection import DetectorConfig, build_detector, detect, train_step
    cfg = DetectorConfig(base_features=4, layers=(1, 1), returned_layers=(1, 2),
                         fpn_channels=8, anchor_shapes_vox=((4.0, 4.0, 4.0),),
                         roi_size_vox=(16, 16, 16))
    det = build_detector(cfg)
    opt = torch.optim.SGD(det.network.parameters(), lr=0.01)
    images = torch.rand(2, 1, 16, 16, 16)
    losses = train_step(det, opt, images, [[[2, 2, 2, 7, 7, 7]], np.zeros((0, 6))], [[0], []])
    assert all(np.isfinite(losses)), losses
    found = detect(det, torch.rand(1, 40, 24, 20))  # larger than the window: sliding window
    upper = np.array([40, 24, 20, 40, 24, 20])
    assert (found.boxes_vox >= 0).all() and (found.boxes_vox <= upper).all()
    assert "torchvision" not in {m.split(".")[0] for m in sys.modules if sys.modules[m]}
    print("ok", len(found.scores))
    """
)


@pytest.mark.slow  # a subprocess importing torch and MONAI, about 6 s
def test_trains_and_detects_without_torchvision() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCHVISION],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_overfits_one_box_on_an_anisotropic_non_cubic_grid() -> None:
    # One bright 7 x 3 x 5 voxel cuboid (x, y, z) in a 24 x 16 x 16 image: voxels 12..18 on x,
    # 4..6 on y, 8..12 on z, so its box is (11.5, 3.5, 7.5, 18.5, 6.5, 12.5) with centre
    # (15, 5, 10) and extent (7, 3, 5). After training, the best box must sit there, and be
    # longest along x and shortest along y (an axis swap would break both).
    cfg = DetectorConfig(**_TINY, stem_stride_vox=(2, 2, 2), score_threshold=0.0)
    det = build_detector(cfg, seed=0)
    generator = torch.Generator().manual_seed(0)
    image = 0.1 * torch.rand(1, 1, 24, 16, 16, generator=generator)
    image[0, 0, 12:19, 4:7, 8:13] = 1.0
    box = np.array([[11.5, 3.5, 7.5, 18.5, 6.5, 12.5]])
    opt = torch.optim.Adam(det.network.parameters(), lr=3e-3)
    torch.manual_seed(0)  # the hard-negative sampler draws from the global generator
    for _ in range(80):  # about 3 s on one thread
        train_step(det, opt, image, [box], [[0]])
    found = detect(det, image[0])
    assert isinstance(found, Detections)
    centre = found.centres_vox[0]
    assert np.abs(centre - np.array([15.0, 5.0, 10.0])).max() <= 2.0, found.boxes_vox[:3]
    extent = found.boxes_vox[0, 3:] - found.boxes_vox[0, :3]
    assert extent[0] > extent[2] > extent[1], extent
    assert found.scores[0] > 0.3
    assert found.labels[0] == 0
