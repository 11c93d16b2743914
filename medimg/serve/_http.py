"""HTTP plumbing of the service: security headers, Bearer tokens, a bounded, timed upload."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import HTTPException, Request
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medimg.serve.tokens import TokenStore

__all__ = ["SecurityHeaders", "read_form", "require_token"]

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' blob: data:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """ASGI middleware adding the security headers above (and ``no-store`` on the API)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_HEADERS)
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def require_token(request: Request) -> str:
    """The caller's owner id: its token's id, or ``anonymous`` while no token exists.

    Raises
    ------
    HTTPException
        401 with ``WWW-Authenticate: Bearer`` when tokens exist and none (or a wrong one)
        came.
    """
    tokens: TokenStore = request.app.state.tokens
    if not tokens.active():
        return "anonymous"
    challenge = {"WWW-Authenticate": 'Bearer realm="medimg"'}
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HTTPException(
            401,
            "this service needs a token: send the header "
            "'Authorization: Bearer <token>' (medimg serve token create makes "
            "one)",
            headers=challenge,
        )
    owner = tokens.check(value.strip())
    if owner is None:
        raise HTTPException(
            401,
            "the token is not valid (mistyped or revoked); ask the "
            "service's operator for one (medimg serve token list)",
            headers=challenge,
        )
    return owner


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


async def read_form(request: Request, *, max_bytes: int, timeout_s: float) -> FormData:
    """Parse the multipart body of `request`, at most `max_bytes`, within `timeout_s`.

    The body is counted as it arrives (a missing or lying ``Content-Length`` cannot get
    past the limit) and the whole upload must arrive before the deadline, so a slow client
    cannot hold a connection open (slowloris).

    Raises
    ------
    HTTPException
        413 past the size, 408 past the deadline, 400 for a malformed multipart body.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(
            413,
            f"the request body has {declared} bytes, at most {max_bytes}; "
            "upload a smaller file (or ask for a larger --max-upload-mb)",
        )
    deadline = time.monotonic() + timeout_s
    received = 0
    upstream = request.receive

    async def receive() -> Message:
        nonlocal received
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TooSlow
        try:
            message = await asyncio.wait_for(upstream(), remaining)
        except TimeoutError:
            raise _TooSlow from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise _TooLarge
        return message

    limited = Request(request.scope, receive)
    try:
        form: Any = await limited.form(max_files=1, max_fields=8)
    except _TooLarge:
        raise HTTPException(
            413,
            f"the request body is larger than {max_bytes} bytes; upload a "
            "smaller file (or ask for a larger --max-upload-mb)",
        ) from None
    except _TooSlow:
        raise HTTPException(
            408,
            f"the upload did not arrive within {timeout_s:g} s; check the "
            "connection and upload again",
            headers={"Connection": "close"},
        ) from None
    return form  # type: ignore[no-any-return]
