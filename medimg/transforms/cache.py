"""Persistent on-disk cache of a deterministic preprocessing chain's output.

:class:`CachedChain` wraps a chain; the cache key of a sample is the SHA-256 of

* the chain's parameters (:func:`chain_key`: modality, every :class:`PreprocessConfig` field,
  the fingerprint's statistics, medimg's version and :data:`CACHE_VERSION`), and
* each input file named in the sample, by ``key_by``:

  ``"identity"`` (the default)
      Its size and SHA-256 (:func:`medimg.io.integrity.file_identity`). The content decides:
      any change of a voxel misses, even when a tool put the old ``mtime`` back (``cp -p``,
      ``rsync -t``, ``os.utime``), while a ``touch``, a copy or a move still hits. The hash is
      computed once per file: a small index in ``cache_dir/identities/`` keeps each file's
      identity, and while its size, ``mtime_ns``, ``ctime_ns`` and inode are unchanged the
      recorded hash is reused, so later epochs and runs only ``stat`` the file. ``ctime`` is
      set by the kernel on every write or metadata change and cannot be set back by user
      tools, which is why the shortcut is safe.
  ``"content"``
      Size and SHA-256, re-read on every call (no index; for file systems whose stat fields
      cannot be trusted).
  ``"stat"``
      Resolved path, size, ``mtime_ns``, ``ctime_ns`` and inode, without reading the file: a
      rewrite misses even with its ``mtime`` restored (``ctime`` moved), but so do a ``touch``
      and a copy.

Why not ``mtime`` alone (the key before issue 12): a file rewritten with its ``mtime`` kept
hit the old entry and training used the old arrays.

So a second epoch or a second run loads the result instead of recomputing it, and changing any
parameter or input file gives a new key (the old entry is simply not read again). MONAI's
``PersistentDataset`` differs on purpose: it hashes the data dictionary only (the file *names*),
so after a change of target spacing or HU window it keeps serving the old arrays from the same
cache folder; ``tests/transforms/test_cache.py`` shows it.

Entries and index records are written to a temporary file and renamed into place
(:func:`medimg.io.atomic_path`), so several DataLoader workers or runs can share a folder: a
reader sees a whole entry or none, two writers of one key write identical content, and two
writers of one index record each write a valid identity of the file. An unreadable entry is
recomputed; an unreadable index record is re-hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import zipfile
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from monai.data.meta_tensor import MetaTensor

from medimg.errors import ConfigError
from medimg.io import atomic_path
from medimg.io.integrity import FileIdentity, file_identity
from medimg.keys import Keys
from medimg.modality import Modality
from medimg.transforms.config import PreprocessConfig
from medimg.transforms.record import PreprocessRecord

if TYPE_CHECKING:
    from medimg.fingerprint import Fingerprint

__all__ = ["CACHE_VERSION", "CachedChain", "chain_key"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bumped whenever a change to the chain code changes its output, so old entries are not read."""

KeyBy = Literal["identity", "content", "stat"]

_UNREADABLE = (
    OSError,
    EOFError,
    RuntimeError,
    KeyError,
    IndexError,
    ValueError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)
"""What ``torch.load`` raises for a truncated or foreign file."""


def chain_key(modality: Modality, config: PreprocessConfig, fingerprint: Fingerprint | None) -> str:
    """SHA-256 of everything that parameterises a chain (see the module docstring).

    Examples
    --------
    >>> a = chain_key(Modality.CT, PreprocessConfig(hu_window="lung"), None)
    >>> a == chain_key(Modality.CT, PreprocessConfig(hu_window="bone"), None)
    False
    """
    import medimg

    params = {
        "cache_version": CACHE_VERSION,
        "medimg": medimg.__version__,
        "modality": modality.value,
        "config": dataclasses.asdict(config),
        "fingerprint": None if fingerprint is None else json.loads(fingerprint.statistics_json()),
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path, key_by: KeyBy, index: _IdentityIndex | None) -> str:
    if key_by == "stat":
        st = path.stat()
        return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
    identity = index.identity(path) if index is not None else file_identity(path)
    return f"{identity.size}:{identity.sha256}"


class _IdentityIndex:
    """Each input file's last identity, in memory and in ``cache_dir/identities/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.known: dict[str, FileIdentity] = {}

    def identity(self, path: Path) -> FileIdentity:
        resolved = str(path.resolve())
        record = self.folder / f"{hashlib.sha256(resolved.encode()).hexdigest()}.json"
        previous = self.known.get(resolved) or self._read(record)
        identity = file_identity(path, previous=previous)
        if identity is not previous:  # new or changed (stat or content): record it
            with atomic_path(record, overwrite=True) as tmp:
                tmp.write_text(json.dumps(identity.to_json()), encoding="utf-8")
        self.known[resolved] = identity
        return identity

    @staticmethod
    def _read(record: Path) -> FileIdentity | None:
        try:
            return FileIdentity.from_json(json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None


def _pack(sample: Mapping[Hashable, Any]) -> dict[str, Any]:
    """Plain tensors, lists and numbers only (``torch.load(weights_only=True)`` reads them)."""
    packed: dict[str, Any] = {"tensors": {}, "affines": {}, "record": None}
    for key, value in sample.items():
        if isinstance(value, MetaTensor):
            packed["affines"][str(key)] = value.affine.tolist()
        if isinstance(value, torch.Tensor):
            packed["tensors"][str(key)] = value.as_subclass(torch.Tensor).contiguous()
    record = sample.get(Keys.RECORD)
    if isinstance(record, PreprocessRecord):
        packed["record"] = record.to_dict()
    return packed


def _unpack(packed: dict[str, Any], data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    out: dict[Hashable, Any] = dict(data)
    for key, tensor in packed["tensors"].items():
        affine = packed["affines"].get(key)
        out[key] = tensor if affine is None else MetaTensor(tensor, affine=torch.tensor(affine))
    if packed["record"] is not None:
        out[Keys.RECORD] = PreprocessRecord.from_dict(packed["record"])
    return out


class CachedChain:
    """A deterministic chain whose outputs are kept on disk, keyed by inputs and parameters.

    Parameters
    ----------
    chain : callable
        The deterministic chain (e.g. ``preprocessing_for(...)`` without a cache).
    cache_dir : path
        Folder of the entries (created when needed); may be shared by workers and runs.
    params_key : str
        :func:`chain_key` of the chain's parameters.
    key_by : {"identity", "content", "stat"}
        How input files enter the key (see the module docstring).

    Raises
    ------
    ConfigError
        For an unknown ``key_by``.
    """

    def __init__(
        self,
        chain: Callable[[Mapping[Hashable, Any]], Any],
        cache_dir: Path | str,
        params_key: str,
        *,
        key_by: KeyBy = "identity",
    ) -> None:
        if key_by not in ("identity", "content", "stat"):
            raise ConfigError(
                f"key_by must be 'stat' or 'content' or 'identity' (the default), got {key_by!r}"
            )
        self.chain, self.cache_dir = chain, Path(cache_dir)
        self.params_key, self.key_by = params_key, key_by
        self._index = (
            _IdentityIndex(self.cache_dir / "identities") if key_by == "identity" else None
        )

    def entry_path(self, data: Mapping[Hashable, Any]) -> Path | None:
        """Where the sample's entry lives, or None when an input is in memory (no caching)."""
        parts = [self.params_key]
        for key in sorted(data, key=str):
            value = data[key]
            if isinstance(value, (str, Path)) and Path(value).is_file():
                parts.append(f"{key}={_file_digest(Path(value), self.key_by, self._index)}")
            elif isinstance(value, (str, int, float)):
                parts.append(f"{key}={value!r}")  # e.g. a case id: part of the key as is
            else:
                return None  # an in-memory volume: nothing stable to key it by
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.pt"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return the chain's output for ``data``, from the cache when an entry exists."""
        path = self.entry_path(data)
        if path is not None and path.is_file():
            try:
                return _unpack(torch.load(path, weights_only=True), data)
            except _UNREADABLE as exc:
                logger.warning("cache entry %s is unreadable (%s); recomputing it", path, exc)
        out = dict(self.chain(data))
        if path is not None:
            with atomic_path(path, overwrite=True) as tmp:
                torch.save(_pack(out), tmp)
        return out
