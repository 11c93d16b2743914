"""Integrity primitives: input file identity and stale temporaries.

These are the keys and clean-ups that caches, resumable batches and training runs share,
so that nothing is reused when its inputs changed; :mod:`medimg.io.locks` keeps two runs out of
one folder.

**File identity.** :func:`file_identity` records a file's size, ``mtime_ns``, ``ctime_ns``,
inode and the SHA-256 of its bytes. Two identities *match* (:meth:`FileIdentity.same_content`)
when size and SHA-256 agree: the content decides, so a ``touch``, a copy or a restore from backup
does not invalidate a cache, while any change of a voxel does, even when a tool kept the old
``mtime`` (``cp -p``, ``rsync -t``, ``tar x`` and coarse network file systems all can). Hashing
costs one read of the file (about 1-2 GB/s); to avoid it on every run, ``previous=`` reuses a
recorded hash when size, ``mtime_ns``, ``ctime_ns`` and inode are all unchanged. ``ctime`` is set
by the kernel on every write or metadata change and cannot be set back by user tools, so that
shortcut trusts nothing a user can forge by accident.

A folder input (a DICOM series) is identified by every file in it (:func:`path_identities`).

**Stale temporaries.** :func:`medimg.io.atomic_path` writes to ``.NAME.XXXXXXXX.tmp...`` beside
the target. A ``kill -9`` can leave one behind; :func:`remove_stale_temporaries` deletes them and
is called by a run once it holds the folder's lock (:class:`medimg.io.locks.OutputLock`), so
no live writer can own them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medimg.typing import PathLike

__all__ = [
    "FileIdentity",
    "file_identity",
    "input_files",
    "is_temporary_name",
    "path_identities",
    "remove_stale_temporaries",
    "sha256_file",
]

logger = logging.getLogger(__name__)

_BLOCK = 1 << 20
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\..*)?$")
"""What :func:`medimg.io.atomic_path` names its temporaries: ``.NAME.<8 random>.tmp<suffix>``."""


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (memory stays bounded).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"abc"); f.flush()
    ...     sha256_file(f.name)[:16]
    'ba7816bf8f01cfea'
    """
    sha = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            sha.update(block)
    return sha.hexdigest()


@dataclass(frozen=True)
class FileIdentity:
    """What identifies one input file's content; see the module docstring.

    Attributes
    ----------
    path : str
        The resolved path when the identity was taken (informational: content decides).
    size : int
        Bytes.
    mtime_ns, ctime_ns, inode : int
        From ``os.stat``; used only to skip re-hashing an unchanged file.
    sha256 : str
        Hex SHA-256 of the bytes.
    """

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    sha256: str

    def same_content(self, other: FileIdentity | None) -> bool:
        """Whether ``other`` has the same size and SHA-256 (path and times do not matter)."""
        return other is not None and (self.size, self.sha256) == (other.size, other.sha256)

    def to_json(self) -> dict[str, Any]:
        """The identity as a JSON-ready dict (inverse of :meth:`from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, record: Any) -> FileIdentity | None:
        """Parse :meth:`to_json`'s output; ``None`` when ``record`` is not a valid identity."""
        if not isinstance(record, dict):
            return None
        try:
            return cls(
                path=str(record["path"]),
                size=int(record["size"]),
                mtime_ns=int(record["mtime_ns"]),
                ctime_ns=int(record["ctime_ns"]),
                inode=int(record["inode"]),
                sha256=str(record["sha256"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def file_identity(path: PathLike, *, previous: FileIdentity | None = None) -> FileIdentity:
    """Identity of the file at ``path``, hashing it unless ``previous`` still describes it.

    Parameters
    ----------
    path : path-like
        A regular file (symlinks are followed).
    previous : FileIdentity, optional
        An identity recorded earlier. When the resolved path, size, ``mtime_ns``, ``ctime_ns``
        and inode are all unchanged its SHA-256 is reused without reading the file.

    Raises
    ------
    FileNotFoundError, OSError
        When the file cannot be read.
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    stat_key = (str(resolved), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if previous is not None and stat_key == (
        previous.path,
        previous.size,
        previous.mtime_ns,
        previous.ctime_ns,
        previous.inode,
    ):
        return previous
    return FileIdentity(
        path=str(resolved),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        sha256=sha256_file(resolved),
    )


def input_files(path: PathLike) -> list[Path]:
    """The files an input path stands for: itself, or every file of a (DICOM series) folder.

    A folder's files are listed recursively and sorted by their path inside it; names starting
    with ``.`` (hidden files, :func:`medimg.io.atomic_path` temporaries) are left out, as the
    DICOM reader leaves them out.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return [path]
    return sorted(
        (p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.relative_to(path).parts,
    )


def path_identities(
    path: PathLike, *, previous: Mapping[str, FileIdentity] | None = None
) -> tuple[FileIdentity, ...]:
    """Identity of every file of an input path (:func:`input_files`), in that order.

    A file gives one identity; a DICOM series folder one per file, so adding, removing or
    changing any slice changes the result.

    Parameters
    ----------
    path : path-like
        A file or a folder.
    previous : mapping of str to FileIdentity, optional
        Identities recorded earlier, by resolved path: their hashes are reused where the stat
        fields allow (see :func:`file_identity`).

    Raises
    ------
    FileNotFoundError, OSError
        When a file cannot be read.
    """
    earlier = previous or {}
    return tuple(
        file_identity(p, previous=earlier.get(str(p.resolve()))) for p in input_files(path)
    )


# --------------------------------------------------------------------------------------------
# stale temporaries


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`medimg.io.atomic_path`'s temporary file names.

    Examples
    --------
    >>> is_temporary_name(".case_004.nii.gz.k2j3h_x9.tmp.nii.gz")
    True
    >>> is_temporary_name("case_004.nii.gz")
    False
    """
    return bool(_TEMP_RE.match(name))


def remove_stale_temporaries(folder: PathLike, *, recursive: bool = False) -> list[Path]:
    """Delete temporaries left in ``folder`` by an interrupted write; return what was removed.

    Call this only while holding the folder's :class:`OutputLock`: a live writer's temporary
    looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    removed = []
    for path in candidates:
        if path.is_file() and is_temporary_name(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.warning(
            "%s: removed %d temporary file(s) left by an interrupted run: %s",
            folder,
            len(removed),
            ", ".join(p.name for p in removed[:5]) + (" ..." if len(removed) > 5 else ""),
        )
    return removed
