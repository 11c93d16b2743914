"""A model's input contract (modality, channels, dimensions) checked against what it is given.

A package is checked against its own ``contract.json``
(:meth:`medimg.packages.ModelPackage.check_input`, naming the member and the field); a model
folder against the contract read from the loaded model (the record's modality, the network's
``in_channels`` and ``spatial_dims``), which is what a package made from it would hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimg.errors import InputContractError

__all__ = ["InputContract", "check_image_contract", "check_manifest_contract", "contract_of"]


@dataclass(frozen=True)
class InputContract:
    """What a model's images must be: ``modality`` (``CT``, ``MR``, ``XR``), channels, 2D/3D."""

    model: str
    modality: str
    channels: int
    spatial_dims: int
    package: Any = None

    def describe(self) -> str:
        """``CT images, 1 channel, 3D``."""
        s = "s" * (self.channels != 1)
        return f"{self.modality} images, {self.channels} channel{s}, {self.spatial_dims}D"


def contract_of(bundle: Any) -> InputContract:
    """The input contract of a :class:`~medimg.training.ModelBundle` (named by its source)."""
    source = bundle.source
    kind = "package" if source is not None and source.package is not None else "model"
    where = "model" if source is None else f"{kind} {source.path}"
    network = bundle.network
    package = None if source is None else source.package
    return InputContract(where, str(bundle.modality), int(network.in_channels),
                         int(network.spatial_dims), package)  # fmt: skip


def _refuse(contract: InputContract, image: object, found: str) -> InputContractError:
    return InputContractError(
        f"{contract.model} expects {contract.describe()}; image {image} is {found}; predict "
        "it with a model trained on such images, or give this model an image it was made for"
    )


def _dims(shape: Sequence[int]) -> int:
    """Spatial dimensions of a stored shape, trailing single-voxel axes dropped (at least 2)."""
    dims = len(shape)
    while dims > 2 and shape[dims - 1] == 1:
        dims -= 1
    return dims


def check_image_contract(
    contract: InputContract, image: object, geometry: Any, *, modality: str | None = None
) -> None:
    """Refuse an image (its stored ``geometry``) that does not fit ``contract``.

    ``modality`` is checked when the caller knows it (a bare image file does not say).

    Raises
    ------
    InputContractError
        Naming the model folder and the image, what each is, and the fix.
    PackageError
        For a package (:meth:`~medimg.packages.ModelPackage.check_input`).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> ct = InputContract("model m", "CT", 1, 3)
    >>> check_image_contract(ct, "a.nii.gz", SimpleNamespace(shape=(8, 8, 4), n_channels=1))
    >>> check_image_contract(ct, "x.nii.gz", SimpleNamespace(shape=(8, 8), n_channels=1))
    Traceback (most recent call last):
    ...
    medimg.errors.InputContractError: model m expects CT images, 1 channel, 3D; image x.nii.gz is 2D (shape 8 x 8); predict it with a model trained on such images, or give this model an image it was made for
    """  # noqa: E501
    channels = int(getattr(geometry, "n_channels", 1))
    shape = tuple(int(n) for n in geometry.shape)
    dims = _dims(shape)
    if contract.package is not None:  # the package's own contract.json
        contract.package.check_input(image, modality=modality or contract.modality,
                                     channels=channels, spatial_dims=dims)  # fmt: skip
        return
    if modality is not None and modality.upper() != contract.modality.upper():
        raise _refuse(contract, image, f"{modality}")
    if channels != contract.channels:
        raise _refuse(contract, image, f"of {channels} channel{'s' * (channels != 1)}")
    if dims != contract.spatial_dims:
        raise _refuse(contract, image, f"{dims}D (shape {' x '.join(map(str, shape))})")


def check_manifest_contract(
    bundle: Any, manifest: Any, path: Path, cases: Iterable[Any] = ()
) -> None:
    """Refuse a manifest whose images cannot fit the model (modality, number of channels).

    The image named is the first of ``cases`` (resolved cases of the manifest, all of its
    channels), else the manifest.

    Raises
    ------
    InputContractError, PackageError
        Naming the model, the manifest and its first image (as :func:`check_image_contract`).
    """
    contract = contract_of(bundle)
    modality = manifest.channels[0].modality.value
    channels = len(manifest.channels)
    first = next(iter(cases), None)
    image = f"{path}" if first is None else f"{first.images[0]} (manifest {path})"
    if contract.package is not None:  # dimensions: per image, when it is read
        contract.package.check_input(image, modality=modality, channels=channels,
                                     spatial_dims=contract.spatial_dims)  # fmt: skip
        return
    if modality.upper() == contract.modality.upper() and channels == contract.channels:
        return
    found = modality if channels == contract.channels else f"of {channels} channels"
    raise _refuse(contract, image, found)
