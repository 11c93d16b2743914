"""``medimg predict --model PACKAGE``: an encrypted package's passphrase, asked for when needed.

The passphrase comes from ``--passphrase-file F``, else ``MEDIMG_PASSPHRASE_FILE`` (both read by
the engine), else -- for an encrypted package only -- a ``getpass`` prompt when stdin is a
terminal (:func:`medimg.packages.resolve_passphrase`). Without a terminal the package is
refused before anything is predicted, saying where a passphrase can come from. It is held in
memory for the run only: never logged, written or passed on the command line.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ask_passphrase"]


def ask_passphrase(cfg: Any) -> str | None:
    """The typed passphrase of ``cfg.model_dir`` when it is an encrypted package needing one.

    Parameters
    ----------
    cfg : PredictConfig
        ``model_dir``, ``passphrase_file`` and ``trust`` are used.

    Returns
    -------
    str or None
        None when the model is no encrypted package, or a file gives the passphrase.

    Raises
    ------
    PackagePassphraseError
        When the package is encrypted, no file gives its passphrase and stdin is no terminal
        to ask on.
    PackageError, PackageSignatureError
        When the package fails its checks (as loading it would).
    """
    from medimg.errors import PackagePassphraseError
    from medimg.packages import PASSPHRASE_ENV, is_package, read_package, resolve_passphrase

    path = cfg.model_dir
    if cfg.passphrase_file is not None or os.environ.get(PASSPHRASE_ENV):
        return None
    if not (path.is_file() and is_package(path)):
        return None
    if not read_package(path, trust=cfg.trust or None).encrypted:
        return None
    passphrase = resolve_passphrase(None, what=str(path))
    if passphrase is None:
        raise PackagePassphraseError(
            f"package {path} is encrypted (member 'weights.safetensors') and stdin is not a "
            f"terminal to ask for its passphrase on: give --passphrase-file F (its first line) "
            f"or set {PASSPHRASE_ENV}=F"
        )
    return passphrase
