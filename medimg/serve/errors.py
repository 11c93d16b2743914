"""The service's own error: a refused request with its HTTP status."""

from __future__ import annotations

from medimg.errors import MedimgError

__all__ = ["UploadError"]


class UploadError(MedimgError, ValueError):
    """An upload (or request) refused with HTTP `status` (4xx) and a message saying why."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)
