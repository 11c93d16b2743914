"""Chest-CT-like detection phantoms: lungs, vessels as distractors, solid nodules with known boxes.

Anatomy is drawn in world RAS+ millimetres and sampled on any grid (oblique, anisotropic, LPS-
or RAS-stored), so every nodule's box is known by construction: its world centre and diameter.
:func:`chest_ct_phantom` draws a whole phantom;
:func:`~medimg.synthetic.nodule_insertion.insert_nodules` puts nodules into a real CT at world
positions inside its lungs. Intensities are Hounsfield units: air -1000, lung
-850, soft tissue 40 (fat -100), bone 400, vessels and nodules near soft tissue (vessels 40,
nodules 10 to 60), plus Gaussian noise. Edges are partial-volume ramps one voxel wide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError
from medimg.io.volume import Volume
from medimg.manifests.boxes import Box, world_to_voxel
from medimg.synthetic.phantoms import (
    Ellipsoid,
    _jitter,
    _rng,
    _scale,
    _volume,
    _world_points,
    grid_affine,
)
from medimg.typing import Affine

__all__ = [
    "CHEST_FIELD_OF_VIEW_MM",
    "NODULE_CLASS",
    "ChestSettings",
    "DetectionPhantom",
    "Nodule",
    "Vessel",
    "chest_ct_phantom",
]

NODULE_CLASS = "nodule"
"""The box class of every synthetic nodule."""

CHEST_FIELD_OF_VIEW_MM = (192.0, 160.0, 144.0)
"""Extent of the synthetic chest's default grid along x, y, z, in mm."""

_LUNG_HU, _TISSUE_HU, _FAT_HU, _BONE_HU, _AIR_HU = -850.0, 40.0, -100.0, 400.0, -1000.0


@dataclass(frozen=True)
class Nodule:
    """A solid spherical nodule: world RAS+ centre (mm), diameter (mm) and its HU."""

    center_mm: tuple[float, float, float]
    diameter_mm: float
    hu: float = 40.0

    def box(self) -> Box:
        """The nodule's box: its centre, and the diameter along every world axis."""
        d = self.diameter_mm
        return Box.model_validate(
            {"center_mm": self.center_mm, "size_mm": (d, d, d), "class": NODULE_CLASS}
        )


@dataclass(frozen=True)
class Vessel:
    """A tapering tube between two world points: radius ``start_radius_mm`` to ``end_...``."""

    start_mm: tuple[float, float, float]
    end_mm: tuple[float, float, float]
    start_radius_mm: float
    end_radius_mm: float

    @property
    def length_mm(self) -> float:
        """Distance between the tube's end points."""
        return float(np.linalg.norm(np.subtract(self.end_mm, self.start_mm)))

    def distance_outside_mm(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Signed distance of ``(3, ...)`` points to the tube's surface (< 0 inside)."""
        a = np.asarray(self.start_mm).reshape((3,) + (1,) * (points_mm.ndim - 1))
        ab = (np.asarray(self.end_mm) - np.asarray(self.start_mm)).reshape(a.shape)
        t = np.clip(((points_mm - a) * ab).sum(axis=0) / float((ab**2).sum()), 0.0, 1.0)
        dist = np.sqrt(((points_mm - a - t * ab) ** 2).sum(axis=0))
        radius = self.start_radius_mm + (self.end_radius_mm - self.start_radius_mm) * t
        return np.asarray(dist - radius, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class ChestSettings:
    """What a detection phantom holds.

    Attributes
    ----------
    n_nodules : int or None
        Nodules to place; None draws 0 to 3 (probabilities 0.1, 0.3, 0.3, 0.3).
    diameter_range_mm : tuple of 2 float
        Nodule diameters are drawn log-uniformly in this range (small nodules are commoner).
    vessels_per_lung : int
        Vessel tubes from each lung's hilum (each with one branch).
    noise_hu : float
        Standard deviation of the additive Gaussian noise.
    """

    n_nodules: int | None = None
    diameter_range_mm: tuple[float, float] = (3.0, 30.0)
    vessels_per_lung: int = 6
    noise_hu: float = 20.0

    def __post_init__(self) -> None:
        lo, hi = self.diameter_range_mm
        if not 0 < lo <= hi < math.inf:
            raise ConfigError(
                f"diameter_range_mm must be (low, high) with 0 < low <= high, got "
                f"{self.diameter_range_mm}"
            )
        if self.n_nodules is not None and self.n_nodules < 0:
            raise ConfigError(f"n_nodules must be >= 0 or None, got {self.n_nodules}")
        if self.vessels_per_lung < 0 or not self.noise_hu >= 0:
            raise ConfigError(
                f"vessels_per_lung and noise_hu must be >= 0, got {self.vessels_per_lung} "
                f"and {self.noise_hu}"
            )


@dataclass(frozen=True)
class DetectionPhantom:
    """A CT image with the nodules (boxes known) and vessels drawn into it.

    Attributes
    ----------
    image : Volume
        ``(1, X, Y, Z)`` float32 HU on the stored grid.
    nodules : tuple of Nodule
    vessels : tuple of Vessel
    label : ndarray of uint8
        ``(X, Y, Z)`` nodule mask (voxels at least half inside a nodule), for lesion-wise
        comparisons with segmentation.
    structures : dict of str to Ellipsoid
        Body and lungs (empty for a real background).
    """

    image: Volume
    nodules: tuple[Nodule, ...]
    vessels: tuple[Vessel, ...]
    label: NDArray[np.uint8]
    structures: dict[str, Ellipsoid] = field(default_factory=dict)

    def boxes(self) -> tuple[Box, ...]:
        """One box per nodule, in world RAS+ mm."""
        return tuple(n.box() for n in self.nodules)


def _coverage(distance_outside_mm: NDArray[np.float64], ramp_mm: float) -> NDArray[np.float64]:
    """Partial-volume fraction: 1 deep inside, 0 outside, linear over one voxel at the edge."""
    return np.asarray(np.clip(0.5 - distance_outside_mm / ramp_mm, 0.0, 1.0), dtype=np.float64)


def _fits_grid(nodule: Nodule, affine: Affine, shape: Sequence[int], margin_vox: float) -> bool:
    """Every corner of the nodule's box lies at least `margin_vox` inside the voxel centres."""
    voxels = world_to_voxel(nodule.box().corners_mm(), affine)
    top = np.asarray(shape, dtype=np.float64) - 1.0 - margin_vox
    return bool((voxels >= margin_vox).all() and (voxels <= top).all())


def _diameter(rng: np.random.Generator, settings: ChestSettings) -> float:
    lo, hi = settings.diameter_range_mm
    return round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 3)


def _count(rng: np.random.Generator, settings: ChestSettings) -> int:
    if settings.n_nodules is not None:
        return settings.n_nodules
    return int(rng.choice(4, p=(0.1, 0.3, 0.3, 0.3)))


def _apart(candidate: Nodule, placed: Sequence[Nodule]) -> bool:
    return all(
        np.linalg.norm(np.subtract(candidate.center_mm, n.center_mm))
        > (candidate.diameter_mm + n.diameter_mm) / 2 + 3.0
        for n in placed
    )


def _chest_anatomy(rng: np.random.Generator) -> dict[str, Ellipsoid]:
    body = Ellipsoid((0.0, 0.0, 0.0), (*_scale(rng, (88.0, 68.0), 0.05), 400.0))
    return {
        "body": body,
        "fat": Ellipsoid(body.center_mm, tuple(r - 8.0 for r in body.radii_mm)),
        "lung_right": Ellipsoid(
            _jitter(rng, (-42.0, 5.0, 0.0), 4.0), _scale(rng, (30.0, 46.0, 60.0), 0.08)
        ),
        "lung_left": Ellipsoid(
            _jitter(rng, (42.0, 5.0, 0.0), 4.0), _scale(rng, (30.0, 46.0, 60.0), 0.08)
        ),
        "heart": Ellipsoid(_jitter(rng, (14.0, 24.0, -30.0), 4.0), (34.0, 28.0, 30.0)),
        "spine": Ellipsoid((0.0, -52.0, 0.0), (13.0, 13.0, 400.0)),
    }


def _vessels(rng: np.random.Generator, lung: Ellipsoid, n: int) -> list[Vessel]:
    """Tubes from the lung's hilum (its medial side) to points inside it, each with a branch."""
    c, r = np.asarray(lung.center_mm), np.asarray(lung.radii_mm)
    hilum = c + np.array([-np.sign(c[0]) * 0.7 * r[0], 0.0, 0.0])
    out: list[Vessel] = []
    for _ in range(n):
        end = c + _in_ball(rng) * r * 0.85
        r0 = float(rng.uniform(2.0, 3.5))
        out.append(Vessel(_t(hilum), _t(end), r0, 0.8))
        fork = hilum + rng.uniform(0.3, 0.7) * (end - hilum)
        twig = c + _in_ball(rng) * r * 0.85
        out.append(Vessel(_t(fork), _t(twig), 0.6 * r0, 0.6))
    return out


def _in_ball(rng: np.random.Generator) -> NDArray[np.float64]:
    v = rng.normal(size=3)
    return np.asarray(v / np.linalg.norm(v) * rng.uniform() ** (1 / 3), dtype=np.float64)


def _t(v: NDArray[np.float64]) -> tuple[float, float, float]:
    return (round(float(v[0]), 3), round(float(v[1]), 3), round(float(v[2]), 3))


def _paint(
    image: NDArray[np.float32], coverage: NDArray[np.float64], hu: float
) -> NDArray[np.float32]:
    return np.asarray(image * (1.0 - coverage) + hu * coverage, dtype=np.float32)


def _place_in_lungs(
    rng: np.random.Generator,
    lungs: Sequence[Ellipsoid],
    settings: ChestSettings,
    grid: tuple[Affine, tuple[int, ...]],
) -> list[Nodule]:
    """Nodules fully inside a lung (2 mm clear of its wall), apart, boxes inside the grid."""
    placed: list[Nodule] = []
    for _ in range(_count(rng, settings)):
        for _attempt in range(100):
            d = _diameter(rng, settings)
            lung = lungs[int(rng.integers(len(lungs)))]
            room = np.asarray(lung.radii_mm) - d / 2 - 2.0
            centre = np.asarray(lung.center_mm) + _in_ball(rng) * np.maximum(room, 0.0)
            nodule = Nodule(_t(centre), d, round(float(rng.uniform(10.0, 60.0)), 1))
            if (room > 0).all() and _apart(nodule, placed) and _fits_grid(nodule, *grid, 1.0):
                placed.append(nodule)
                break
    return placed


def chest_ct_phantom(
    shape: tuple[int, int, int] = (64, 54, 48),
    spacing_mm: tuple[float, float, float] = (3.0, 3.0, 3.0),
    *,
    affine: Affine | None = None,
    seed: int | np.random.Generator = 0,
    nodules: Sequence[Nodule] | None = None,
    settings: ChestSettings | None = None,
) -> DetectionPhantom:
    """A chest-CT-like phantom with vessels and solid nodules whose boxes are known.

    Body (soft tissue under a fat layer, spine, heart) around two lungs at -850 HU; in each
    lung ``vessels_per_lung`` tapering tubes (radius 3.5 to 0.8 mm) from the hilum, each with a
    branch, at soft-tissue HU: in one slice a vessel looks like a nodule, in 3D it is a tube.
    Nodules are spheres inside the lungs, 2 mm clear of the lung wall and of each other, whose
    boxes lie inside the grid.

    Parameters
    ----------
    shape, spacing_mm : tuple
        Grid, used when ``affine`` is not given (RAS-stored, centred on the world origin).
    affine : (4, 4) ndarray, optional
        Any voxel-to-RAS affine (oblique, anisotropic, LPS-stored) for a grid of ``shape``.
    seed : int or numpy Generator
        Randomness of anatomy, nodules and noise.
    nodules : sequence of Nodule, optional
        Nodules to draw instead of drawing them from the seed (placed as given).
    settings : ChestSettings, optional
        Nodule count and sizes, vessels, noise.

    Returns
    -------
    DetectionPhantom

    Examples
    --------
    >>> p = chest_ct_phantom((32, 28, 24), (6.0, 6.0, 6.0), seed=1)
    >>> p.image.array.shape, len(p.vessels)
    ((1, 32, 28, 24), 24)
    """
    rng = _rng(seed)
    cfg = settings or ChestSettings()
    aff = grid_affine(shape, spacing_mm) if affine is None else np.asarray(affine, np.float64)
    pts = _world_points(shape, aff)
    ramp_mm = float(np.mean(np.linalg.norm(aff[:3, :3], axis=0)))
    anatomy = _chest_anatomy(rng)
    image = np.full(shape, _AIR_HU, dtype=np.float32)
    for name, hu in (("body", _FAT_HU), ("fat", _TISSUE_HU), ("spine", _BONE_HU)):
        image[anatomy[name].contains(pts)] = hu
    lungs = [anatomy["lung_right"], anatomy["lung_left"]]
    in_lung = (lungs[0].contains(pts) | lungs[1].contains(pts)) & ~anatomy["heart"].contains(pts)
    image[in_lung] = _LUNG_HU
    vessels = [v for lung in lungs for v in _vessels(rng, lung, cfg.vessels_per_lung)]
    for vessel in vessels:
        image = _paint(image, _coverage(vessel.distance_outside_mm(pts), ramp_mm) * in_lung, 40.0)
    placed = (
        list(nodules) if nodules is not None else _place_in_lungs(rng, lungs, cfg, (aff, shape))
    )
    image, label = _draw_nodules(image, pts, placed, ramp_mm)
    image += rng.normal(0.0, cfg.noise_hu, size=shape).astype(np.float32)
    return DetectionPhantom(
        _volume(image[None], aff, "chest ct"), tuple(placed), tuple(vessels), label, anatomy
    )


def _draw_nodules(
    image: NDArray[np.float32], pts: NDArray[np.float64], nodules: Sequence[Nodule], ramp_mm: float
) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    label = np.zeros(image.shape, dtype=np.uint8)
    for nodule in nodules:
        c = np.asarray(nodule.center_mm).reshape((3,) + (1,) * image.ndim)
        outside = np.sqrt(((pts - c) ** 2).sum(axis=0)) - nodule.diameter_mm / 2
        coverage = _coverage(outside, ramp_mm)
        image = _paint(image, coverage, nodule.hu)
        label[coverage >= 0.5] = 1
    return image, label
