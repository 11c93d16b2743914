"""Ed25519 signing keys, the signature of a package's manifest, and the trust store.

:func:`generate_keypair` writes ``medimg-signing.pem`` (the private key, PKCS #8, mode 0600)
and ``medimg-signing.pub.pem`` (the public key, SubjectPublicKeyInfo). A signed package holds
``SIGNATURE``: the Ed25519 signature of the exact bytes of its ``MANIFEST.json`` and the signer's
public key; the manifest names the key's fingerprint (:func:`key_fingerprint`,
``ed25519:`` and the first 32 hex digits of the SHA-256 of the raw public key).

The trust store (:func:`trusted_keys`) is, in this order: the public key files given
(``trust=``, ``--trust``), else the files and folders of the environment variable
``MEDIMG_TRUST`` (separated by ``os.pathsep``; a folder contributes its ``*.pub*`` files), else
the folder ``~/.config/medimg/trust/`` when it exists. When the store holds a key, every
package read must be signed by one of its keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medimg.errors import OutputExistsError, PackageError, PackageSignatureError
from medimg.typing import PathLike

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "TRUST_ENV",
    "KeyPair",
    "generate_keypair",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "trusted_keys",
]

logger = logging.getLogger(__name__)

PRIVATE_KEY_NAME = "medimg-signing.pem"
PUBLIC_KEY_NAME = "medimg-signing.pub.pem"
TRUST_ENV = "MEDIMG_TRUST"
_TRUST_DIR = Path("~/.config/medimg/trust")


@dataclass(frozen=True)
class KeyPair:
    """The files :func:`generate_keypair` wrote and the public key's fingerprint."""

    private: Path
    public: Path
    fingerprint: str


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """``ed25519:`` and 32 hex digits of the SHA-256 of the raw 32-byte public key."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def generate_keypair(folder: PathLike) -> KeyPair:
    """Write a new Ed25519 key pair into ``folder`` (created if needed); never overwrite.

    Raises
    ------
    OutputExistsError
        When either key file exists already.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder)
    private, public = folder / PRIVATE_KEY_NAME, folder / PUBLIC_KEY_NAME
    for path in (private, public):
        if path.exists():
            raise OutputExistsError(
                f"{path}: exists; a signing key is never overwritten (packages signed with it "
                "would no longer verify): choose another folder or move it away first"
            )
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public, key_fingerprint(key.public_key()))


def load_private_key(path: PathLike) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file (:class:`PackageError` for anything else)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        hint = " (this is a public key)" if b"PUBLIC KEY" in data else ""
        raise PackageError(
            f"{path}: not an unencrypted PEM private key{hint} ({exc}); give the "
            f"{PRIVATE_KEY_NAME} that medimg model keygen wrote"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PackageError(
            f"{path}: must be an Ed25519 key, got {type(key).__name__}; make one with "
            "medimg model keygen DIR"
        )
    return key


def load_public_key(path: PathLike) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file (:class:`PackageError` for anything else)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    data = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        hint = " (this is a private key: trust its .pub.pem)" if b"PRIVATE KEY" in data else ""
        raise PackageError(
            f"{path}: not a PEM public key{hint} ({exc}); give the {PUBLIC_KEY_NAME} that "
            "medimg model keygen wrote"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise PackageError(
            f"{path}: must be an Ed25519 public key, got {type(key).__name__}; make one with "
            "medimg model keygen DIR"
        )
    return key


def trusted_keys(trust: Sequence[PathLike] | None = None) -> dict[str, Path]:
    """The trust store: key fingerprint -> public key file (empty: no store configured).

    ``trust`` (files or folders; ``[]``: no store) wins; else ``MEDIMG_TRUST``; else
    ``~/.config/medimg/trust/``.
    A folder contributes its ``*.pub*`` files. A named file that is missing or no public key
    is an error, so a typo never turns checking off.
    """
    if trust is not None:
        if not trust:  # an explicit empty store: signatures are checked for consistency only
            return {}
        sources, origin = [Path(p) for p in trust], "--trust"
    elif os.environ.get(TRUST_ENV):
        parts = os.environ[TRUST_ENV].split(os.pathsep)
        sources, origin = [Path(p) for p in parts if p], TRUST_ENV
    elif (default := _TRUST_DIR.expanduser()).is_dir():
        sources, origin = [default], str(_TRUST_DIR)
    else:
        return {}
    keys: dict[str, Path] = {}
    for source in sources:
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if ".pub" in p.name and p.is_file())
        elif source.is_file():
            files = [source]
        else:
            raise PackageError(
                f"trust store ({origin}): {source} does not exist; give public key files "
                f"(*.pub.pem) or folders of them"
            )
        for path in files:
            keys[key_fingerprint(load_public_key(path))] = path
    if not keys:
        raise PackageError(
            f"trust store ({origin}) holds no public key (*.pub* files): "
            f"{', '.join(map(str, sources))}; add the signer's {PUBLIC_KEY_NAME}"
        )
    return keys


def sign_manifest(manifest: bytes, key: Ed25519PrivateKey) -> bytes:
    """The ``SIGNATURE`` member: JSON with the algorithm, public key and signature (base64)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    document = {
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(raw).decode("ascii"),
        "signature": base64.b64encode(key.sign(manifest)).decode("ascii"),
    }
    return (json.dumps(document, sort_keys=True) + "\n").encode("ascii")


def check_signature(package: Path, manifest: bytes, signature: bytes, signed_by: object) -> str:
    """Verify ``SIGNATURE`` over ``manifest``; the signer's fingerprint.

    Raises
    ------
    PackageSignatureError
        When ``SIGNATURE`` is malformed, its key is not the one the manifest names, or the
        signature does not verify (the manifest was changed after signing).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    fix = "the package was altered after signing: get it again from its signer"
    try:
        document = json.loads(signature.decode("ascii"))
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(document["public_key"]))
        raw = base64.b64decode(document["signature"], validate=True)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise PackageSignatureError(
            f"{package}: member 'SIGNATURE' is malformed ({type(exc).__name__}: {exc}); {fix}"
        ) from None
    fingerprint = key_fingerprint(key)
    if fingerprint != signed_by:
        raise PackageSignatureError(
            f"{package}: member 'SIGNATURE' holds key {fingerprint}, but MANIFEST.json names "
            f"{signed_by!r}; {fix}"
        )
    try:
        key.verify(raw, manifest)
    except InvalidSignature:
        raise PackageSignatureError(
            f"{package}: member 'SIGNATURE' does not verify: MANIFEST.json is not what key "
            f"{fingerprint} signed; {fix}"
        ) from None
    return fingerprint
