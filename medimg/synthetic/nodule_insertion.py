"""Solid nodules inserted at known world positions into the lungs of a real CT.

The real-background variant of the synthetic detection set (``medimg synth ct-det
--background``): the phantoms of :mod:`medimg.synthetic.detection` draw whole chests, this
module draws only the nodules into a CT the user gives.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from medimg.errors import ConfigError
from medimg.io.volume import Volume
from medimg.synthetic.detection import (
    ChestSettings,
    DetectionPhantom,
    Nodule,
    _apart,
    _count,
    _diameter,
    _draw_nodules,
    _fits_grid,
    _t,
)
from medimg.synthetic.phantoms import _rng, _volume, _world_points
from medimg.typing import Affine

__all__ = ["insert_nodules"]

_LUNG_THRESHOLD_HU = -400.0  # a real CT's lung: darker than this, inside the body
_LUNG_MEDIAN_HU = (-950.0, -600.0)  # a dark region is lung when its median HU is in this range


def insert_nodules(
    background: Volume,
    *,
    seed: int | np.random.Generator = 0,
    settings: ChestSettings | None = None,
) -> DetectionPhantom:
    """Insert solid nodules at known world positions into the lungs of a real CT.

    The lungs are the connected regions darker than -400 HU that do not reach the grid's
    in-plane faces (the air around the body does) and whose median is -950 to -600 HU
    (aerated lung; gas in the bowel is about -1000 HU); a nodule's centre is drawn among
    lung voxels at least its radius plus 2 mm from any non-lung voxel, so the nodule lies in
    lung. The nodule replaces the HU it covers (partial-volume edge) and gets noise of half
    ``noise_hu``; vessels are the CT's own.

    Parameters
    ----------
    background : Volume
        A single-channel 3D CT in HU, on its stored grid (:func:`medimg.io.load_volume`).
    seed : int or numpy Generator
    settings : ChestSettings, optional
        Nodule count and diameters (``vessels_per_lung`` is unused).

    Returns
    -------
    DetectionPhantom
        On the background's grid; ``vessels`` and ``structures`` are empty.

    Raises
    ------
    ConfigError
        If the volume is not one 3D channel, or holds no lung region where a nodule fits.
    """
    rng = _rng(seed)
    cfg = settings or ChestSettings()
    where = background.source.path
    if background.array.ndim != 4 or background.array.shape[0] != 1:
        raise ConfigError(
            f"{where}: the background must be one 3D CT volume, got array shape "
            f"{background.array.shape}; give a single-channel 3D CT"
        )
    hu = np.asarray(background.array[0], dtype=np.float32)
    aff = np.asarray(background.affine, dtype=np.float64)
    lung = _lung_mask(hu, aff)
    from scipy import ndimage

    depth_mm = ndimage.distance_transform_edt(lung, sampling=background.spacing_mm)
    placed: list[Nodule] = []
    for _ in range(_count(rng, cfg)):
        for _attempt in range(100):
            d = _diameter(rng, cfg)
            candidates = np.argwhere(depth_mm >= d / 2 + 2.0)
            if not len(candidates):
                continue
            ijk = candidates[int(rng.integers(len(candidates)))]
            centre = aff[:3, :3] @ ijk + aff[:3, 3]
            nodule = Nodule(_t(centre), d, round(float(rng.uniform(10.0, 60.0)), 1))
            if _apart(nodule, placed) and _fits_grid(nodule, aff, hu.shape, 1.0):
                placed.append(nodule)
                break
    if _count_wanted(cfg) and not placed:
        raise ConfigError(
            f"{where}: no lung region (darker than {_LUNG_THRESHOLD_HU:g} HU, inside the body) "
            f"where a nodule of {cfg.diameter_range_mm[0]:g} mm or more fits; give a chest CT "
            "(lungs in view), or smaller diameters"
        )
    ramp_mm = float(np.mean(background.spacing_mm))
    image, label = _draw_nodules(hu.copy(), _world_points(hu.shape, aff), placed, ramp_mm)
    image += (rng.normal(0.0, cfg.noise_hu / 2, size=hu.shape) * label).astype(np.float32)
    return DetectionPhantom(_volume(image[None], aff, "ct with nodules"), tuple(placed), (), label)


def _count_wanted(cfg: ChestSettings) -> bool:
    return cfg.n_nodules is None or cfg.n_nodules > 0


def _lung_mask(hu: NDArray[np.float32], affine: Affine) -> NDArray[np.bool_]:
    """Dark regions inside the body (not reaching the grid's in-plane faces) with lung HU."""
    from scipy import ndimage

    dark = hu < _LUNG_THRESHOLD_HU
    components, n = ndimage.label(dark)
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    axial = int(np.argmax(np.abs(cols[2])))  # the stored axis closest to S-I
    outside: set[int] = set()
    for axis in (a for a in range(3) if a != axial):
        for index in (0, hu.shape[axis] - 1):
            outside |= set(np.unique(np.take(components, index, axis=axis)).tolist())
    inside = [i for i in range(1, n + 1) if i not in outside]
    medians = ndimage.median(hu, components, index=inside) if inside else []
    lung = [i for i, m in zip(inside, np.atleast_1d(medians), strict=True) if _is_lung_hu(m)]
    return np.asarray(np.isin(components, lung), dtype=np.bool_)


def _is_lung_hu(median_hu: float) -> bool:
    """Aerated lung (median about -850 HU), not gas in the bowel or airways (about -1000)."""
    return _LUNG_MEDIAN_HU[0] <= float(median_hu) <= _LUNG_MEDIAN_HU[1]
