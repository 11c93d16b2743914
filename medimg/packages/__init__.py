"""Model packages: one signed, self-describing ``.medimg`` file to hand a trained model over.

A package is a zip archive holding ``model.json`` (the run's model record, ``checkpoint``
naming ``weights.safetensors``), ``weights.safetensors`` (the state dict; no pickle anywhere),
``fingerprint.json`` when the run has one, ``contract.json`` (task, modality, channels,
dimensions, orientation and spacing trained at, inference defaults), ``card.md`` (the model
card), ``evaluation/...`` (figures and metrics of the run), optionally ``network.onnx``, and
``MANIFEST.json`` (format version, versions, name, the SHA-256 and size of every other member).
A signed package adds ``SIGNATURE`` (Ed25519 over the bytes of ``MANIFEST.json``); an encrypted
one holds the weights (and ONNX) AES-256-GCM encrypted under a key scrypt derives from a
passphrase.

* :func:`pack_model` -- run or model folder to package.
* :func:`read_package` -- verify a package whole, then :class:`ModelPackage` (weights on demand).
* :func:`is_package` -- whether a path is meant as a package (not a model folder).
* :func:`generate_keypair`, :func:`trusted_keys`, :func:`key_fingerprint` -- signing keys and
  the trust store (``trust=``, ``MEDIMG_TRUST``, ``~/.config/medimg/trust/``).
* :func:`resolve_passphrase`, :func:`read_passphrase_file` -- a passphrase from a file,
  ``MEDIMG_PASSPHRASE_FILE`` or a prompt.
* :func:`task_of`, :func:`build_contract`, :func:`inference_defaults`,
  :func:`evaluation_files`, :func:`render_card` -- what a package says about its model (its
  task, ``contract.json``, ``evaluation/...``, ``card.md``), made the same way for a folder.
"""

from __future__ import annotations

from medimg.packages._card import (
    build_contract,
    evaluation_files,
    inference_defaults,
    render_card,
    task_of,
)
from medimg.packages._crypto import PASSPHRASE_ENV, read_passphrase_file, resolve_passphrase
from medimg.packages._format import FORMAT_VERSION, PACKAGE_SUFFIX, READABLE_FORMATS
from medimg.packages.pack import pack_model
from medimg.packages.read import ModelPackage, is_package, read_package
from medimg.packages.signing import (
    TRUST_ENV,
    KeyPair,
    generate_keypair,
    key_fingerprint,
    load_public_key,
    trusted_keys,
)

__all__ = [
    "FORMAT_VERSION",
    "PACKAGE_SUFFIX",
    "PASSPHRASE_ENV",
    "READABLE_FORMATS",
    "TRUST_ENV",
    "KeyPair",
    "ModelPackage",
    "build_contract",
    "evaluation_files",
    "generate_keypair",
    "inference_defaults",
    "is_package",
    "key_fingerprint",
    "load_public_key",
    "pack_model",
    "read_package",
    "read_passphrase_file",
    "render_card",
    "resolve_passphrase",
    "task_of",
    "trusted_keys",
]
