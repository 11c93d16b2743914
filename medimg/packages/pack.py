"""``pack_model``: a trained run or model folder as one verifiable package file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medimg.errors import ConfigError, PackageError
from medimg.packages._card import build_contract, evaluation_files, render_card, task_of
from medimg.packages._crypto import derive_key, encrypt_member, encryption_record
from medimg.packages._format import (
    CARD,
    CONTRACT,
    FINGERPRINT,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    MODEL_RECORD,
    ONNX,
    PACKAGE_SUFFIX,
    SIGNATURE,
    WEIGHTS,
    ZIP_DATE,
    canonical_json,
)
from medimg.typing import PathLike

__all__ = ["ENCRYPTED_MEMBERS", "compression_of", "pack_model"]

logger = logging.getLogger(__name__)

ENCRYPTED_MEMBERS = (WEIGHTS, ONNX)
"""The members ``--encrypt`` encrypts (the model's parameters); the rest stays readable."""

_STORED_SUFFIXES = (".safetensors", ".onnx", ".png")


def compression_of(name: str) -> int:
    """The zip method of member ``name``: stored for weights and figures, else deflated."""
    return zipfile.ZIP_STORED if name.endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED


def pack_model(
    run_dir: PathLike,
    package: PathLike,
    *,
    sign_key: PathLike | None = None,
    passphrase: str | None = None,
    onnx: bool = False,
    name: str | None = None,
    version: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the model of ``run_dir`` as the package ``package`` (a ``.medimg`` zip); its path.

    The model is loaded and verified first as prediction loads it (record, checkpoint SHA-256,
    fingerprint, weights fitting the network); its state dict becomes ``weights.safetensors``.

    Parameters
    ----------
    run_dir : path-like
        A run folder (``medimg train --out``) or its model folder (holding ``model.json``).
    package : path-like
        The package file to write; its name must end in ``.medimg``. Written atomically.
    sign_key : path-like, optional
        An Ed25519 private key (``medimg model keygen``) to sign the manifest with.
    passphrase : str, optional
        Encrypt the weights (and ONNX network) with AES-256-GCM under a key scrypt derives
        from it. Never logged or stored.
    onnx : bool
        Add the network as ONNX (``network.onnx``) with dynamic spatial dimensions.
    name, version : str, optional
        The model's name (default: the package's stem) and version (default ``"1"``).
    overwrite : bool
        Replace an existing ``package``.

    Raises
    ------
    ConfigError
        When ``run_dir`` holds no trained model or ``package`` does not end in ``.medimg``.
    CheckpointError
        When the model folder is damaged (as :func:`medimg.training.load_model_bundle`).
    PackageError
        When ``run_dir`` is a package, or ``sign_key`` is not an Ed25519 private key.
    OutputExistsError
        When ``package`` exists and ``overwrite`` is false.
    """
    from medimg.io import atomic_path
    from medimg.packages.read import is_package

    source, package = Path(run_dir), Path(package)
    if package.suffix != PACKAGE_SUFFIX:
        raise ConfigError(
            f"package {package} must end in {PACKAGE_SUFFIX}, got {package.suffix or 'none'}; "
            f"name it {package.with_suffix(PACKAGE_SUFFIX).name}"
        )
    if is_package(source):
        raise PackageError(f"{source} is already a package; give the run folder it was made from")
    key = None
    if sign_key is not None:
        from medimg.packages.signing import load_private_key

        key = load_private_key(sign_key)
    members, manifest_extra = _members(source, package, onnx=onnx, name=name, version=version)
    encryption = None
    if passphrase is not None:
        members, encryption = _encrypt(members, passphrase)
    manifest = _manifest(members, manifest_extra, encryption, key)
    signature = None
    if key is not None:
        from medimg.packages.signing import sign_manifest

        signature = sign_manifest(manifest, key)
    with atomic_path(package, overwrite=overwrite) as tmp:
        _write_zip(tmp, manifest, signature, members)
    logger.info("packed %s into %s (%s)", source, package,
                "signed" if key is not None else "unsigned")  # fmt: skip
    return package


def _read_run(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); restore the run folder") from None
    return run if isinstance(run, dict) else {}


def _members(
    source: Path, package: Path, *, onnx: bool, name: str | None, version: str | None
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every member but the manifest and signature, in package order; the manifest's extras."""
    from medimg.tasks import resolve_model_dir, task_for
    from medimg.training import package_versions
    from medimg.training.bundle import read_model_record

    model_dir = resolve_model_dir(source)
    run_dir = source if model_dir != source else model_dir
    if model_dir == source and model_dir.name == "model":
        run_dir = model_dir.parent
    record = read_model_record(model_dir)
    run = _read_run(model_dir)
    task = task_of(record, run)
    bundle = task_for(task).load_model(model_dir)
    weights = _safetensors(bundle.model)
    packed = dict(record)
    packed["checkpoint"] = WEIGHTS
    packed["checkpoint_sha256"] = hashlib.sha256(weights).hexdigest()
    if bundle.head is not None and "head" not in packed:  # older folder: classifier.json
        from medimg.training.record import to_jsonable

        packed["head"] = to_jsonable(bundle.head)
    members: dict[str, bytes] = {MODEL_RECORD: canonical_json(packed), WEIGHTS: weights}
    if record["fingerprint"] is not None:
        members[FINGERPRINT] = (model_dir / record["fingerprint"]).read_bytes()
        packed["fingerprint"] = FINGERPRINT
        members[MODEL_RECORD] = canonical_json(packed)
    contract = build_contract(task, bundle, record, run)
    members[CONTRACT] = canonical_json(contract)
    evaluation = {n: p.read_bytes() for n, p in evaluation_files(run_dir, model_dir).items()}
    versions = package_versions()
    label, tag = name or package.stem, version or "1"
    members[CARD] = render_card(
        name=label, version=tag, contract=contract, run=run, versions=versions,
        evaluation=evaluation, weights_sha256=packed["checkpoint_sha256"],
    ).encode("utf-8")  # fmt: skip
    members.update(evaluation)
    if onnx:
        members[ONNX] = _onnx_bytes(bundle, contract)
    extra = {
        "name": label,
        "version": tag,
        "task": task,
        "made_by": {k: versions.get(k) for k in ("medimg", "monai", "torch", "python")},
        "source": {"checkpoint_sha256": record["checkpoint_sha256"]},
    }
    return members, extra


def _safetensors(model: Any) -> bytes:
    """The module's state dict as safetensors bytes (tensors copied: no shared storage)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return bytes(save(state))


def _onnx_bytes(bundle: Any, contract: Mapping[str, Any]) -> bytes:
    from medimg.inference.onnx import export_onnx  # type: ignore[import-not-found,unused-ignore]

    with tempfile.TemporaryDirectory(prefix="medimg-pack-") as folder:
        path = export_onnx(
            bundle.model, in_channels=contract["channels"],
            spatial_dims=contract["spatial_dims"], path=Path(folder) / ONNX,
        )  # fmt: skip
        return Path(path).read_bytes()


def _encrypt(members: dict[str, bytes], passphrase: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    from medimg.packages._crypto import SCRYPT_N, SCRYPT_P, SCRYPT_R

    salt = os.urandom(16)
    key = derive_key(passphrase, salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    nonces: dict[str, bytes] = {}
    out = dict(members)
    for member in ENCRYPTED_MEMBERS:
        if member in out:
            nonces[member], out[member] = encrypt_member(key, member, out[member])
    return out, encryption_record(salt, nonces)


def _manifest(
    members: Mapping[str, bytes], extra: Mapping[str, Any], encryption: Any, key: Any
) -> bytes:
    from medimg.packages.signing import key_fingerprint
    from medimg.training import utc_now

    listed = [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
              for n, d in members.items()]  # fmt: skip
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        **extra,
        "created": utc_now(),
        "members": listed,
        "encryption": encryption,
        "signed_by": None if key is None else key_fingerprint(key.public_key()),
    }
    return canonical_json(manifest)


def _write_zip(
    path: Path, manifest: bytes, signature: bytes | None, members: Mapping[str, bytes]
) -> None:
    entries = [(MANIFEST, manifest)]
    if signature is not None:
        entries.append((SIGNATURE, signature))
    entries += list(members.items())
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in entries:
            info = zipfile.ZipInfo(member, date_time=ZIP_DATE)
            info.compress_type = compression_of(member)
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
