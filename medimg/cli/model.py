"""``medimg model keygen|pack|show|verify``: hand a trained model over as one package file.

The group is extensible: each module of :data:`EXTRA_MODULES` that exists is imported and its
``register_model(subparsers)`` adds its own subcommands (ONNX and MONAI bundle export/import).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

__all__ = ["EXTRA_MODULES", "register"]

EXTRA_MODULES: tuple[str, ...] = ("medimg.cli._model_interop",)
"""Modules adding subcommands to ``medimg model`` through ``register_model(subparsers)``."""

_TRUST_HELP = (
    "a trusted signer's public key file (or a folder of *.pub* files); repeat for several. "
    "Without it: the files of MEDIMG_TRUST (os.pathsep-separated), else ~/.config/medimg/trust/"
)


def register(sub: Any) -> None:
    """Add the ``model`` group to ``sub``."""
    group: argparse.ArgumentParser = sub.add_parser(
        "model",
        help="package, sign, encrypt, inspect and verify trained models",
        description="Hand a trained model over as one .medimg package (a zip archive): "
        "weights as safetensors, model record, fingerprint, input contract, model card, "
        "evaluation, and a manifest of SHA-256s, optionally signed (Ed25519) and encrypted "
        "(AES-256-GCM). Every load verifies it before any weight is read.",
    )
    inner = group.add_subparsers(dest="model_command", metavar="COMMAND")
    group.set_defaults(handler=lambda args: _group_help(group))
    _register_keygen(inner)
    _register_pack(inner)
    _register_show(inner)
    _register_verify(inner)
    for name in EXTRA_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register_model(inner)


def _group_help(group: argparse.ArgumentParser) -> int:
    group.print_help()
    return 2


def _register_keygen(inner: Any) -> None:
    p: argparse.ArgumentParser = inner.add_parser(
        "keygen",
        help="make an Ed25519 signing key pair",
        description="Write DIR/medimg-signing.pem (the private key, mode 0600: keep it secret) "
        "and DIR/medimg-signing.pub.pem (the public key: give it to whoever checks your "
        "packages). Existing keys are never overwritten.",
    )
    p.add_argument("folder", metavar="DIR", type=Path)
    p.set_defaults(handler=run_keygen)


def _register_pack(inner: Any) -> None:
    p: argparse.ArgumentParser = inner.add_parser(
        "pack",
        help="write a run's model as one .medimg package",
        description="Load and verify the model of RUN_DIR (a run folder or its model folder) "
        "and write PACKAGE (a zip named *.medimg) atomically. --encrypt takes the passphrase "
        "from --passphrase-file F, else the file named by MEDIMG_PASSPHRASE_FILE, else a "
        "prompt on the terminal; it is never logged or stored.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    p.add_argument("package", metavar="PACKAGE", type=Path)
    p.add_argument("--sign-key", type=Path, metavar="KEY",
                   help="sign with this Ed25519 private key (medimg model keygen)")  # fmt: skip
    p.add_argument("--encrypt", action="store_true",
                   help="encrypt the weights (AES-256-GCM, key from scrypt)")  # fmt: skip
    p.add_argument("--passphrase-file", type=Path, metavar="F",
                   help="the passphrase is the first line of F (with --encrypt)")  # fmt: skip
    p.add_argument("--onnx", action="store_true",
                   help="add the network as ONNX (dynamic spatial dimensions)")  # fmt: skip
    p.add_argument("--name", help="the model's name (default: PACKAGE's stem)")
    p.add_argument("--model-version", metavar="VERSION", help="the model's version (default 1)")
    p.add_argument("--force", action="store_true", help="replace an existing PACKAGE")
    p.set_defaults(handler=run_pack)


def _register_show(inner: Any) -> None:
    p: argparse.ArgumentParser = inner.add_parser(
        "show",
        help="print a package's model card and input contract",
        description="Verify PACKAGE (hashes; the signature when a trust store is configured) "
        "and print its model card and input contract.",
    )
    p.add_argument("package", metavar="PACKAGE", type=Path)
    p.add_argument("--trust", action="append", type=Path, metavar="PUBKEY", help=_TRUST_HELP)
    p.add_argument("--json", action="store_true", help="print the manifest and contract as JSON")
    p.set_defaults(handler=run_show)


def _register_verify(inner: Any) -> None:
    p: argparse.ArgumentParser = inner.add_parser(
        "verify",
        help="check a package's integrity and signature",
        description="Check PACKAGE: zip structure, every member's SHA-256 against MANIFEST.json, "
        "the format version, and the signature. With a trust store (--trust, MEDIMG_TRUST or "
        "~/.config/medimg/trust/) it must be signed by one of its keys; without one the "
        "signature is checked for consistency only and the output says so. Exit 0 only for "
        "an intact package (signed by a trusted key when a store is given), else 2 with the "
        "package and the member at fault.",
    )
    p.add_argument("package", metavar="PACKAGE", type=Path)
    p.add_argument("--trust", action="append", type=Path, metavar="PUBKEY", help=_TRUST_HELP)
    p.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="F",
        help="also check that an encrypted package decrypts with this passphrase",
    )
    p.set_defaults(handler=run_verify)


def run_keygen(args: argparse.Namespace) -> int:
    """Handle ``medimg model keygen``."""
    from medimg.packages import generate_keypair

    pair = generate_keypair(args.folder)
    print(f"private key  {pair.private}  (keep it secret; sign with pack --sign-key)")
    print(f"public key   {pair.public}  (give it to those who verify: --trust)")
    print(f"fingerprint  {pair.fingerprint}")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    """Handle ``medimg model pack``."""
    from medimg.errors import ConfigError, PackagePassphraseError
    from medimg.packages import pack_model, read_package, resolve_passphrase

    passphrase = None
    if args.encrypt:
        passphrase = resolve_passphrase(args.passphrase_file, what=str(args.package), confirm=True)
        if passphrase is None:
            raise PackagePassphraseError(
                "--encrypt needs a passphrase: give --passphrase-file F, set "
                "MEDIMG_PASSPHRASE_FILE=F, or run on a terminal to type it"
            )
    elif args.passphrase_file is not None:
        raise ConfigError("--passphrase-file is only used with --encrypt; add --encrypt or drop it")
    path = pack_model(
        args.run_dir, args.package, sign_key=args.sign_key, passphrase=passphrase,
        onnx=args.onnx, name=args.name, version=args.model_version, overwrite=args.force,
    )  # fmt: skip
    package = read_package(path, trust=[])
    print(f"{path}")
    print(f"  sha256     {package.sha256}")
    print(f"  members    {len(package.manifest['members'])}")
    print(f"  signed by  {package.signed_by or 'unsigned'}")
    print(f"  encrypted  {'yes' if package.encrypted else 'no'}")
    return 0


def _read(args: argparse.Namespace, passphrase: str | None = None) -> Any:
    from medimg.packages import read_package

    return read_package(args.package, trust=args.trust, passphrase=passphrase)


def run_show(args: argparse.Namespace) -> int:
    """Handle ``medimg model show``."""
    package = _read(args)
    if args.json:
        print(json.dumps({"manifest": package.manifest, "contract": package.contract}, indent=2))
        return 0
    print(package.card.rstrip("\n"))
    print()
    print("## contract.json")
    print()
    print(json.dumps(package.contract, indent=2))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Handle ``medimg model verify``."""
    from medimg.packages import read_passphrase_file

    passphrase = None
    if args.passphrase_file is not None:
        passphrase = read_passphrase_file(args.passphrase_file)
    package = _read(args, passphrase)
    manifest = package.manifest
    print(f"{package.path}: intact ({len(manifest['members'])} members, every SHA-256 matches)")
    print(f"  sha256     {package.sha256}")
    print(f"  model      {manifest.get('name')} {manifest.get('version')} ({manifest.get('task')})")
    made = manifest.get("made_by") or {}
    print(f"  made by    medimg {made.get('medimg')}, package format {manifest['format_version']}")
    if package.signed_by is None:
        signature = "unsigned"
    elif package.trusted:
        signature = f"signed by {package.signed_by} (trusted)"
    else:
        signature = f"signed by {package.signed_by}, not checked against a trust store"
    print(f"  signature  {signature}")
    encrypted = "no"
    if package.encrypted:
        encrypted = "yes (passphrase checked)" if passphrase else "yes (passphrase not checked)"
    print(f"  encrypted  {encrypted}")
    return 0
