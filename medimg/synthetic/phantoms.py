"""CT-, MRI- and X-ray-like phantoms built from ellipsoids defined in world millimetres."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError
from medimg.io.geometry import SourceGeometry
from medimg.io.volume import Volume
from medimg.typing import Affine, PathLike

__all__ = [
    "CT_LABELS",
    "MR_LABELS",
    "Ellipsoid",
    "Phantom",
    "XrayPhantom",
    "ct_phantom",
    "grid_affine",
    "mri_phantom",
    "xray_phantom",
]

CT_LABELS: Final = MappingProxyType({0: "background", 1: "liver", 2: "spleen", 3: "lesion"})
"""Label values of :func:`ct_phantom`."""
MR_LABELS: Final = MappingProxyType({0: "background", 1: "tissue", 2: "lesion"})
"""Label values of :func:`mri_phantom`."""

_AXIS_OF = {
    "R": (0, 1.0),
    "L": (0, -1.0),
    "A": (1, 1.0),
    "P": (1, -1.0),
    "S": (2, 1.0),
    "I": (2, -1.0),
}


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _rotation(rotation_deg: tuple[float, float, float]) -> NDArray[np.float64]:
    ax, ay, az = np.radians(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def grid_affine(
    shape: tuple[int, ...],
    spacing_mm: tuple[float, ...],
    *,
    axcodes: str = "RAS",
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Affine:
    """Voxel-to-RAS affine of a grid centred on ``center_mm``.

    Parameters
    ----------
    shape : tuple of int
        Grid shape in stored voxel order (2 or 3 axes).
    spacing_mm : tuple of float
        Voxel size in mm along each stored axis.
    axcodes : str
        Direction each stored axis points to before rotation, e.g. ``"LPS"`` for DICOM-like
        storage or ``"SRA"`` for a permuted one. For a 2D grid give three letters; the third
        is the plane normal.
    rotation_deg : tuple of 3 float
        Rotation about the world x, y, z axes (applied in that order) making the grid oblique.
    center_mm : tuple of 3 float
        World position of the grid's centre.

    Returns
    -------
    (4, 4) ndarray of float64
        The affine, its entries rounded to float32 so NIfTI-1 files store it exactly.

    Examples
    --------
    >>> a = grid_affine((3, 3, 3), (1.0, 2.0, 3.0), axcodes="LPS")
    >>> a[:3, :3].diagonal().tolist(), a[:3, 3].tolist()
    ([-1.0, -2.0, 3.0], [1.0, 2.0, -3.0])
    """
    ndim = len(shape)
    if len(spacing_mm) != ndim or any(s <= 0 for s in spacing_mm):
        raise ConfigError(f"spacing_mm must be {ndim} positive values, got {spacing_mm}")
    codes = axcodes.upper()
    axes = [_AXIS_OF.get(c) for c in codes]
    if len(codes) != 3 or None in axes or len({a[0] for a in axes if a}) != 3:
        raise ConfigError(f"axcodes must name R/L, A/P and S/I once each, got {axcodes!r}")
    rot = _rotation(rotation_deg)
    cols = np.zeros((3, 3))
    for i, (world_axis, sign) in enumerate(a for a in axes if a is not None):
        cols[:, i] = rot[:, world_axis] * sign * (spacing_mm[i] if i < ndim else 1.0)
    affine = np.eye(4)
    affine[:3, :3] = cols
    half = np.array([(n - 1) / 2 for n in shape] + [0.0] * (3 - ndim))
    affine[:3, 3] = np.asarray(center_mm) - cols @ half
    # NIfTI-1 stores the sform in float32: rounding here makes a save/load round trip exact.
    return affine.astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid in world RAS millimetres (an ellipse when 2D)."""

    center_mm: tuple[float, ...]
    radii_mm: tuple[float, ...]

    def contains(self, points_mm: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether each point of a ``(k, ...)`` world-coordinate array lies inside."""
        k = len(self.center_mm)
        c = np.asarray(self.center_mm, dtype=np.float64).reshape((k,) + (1,) * (points_mm.ndim - 1))
        r = np.asarray(self.radii_mm, dtype=np.float64).reshape(c.shape)
        return np.asarray((((points_mm[:k] - c) / r) ** 2).sum(axis=0) <= 1.0)

    @property
    def volume_mm3(self) -> float:
        """Exact volume (area for an ellipse) in mm^3 (mm^2)."""
        r = np.prod(self.radii_mm)
        return float(4.0 / 3.0 * np.pi * r) if len(self.radii_mm) == 3 else float(np.pi * r)


def _world_points(shape: tuple[int, ...], affine: Affine) -> NDArray[np.float64]:
    """World RAS coordinates of every voxel centre: array of shape ``(3, *shape)``."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    ijk = np.stack([*grids] + [np.zeros(shape)] * (3 - len(shape)), axis=0)
    offset = affine[:3, 3].reshape((3,) + (1,) * len(shape))
    return np.asarray(np.einsum("ij,j...->i...", affine[:3, :3], ijk) + offset, dtype=np.float64)


@dataclass(frozen=True)
class Phantom:
    """A synthetic 3D image with its label map and the shapes that drew it.

    Attributes
    ----------
    image, label : Volume
        Channel-first ``(1, X, Y, Z)`` arrays on the same grid (label ``uint8``).
    labels : mapping of int to str
        Label value to name.
    structures : mapping of str to Ellipsoid
        The world-space shapes, so tests know answers in mm without reading the arrays.
    extras : mapping of str to ndarray
        Other ground truth, e.g. ``"bias_field"`` for MRI.
    """

    image: Volume
    label: Volume
    labels: MappingProxyType[int, str]
    structures: dict[str, Ellipsoid]
    extras: dict[str, NDArray[Any]] = field(default_factory=dict)

    def write(
        self, out_dir: PathLike, case_id: str, *, suffix: str = ".nii.gz", overwrite: bool = False
    ) -> tuple[Path, Path]:
        """Write ``<case_id>_image<suffix>`` and ``<case_id>_label<suffix>`` into ``out_dir``."""
        from medimg.io.writing import save_volume

        out = Path(out_dir)
        image_path = save_volume(
            self.image.array, out / f"{case_id}_image{suffix}", like=self.image, overwrite=overwrite
        )
        label_path = save_volume(
            self.label.array, out / f"{case_id}_label{suffix}", like=self.label, overwrite=overwrite
        )
        return image_path, label_path


def _volume(array: NDArray[Any], affine: Affine, name: str) -> Volume:
    source = SourceGeometry(
        path=Path(f"<synthetic {name}>"),
        format="synthetic",
        shape=tuple(array.shape[1:]),
        affine=affine,
        dtype=array.dtype.str,
    )
    return Volume(array=array, affine=affine, source=source)


def _jitter(
    rng: np.random.Generator, values: tuple[float, ...], amount: float
) -> tuple[float, ...]:
    return tuple(float(v + rng.uniform(-amount, amount)) for v in values)


def _scale(rng: np.random.Generator, values: tuple[float, ...], rel: float) -> tuple[float, ...]:
    return tuple(float(v * rng.uniform(1 - rel, 1 + rel)) for v in values)


def ct_phantom(
    shape: tuple[int, int, int] = (40, 32, 20),
    spacing_mm: tuple[float, float, float] = (4.0, 4.5, 7.0),
    *,
    affine: Affine | None = None,
    seed: int | np.random.Generator = 0,
    noise_hu: float = 15.0,
) -> Phantom:
    """A CT-like abdomen in Hounsfield units with liver, spleen and a liver lesion.

    Air is -1000 HU, body 40 HU (fat ring -100 HU), liver 120 HU, spleen 80 HU and the lesion
    (inside the liver) 10 HU, plus Gaussian noise of ``noise_hu``. Positions and sizes vary with
    ``seed`` by up to 8 mm and 10%. Labels: :data:`CT_LABELS`.

    Parameters
    ----------
    shape, spacing_mm : tuple
        Grid, used when ``affine`` is not given (centred on the world origin, RAS-stored).
    affine : (4, 4) ndarray, optional
        Any voxel-to-RAS affine (oblique, LPS-stored, anisotropic) for a grid of ``shape``.
    seed : int or numpy Generator
        Randomness of the anatomy and noise.
    noise_hu : float
        Standard deviation of the additive noise.
    """
    rng = _rng(seed)
    aff = grid_affine(shape, spacing_mm) if affine is None else np.asarray(affine, np.float64)
    pts = _world_points(shape, aff)
    body = Ellipsoid((0.0, 0.0, 0.0), _scale(rng, (72.0, 58.0, 62.0), 0.05))
    fat = Ellipsoid(body.center_mm, tuple(r - 6.0 for r in body.radii_mm))
    liver = Ellipsoid(_jitter(rng, (30.0, 5.0, 10.0), 8.0), _scale(rng, (30.0, 28.0, 32.0), 0.1))
    spleen = Ellipsoid(
        _jitter(rng, (-36.0, -15.0, 12.0), 8.0), _scale(rng, (14.0, 17.0, 22.0), 0.1)
    )
    lesion_r = float(rng.uniform(6.0, 9.0))
    offset = rng.uniform(-0.35, 0.35, size=3) * np.asarray(liver.radii_mm)
    lesion = Ellipsoid(
        tuple(float(c + o) for c, o in zip(liver.center_mm, offset, strict=True)),
        (lesion_r, lesion_r, lesion_r),
    )
    image = np.full(shape, -1000.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    image[body.contains(pts)] = -100.0
    image[fat.contains(pts)] = 40.0
    for value, shape_, hu in (
        (1, liver, 120.0),
        (2, spleen, 80.0),
        (3, lesion, 10.0),
    ):
        inside = shape_.contains(pts) & body.contains(pts)
        image[inside] = hu
        label[inside] = value
    image += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    structures = {"body": body, "liver": liver, "spleen": spleen, "lesion": lesion}
    return Phantom(
        _volume(image[None], aff, "ct"),
        _volume(label[None], aff, "ct label"),
        CT_LABELS,
        structures,
    )


def mri_phantom(
    shape: tuple[int, int, int] = (36, 40, 24),
    spacing_mm: tuple[float, float, float] = (5.0, 4.5, 6.0),
    *,
    affine: Affine | None = None,
    seed: int | np.random.Generator = 0,
    bias_strength: float = 0.25,
) -> Phantom:
    """An MRI-like head: tissue 400, lesion 700, non-zero noisy background, smooth bias field.

    The background is Rayleigh noise (magnitude images are never exactly zero, which is what
    breaks ``nonzero`` normalisation on real data). The image is multiplied by a smooth
    bias field ``exp(b . x / 100 mm)`` with ``|b|`` about ``bias_strength``; the field is kept in
    ``extras["bias_field"]``. Labels: :data:`MR_LABELS`.
    """
    rng = _rng(seed)
    aff = grid_affine(shape, spacing_mm) if affine is None else np.asarray(affine, np.float64)
    pts = _world_points(shape, aff)
    head = Ellipsoid((0.0, 0.0, 0.0), _scale(rng, (70.0, 82.0, 60.0), 0.05))
    lesion = Ellipsoid(_jitter(rng, (18.0, 10.0, 8.0), 10.0), _scale(rng, (12.0, 10.0, 11.0), 0.15))
    image = np.zeros(shape, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    inside_head = head.contains(pts)
    inside_lesion = lesion.contains(pts) & inside_head
    image[inside_head] = 400.0
    label[inside_head] = 1
    image[inside_lesion] = 700.0
    label[inside_lesion] = 2
    image += rng.normal(0.0, 12.0, size=shape).astype(np.float32)
    background = rng.rayleigh(15.0, size=shape).astype(np.float32)
    image = np.where(inside_head, image, background).astype(np.float32)
    b = rng.normal(0.0, 1.0, size=3)
    b = b / np.linalg.norm(b) * bias_strength
    bias = np.exp(np.einsum("i,i...->...", b, pts) / 100.0).astype(np.float32)
    image *= bias
    return Phantom(
        _volume(image[None], aff, "mr"),
        _volume(label[None], aff, "mr label"),
        MR_LABELS,
        {"head": head, "lesion": lesion},
        {"bias_field": bias},
    )


@dataclass(frozen=True)
class XrayPhantom:
    """A 2D X-ray-like image and its class (0 normal, 1 nodule).

    Attributes
    ----------
    image : Volume
        ``(1, X, Y)`` uint16 detector values (bright = dense), on a 2D grid.
    label : int
        0 for no nodule, 1 for a nodule.
    nodule : Ellipsoid or None
        Where the nodule is, in world mm (2D), when ``label == 1``.
    """

    image: Volume
    label: int
    nodule: Ellipsoid | None

    def write(
        self, out_dir: PathLike, case_id: str, *, suffix: str = ".nii.gz", overwrite: bool = False
    ) -> Path:
        """Write ``<case_id>_image<suffix>`` into ``out_dir``."""
        from medimg.io.writing import save_volume

        out = Path(out_dir) / f"{case_id}_image{suffix}"
        return save_volume(self.image.array, out, like=self.image, overwrite=overwrite)


def xray_phantom(
    shape: tuple[int, int] = (64, 80),
    spacing_mm: tuple[float, float] = (5.0, 5.0),
    *,
    label: int | None = None,
    seed: int | np.random.Generator = 0,
) -> XrayPhantom:
    """Make a chest-X-ray-like 2D image: body, two dark lungs and, for class 1, a nodule.

    The grid is a coronal plane stored ``LS``: the first axis runs to the patient's left, the
    second towards the head, the plane normal is anterior. ``label`` is drawn from the seed when
    not given.
    """
    rng = _rng(seed)
    cls = int(rng.integers(0, 2)) if label is None else int(label)
    if cls not in (0, 1):
        raise ConfigError(f"label must be 0 or 1, got {label}")
    aff = grid_affine(shape, spacing_mm, axcodes="LSA")
    pts = _world_points(shape, aff)[[0, 2]]  # (x, z) plane coordinates in mm
    body = Ellipsoid((0.0, 0.0), _scale(rng, (150.0, 170.0), 0.05))
    lungs = [
        Ellipsoid(_jitter(rng, (side * 60.0, 20.0), 6.0), _scale(rng, (45.0, 95.0), 0.08))
        for side in (-1.0, 1.0)
    ]
    image = np.full(shape, 200.0, dtype=np.float32)
    image[body.contains(pts)] = 1800.0
    for lung in lungs:
        image[lung.contains(pts)] = 700.0
    nodule = None
    if cls == 1:
        lung = lungs[int(rng.integers(0, 2))]
        r = float(rng.uniform(10.0, 16.0))
        c = tuple(
            float(c + rng.uniform(-0.5, 0.5) * rr)
            for c, rr in zip(lung.center_mm, lung.radii_mm, strict=True)
        )
        nodule = Ellipsoid(c, (r, r))
        image[nodule.contains(pts)] = 1600.0
    image += rng.normal(0.0, 60.0, size=shape).astype(np.float32)
    pixels = np.clip(image, 0, 4095).astype(np.uint16)
    return XrayPhantom(_volume(pixels[None], aff, "xray"), cls, nodule)
