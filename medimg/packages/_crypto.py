"""Encryption at rest: AES-256-GCM with a key from scrypt, and where passphrases come from.

One key per package, derived by scrypt from the passphrase and a random 16-byte salt; each
encrypted member has its own random 12-byte nonce, and its name is the associated data (a
ciphertext moved to another member does not decrypt). The manifest records the salt, the scrypt
parameters and the nonces, never the passphrase or the key. The GCM tag makes a wrong passphrase
an error instead of garbage weights.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medimg.errors import PackageError, PackagePassphraseError
from medimg.typing import PathLike

__all__ = [
    "PASSPHRASE_ENV",
    "decrypt_member",
    "derive_key",
    "encryption_record",
    "read_passphrase_file",
    "resolve_passphrase",
]

PASSPHRASE_ENV = "MEDIMG_PASSPHRASE_FILE"
"""Environment variable naming a file whose first line is the passphrase (for services)."""

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
"""scrypt's cost parameters (about 32 MiB and 0.1 s per derivation)."""
_LIMITS = {"n": 2**20, "r": 32, "p": 16}
"""The largest parameters a package may ask for (a larger one is refused, not computed)."""


def read_passphrase_file(path: PathLike) -> str:
    """The passphrase in ``path``: its first line, without the line ending.

    Raises
    ------
    PackagePassphraseError
        When the file is empty or its first line is (the message never holds the passphrase).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise PackagePassphraseError(f"passphrase file {path}: not UTF-8 text") from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise PackagePassphraseError(
            f"passphrase file {path}: its first line is empty; write the passphrase on it"
        )
    return line


def resolve_passphrase(
    passphrase_file: PathLike | None = None, *, what: str = "the package", confirm: bool = False
) -> str | None:
    """A passphrase from ``passphrase_file``, else ``MEDIMG_PASSPHRASE_FILE``, else a prompt.

    The prompt (``getpass``, not echoed) is used only when stdin is a terminal; otherwise the
    result is None. ``confirm`` asks twice (when choosing a new passphrase).

    Raises
    ------
    PackagePassphraseError
        When the file is unusable, or the two typed passphrases differ.
    """
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    if os.environ.get(PASSPHRASE_ENV):
        return read_passphrase_file(os.environ[PASSPHRASE_ENV])
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(f"passphrase for {what}: ")
    if confirm and getpass.getpass("again: ") != first:
        raise PackagePassphraseError("the two passphrases typed differ; run again")
    if not first:
        raise PackagePassphraseError(f"an empty passphrase was typed for {what}")
    return first


def derive_key(passphrase: str | bytes, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    """The 32-byte AES key scrypt derives from ``passphrase`` (str: its UTF-8) and ``salt``."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)


def encryption_record(salt: bytes, nonces: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest's ``encryption`` object for members encrypted with these nonces."""
    return {
        "cipher": "AES-256-GCM",
        "kdf": "scrypt",
        "salt": salt.hex(),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "nonces": {name: nonce.hex() for name, nonce in nonces.items()},
    }


def encrypt_member(key: bytes, name: str, data: bytes) -> tuple[bytes, bytes]:
    """``(nonce, ciphertext and tag)`` of ``data`` under ``key``, bound to member ``name``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce, AESGCM(key).encrypt(nonce, data, name.encode("utf-8"))


def check_encryption(package: Path, record: object) -> dict[str, Any]:
    """The manifest's ``encryption`` object, every field checked (parameters bounded)."""
    where = f"{package}: MANIFEST.json field 'encryption'"
    if not isinstance(record, dict):
        raise PackageError(f"{where} must be an object, got {type(record).__name__}")
    if record.get("cipher") != "AES-256-GCM" or record.get("kdf") != "scrypt":
        raise PackageError(
            f"{where} names cipher {record.get('cipher')!r} with kdf {record.get('kdf')!r}; "
            "this medimg reads AES-256-GCM with scrypt"
        )
    for field, limit in _LIMITS.items():
        value = record.get(field)
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit):
            raise PackageError(f"{where}.{field} must be an integer in 1..{limit}, got {value!r}")
    try:
        bytes.fromhex(record["salt"])
        for nonce in record["nonces"].values():
            if len(bytes.fromhex(nonce)) != 12:
                raise ValueError("nonce of other than 12 bytes")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PackageError(f"{where}: salt or nonces malformed ({exc})") from None
    return record


def decrypt_member(
    package: Path, name: str, data: bytes, key: bytes, record: Mapping[str, Any]
) -> bytes:
    """The plaintext of encrypted member ``name``; a wrong key (passphrase) is named as such."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = bytes.fromhex(record["nonces"][name])
    try:
        return AESGCM(key).decrypt(nonce, data, name.encode("utf-8"))
    except InvalidTag:
        raise PackagePassphraseError(
            f"wrong passphrase for {package} (member {name!r} does not decrypt with it; its "
            "bytes match MANIFEST.json, so the passphrase is what differs); give the "
            "passphrase it was packed with"
        ) from None
