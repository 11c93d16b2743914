"""``read_package``: a package verified whole before any member is interpreted.

The order of the checks is the point: the zip's structure (:func:`._format.read_members`),
then ``MANIFEST.json`` and its format version, then the signature (required when a trust store
is configured), then the member list (nothing missing, nothing extra, in medimg's layout) and
every member's size and SHA-256. Only then are ``model.json`` and ``contract.json`` parsed,
and the weights are deserialised (safetensors, never pickle) only when
:meth:`ModelPackage.state_dict` is called, after decryption when the package is encrypted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import PackageError, PackagePassphraseError, PackageSignatureError
from medimg.packages._crypto import (
    PASSPHRASE_ENV,
    check_encryption,
    decrypt_member,
    derive_key,
    read_passphrase_file,
)
from medimg.packages._format import (
    CARD,
    CONTRACT,
    FINGERPRINT,
    FORMAT_NAME,
    MANIFEST,
    MODEL_RECORD,
    ONNX,
    PACKAGE_SUFFIX,
    READABLE_FORMATS,
    SIGNATURE,
    WEIGHTS,
    ZIP_DATE,
    parse_json_member,
    read_members,
)
from medimg.packages.pack import compression_of
from medimg.packages.signing import check_signature, trusted_keys
from medimg.typing import PathLike

if TYPE_CHECKING:
    import torch

__all__ = ["ModelPackage", "is_package", "read_package"]

logger = logging.getLogger(__name__)

_REQUIRED = (MODEL_RECORD, WEIGHTS, CONTRACT, CARD)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIX = "get the package again from whoever made it (medimg model pack writes it)"


def is_package(path: PathLike) -> bool:
    """Whether ``path`` is meant as a package: a file named ``*.medimg`` or a zip archive.

    A damaged ``.medimg`` file still counts, so that :func:`read_package` says what is wrong
    with it rather than a folder loader saying it is no folder.
    """
    path = Path(path)
    if path.suffix == PACKAGE_SUFFIX and not path.is_dir():
        return True
    return path.is_file() and zipfile.is_zipfile(path)


@dataclass(frozen=True)
class ModelPackage:
    """A verified package: its manifest, record, contract and card, and its weights on demand.

    Attributes
    ----------
    path : Path
        The package file.
    sha256 : str
        SHA-256 of the whole file.
    manifest, record, contract : dict
        ``MANIFEST.json``, ``model.json`` (``checkpoint`` is ``weights.safetensors``) and
        ``contract.json``.
    card : str
        ``card.md``, the model card.
    fingerprint_json : str or None
        ``fingerprint.json`` (the dataset fingerprint its preprocessing uses), if any.
    signed_by : str or None
        Fingerprint of the key that signed it (checked against the trust store when one was
        configured: see :attr:`trusted`).
    trusted : bool
        Whether the signature was checked against a trust store holding its key.
    encrypted : bool
        Whether the weights are encrypted (:meth:`state_dict` needs the passphrase).
    """

    path: Path
    sha256: str
    manifest: dict[str, Any]
    record: dict[str, Any]
    contract: dict[str, Any]
    card: str
    fingerprint_json: str | None
    signed_by: str | None
    trusted: bool
    encrypted: bool
    _data: Mapping[str, bytes] = field(repr=False)
    _key: bytes | None = field(repr=False, default=None)

    def member_bytes(self, name: str) -> bytes:
        """The verified bytes of member ``name`` as stored (ciphertext when encrypted)."""
        if name not in self._data:
            raise PackageError(
                f"{self.path}: has no member {name!r} (members: {', '.join(self._data)})"
            )
        return self._data[name]

    def _plain(self, name: str) -> bytes:
        data = self.member_bytes(name)
        encryption = self.manifest.get("encryption")
        if not encryption or name not in encryption["nonces"]:
            return data
        if self._key is None:
            raise PackagePassphraseError(
                f"{self.path} is encrypted: give its passphrase (--passphrase-file F, "
                f"{PASSPHRASE_ENV}=F, or the prompt; passphrase= in Python)"
            )
        return decrypt_member(self.path, name, data, self._key, encryption)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights (safetensors, decrypted), checked against ``model.json``."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        data = self._plain(WEIGHTS)
        expected = self.record.get("checkpoint_sha256")
        if hashlib.sha256(data).hexdigest() != expected:
            raise PackageError(
                f"{self.path}: member {WEIGHTS!r} does not have the SHA-256 its model.json "
                f"records ({expected}); {_FIX}"
            )
        try:
            return load(data)
        except SafetensorError as exc:
            raise PackageError(
                f"{self.path}: member {WEIGHTS!r} is no safetensors file ({exc}); {_FIX}"
            ) from None

    def check_input(
        self, source: object, *, modality: str, channels: int, spatial_dims: int
    ) -> None:
        """Refuse an input that does not meet ``contract.json`` (modality, channels, 2D/3D).

        ``source`` names the input (a file, or a manifest) in the message.

        Raises
        ------
        PackageError
            Naming the package, ``contract.json``, the field, what it expects and what
            ``source`` has.
        """
        expected = {"modality": self.contract.get("modality"),
                    "channels": self.contract.get("channels"),
                    "spatial_dims": self.contract.get("spatial_dims")}  # fmt: skip
        found = {"modality": modality, "channels": channels, "spatial_dims": spatial_dims}
        for field_name, want in expected.items():
            have = found[field_name]
            same = (
                str(have).upper() == str(want).upper()
                if field_name == "modality"
                else (have == want)
            )
            if not same:
                raise PackageError(
                    f"{source} does not meet the input contract of {self.path} (member "
                    f"'contract.json' field {field_name!r}: the model takes {want}, got {have}); "
                    "use a model trained for this input"
                )

    def onnx_bytes(self) -> bytes | None:
        """The ONNX network (decrypted), or None when the package has none."""
        return self._plain(ONNX) if ONNX in self._data else None


def read_package(
    path: PathLike,
    *,
    trust: Sequence[PathLike] | None = None,
    passphrase: str | bytes | None = None,
) -> ModelPackage:
    """Read and verify the package ``path``; nothing in it is deserialised before it passes.

    Parameters
    ----------
    path : path-like
        A ``.medimg`` file written by :func:`medimg.packages.pack_model`.
    trust : sequence of path-like, optional
        Public key files (or folders of ``*.pub*`` files) of trusted signers. When None, the
        ``MEDIMG_TRUST`` environment variable, else ``~/.config/medimg/trust/`` when it
        exists. With any trusted key the package must be signed by one of them.
    passphrase : str or bytes, optional
        The passphrase of an encrypted package (default: the first line of the file named by
        ``MEDIMG_PASSPHRASE_FILE``, if set). Checked here: a wrong one raises now.

    Raises
    ------
    PackageError
        When the file is no complete zip, has unsafe or unexpected members, a member is
        missing, extra, or its SHA-256 or size differs from ``MANIFEST.json``, or the format
        version is not one this medimg reads; each message names the package and the member.
    PackageSignatureError
        When a trust store is configured and the package is unsigned, signed by a key not in
        it, or its signature does not verify (also without a store, for a broken signature).
    PackagePassphraseError
        When the passphrase is wrong.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise PackageError(f"package {path} is {what}; give a {PACKAGE_SUFFIX} file")
    infos, data, sha256 = read_members(path)
    manifest = _manifest(path, data)
    signed_by, trusted = _signature(path, manifest, data, trust)
    _check_members(path, manifest, infos, data)
    record = parse_json_member(path, MODEL_RECORD, data[MODEL_RECORD])
    contract = parse_json_member(path, CONTRACT, data[CONTRACT])
    key = _key(path, manifest, passphrase)
    package = ModelPackage(
        path=path,
        sha256=sha256,
        manifest=manifest,
        record=record,
        contract=contract,
        card=_text(path, CARD, data[CARD]),
        fingerprint_json=_text(path, FINGERPRINT, data[FINGERPRINT])
        if FINGERPRINT in data else None,
        signed_by=signed_by,
        trusted=trusted,
        encrypted=bool(manifest.get("encryption")),
        _data={n: d for n, d in data.items() if n not in (MANIFEST, SIGNATURE)},
        _key=key,
    )  # fmt: skip
    if key is not None:  # a wrong passphrase is an error now, not at the first prediction
        package._plain(WEIGHTS)
    return package


def _text(path: Path, name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageError(f"{path}: member {name!r} is not UTF-8 text ({exc}); {_FIX}") from None


def _manifest(path: Path, data: Mapping[str, bytes]) -> dict[str, Any]:
    from medimg import __version__

    if MANIFEST not in data:
        raise PackageError(f"{path}: member {MANIFEST!r} is missing: not a medimg package; {_FIX}")
    manifest = parse_json_member(path, MANIFEST, data[MANIFEST])
    if manifest.get("format") != FORMAT_NAME:
        raise PackageError(
            f"{path}: member {MANIFEST!r} names format {manifest.get('format')!r}, not "
            f"{FORMAT_NAME!r}: not a medimg model package"
        )
    version = manifest.get("format_version")
    if version not in READABLE_FORMATS:
        made = manifest.get("made_by")
        maker = made.get("medimg") if isinstance(made, dict) else None
        raise PackageError(
            f"{path}: member {MANIFEST!r}: made by medimg {maker or '(unknown)'} with package "
            f"format {version!r}; this medimg {__version__} reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}: upgrade medimg, or pack the model again "
            "with this version"
        )
    members = manifest.get("members")
    if not isinstance(members, list) or not all(
        isinstance(m, dict) and isinstance(m.get("name"), str)
        and isinstance(m.get("sha256"), str) and _SHA256.fullmatch(m["sha256"])
        and isinstance(m.get("size"), int) for m in members
    ):  # fmt: skip
        raise PackageError(
            f"{path}: member {MANIFEST!r} field 'members' must list objects with name, "
            f"sha256 (64 hex digits) and size; {_FIX}"
        )
    if manifest.get("encryption") is not None:
        check_encryption(path, manifest["encryption"])
    return manifest


def _signature(
    path: Path, manifest: Mapping[str, Any], data: Mapping[str, bytes],
    trust: Sequence[PathLike] | None,
) -> tuple[str | None, bool]:  # fmt: skip
    keys = trusted_keys(trust)
    signed_by = manifest.get("signed_by")
    if SIGNATURE not in data:
        if signed_by is not None:
            raise PackageSignatureError(
                f"{path}: member {SIGNATURE!r} is missing, but MANIFEST.json says it is "
                f"signed by {signed_by}; {_FIX}"
            )
        if keys:
            raise PackageSignatureError(
                f"{path}: is unsigned (no member {SIGNATURE!r}), but a trust store is "
                f"configured ({len(keys)} key{'s' * (len(keys) > 1)}): only packages signed "
                "by a trusted key are read; ask its maker for a signed package (medimg model "
                "pack --sign-key KEY)"
            )
        return None, False
    fingerprint = check_signature(path, data[MANIFEST], data[SIGNATURE], signed_by)
    if keys and fingerprint not in keys:
        store = ", ".join(f"{k} ({p})" for k, p in keys.items())
        raise PackageSignatureError(
            f"{path}: member {SIGNATURE!r} is by key {fingerprint}, which is not in the trust "
            f"store (trusted: {store}); trust the signer's public key only if you know it is "
            "theirs"
        )
    return fingerprint, bool(keys)


def _check_members(
    path: Path, manifest: Mapping[str, Any], infos: Sequence[zipfile.ZipInfo],
    data: Mapping[str, bytes],
) -> None:  # fmt: skip
    listed = [m["name"] for m in manifest["members"]]
    head = [MANIFEST] + ([SIGNATURE] if SIGNATURE in data else [])
    for name in listed:
        if name not in data or name in head:
            raise PackageError(
                f"{path}: member {name!r} listed in MANIFEST.json is missing; {_FIX}"
            )
    for name in data:
        if name not in listed and name not in head:
            raise PackageError(
                f"{path}: member {name!r} is not listed in MANIFEST.json (an extra file was "
                f"added); {_FIX}"
            )
    for name in _REQUIRED:
        if name not in listed:
            raise PackageError(f"{path}: member {name!r} is missing (a package needs it); {_FIX}")
    for entry in manifest["members"]:
        found = data[entry["name"]]
        digest = hashlib.sha256(found).hexdigest()
        if (len(found), digest) != (entry["size"], entry["sha256"]):
            raise PackageError(
                f"{path}: member {entry['name']!r} has SHA-256 {digest} ({len(found)} bytes), "
                f"MANIFEST.json records {entry['sha256']} ({entry['size']} bytes): it was "
                f"altered or damaged; {_FIX}"
            )
    _check_layout(path, [*head, *listed], infos)


def _check_layout(path: Path, order: Sequence[str], infos: Sequence[zipfile.ZipInfo]) -> None:
    """Refuse an archive laid out otherwise than ``pack_model`` writes it (re-zipped)."""
    names = [info.filename for info in infos]
    if names != list(order):
        raise PackageError(
            f"{path}: members are not in the order MANIFEST.json lists them: the archive was "
            f"re-zipped or edited by another tool; {_FIX}"
        )
    for info in infos:
        if (info.date_time != ZIP_DATE or info.extra or info.comment
                or info.compress_type != compression_of(info.filename)):  # fmt: skip
            raise PackageError(
                f"{path}: member {info.filename!r} carries zip metadata medimg never writes "
                f"(date, extra field, comment or compression): the archive was re-zipped or "
                f"edited by another tool; {_FIX}"
            )


def _key(path: Path, manifest: Mapping[str, Any], passphrase: str | bytes | None) -> bytes | None:
    encryption = manifest.get("encryption")
    if not encryption:
        return None
    if passphrase is None and os.environ.get(PASSPHRASE_ENV):
        passphrase = read_passphrase_file(os.environ[PASSPHRASE_ENV])
    if passphrase is None:
        return None
    return derive_key(passphrase, bytes.fromhex(encryption["salt"]), n=encryption["n"],
                      r=encryption["r"], p=encryption["p"])  # fmt: skip
