"""Checkpoints: atomic writes, SHA-256 digests, ``weights_only`` loading."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from medimg.errors import CheckpointError
from medimg.io.integrity import sha256_file
from medimg.io.writing import atomic_path
from medimg.typing import PathLike

__all__ = ["load_checkpoint", "save_checkpoint", "sha256_file"]


def save_checkpoint(state: dict[str, Any], path: PathLike) -> str:
    """Write ``state`` with ``torch.save`` atomically (replacing ``path``); return its SHA-256."""
    import torch

    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)
        digest = sha256_file(tmp)
    return digest


def load_checkpoint(path: PathLike, *, sha256: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file.
    sha256 : str, optional
        The digest recorded when it was written; a different file raises.

    Raises
    ------
    CheckpointError
        When the file is missing, its digest differs from ``sha256``, it is truncated or
        damaged, or it holds anything other than tensors and plain containers
        (``weights_only`` refuses arbitrary objects).
    OSError
        When the file cannot be read (permission denied, an I/O error of the disk).
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if sha256 is not None and (found := sha256_file(path)) != sha256:
        raise CheckpointError(
            f"checkpoint {path} has SHA-256 {found}, expected {sha256}; it was replaced or damaged"
        )
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError) as exc:
        # torch.load of a zip cut short raises OSError(EINVAL), of an empty file EOFError
        if isinstance(exc, OSError) and exc.errno != errno.EINVAL:
            raise  # permission denied, EIO, ...: the system's own error (the CLI says which)
        reason = exc.strerror if isinstance(exc, OSError) else "it ends before its data"
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({reason}); it is damaged or truncated: "
            "restore it or train again"
        ) from None
    except (pickle.UnpicklingError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded with weights_only=True: {exc}"
        ) from None
    return state
