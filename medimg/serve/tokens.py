"""API tokens: created once (shown once), stored as SHA-256 digests, checked in constant time.

A token is ``mdg_`` followed by 43 URL-safe characters (256 random bits), so a plain SHA-256
digest is enough to store it (a slow password hash protects guessable secrets; these are not
guessable). :meth:`TokenStore.check` compares the digest of what arrived with every active
digest through :func:`hmac.compare_digest`, without stopping at the first match, so the time
taken does not depend on which token (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from medimg.errors import ConfigError
from medimg.serve.store import JobStore

__all__ = ["TOKEN_PREFIX", "TokenInfo", "TokenStore"]

TOKEN_PREFIX = "mdg_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token's record (never the token itself)."""

    id: str
    name: str
    created: float
    revoked: float | None


class TokenStore:
    """The ``tokens`` table of a :class:`~medimg.serve.store.JobStore`'s database."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def create(self, name: str) -> tuple[TokenInfo, str]:
        """A new token called `name`: its record and the token (shown once, stored hashed)."""
        if not name or len(name) > 100 or not name.isprintable():
            raise ConfigError(
                f"token name must be 1 to 100 printable characters, got {name!r}; "
                "e.g. --name radiology-ws1"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(id=secrets.token_hex(4), name=name, created=time.time(), revoked=None)
        with self.store.connect() as db:
            db.execute(
                "INSERT INTO tokens (id, name, digest, created) VALUES (?, ?, ?, ?)",
                (info.id, info.name, _digest(token), info.created),
            )
        return info, token

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke the token of id `token_id` (from :meth:`list`); it stops working at once."""
        with self.store.connect() as db:
            db.execute(
                "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (time.time(), token_id),
            )
        for info in self.list():
            if info.id == token_id:
                return info
        known = ", ".join(info.id for info in self.list()) or "none"
        raise ConfigError(
            f"token id must be one of those `medimg serve token list` shows ({known}), "
            f"got {token_id!r} in {self.store.path}"
        )

    def list(self) -> list[TokenInfo]:
        """Every token's record, oldest first (revoked ones too)."""
        with self.store.connect() as db:
            rows = db.execute(
                "SELECT id, name, created, revoked FROM tokens ORDER BY created, id"
            ).fetchall()
        return [TokenInfo(**dict(row)) for row in rows]

    def active(self) -> bool:
        """Whether any token is active (then every API call must carry one)."""
        with self.store.connect() as db:
            row = db.execute("SELECT 1 FROM tokens WHERE revoked IS NULL LIMIT 1").fetchone()
        return row is not None

    def check(self, token: str) -> str | None:
        """The id of the active token equal to `token`, or None; constant time per token."""
        wanted = _digest(token)
        with self.store.connect() as db:
            rows = db.execute("SELECT id, digest FROM tokens WHERE revoked IS NULL").fetchall()
        found = None
        for row in rows:
            if hmac.compare_digest(wanted, row["digest"]):
                found = row["id"]
        return found
