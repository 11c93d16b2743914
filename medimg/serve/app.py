"""The FastAPI application: API router, page, health, metrics, and the worker pool's life."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from medimg import __version__
from medimg.serve._http import SecurityHeaders, require_token
from medimg.serve.routes import router
from medimg.serve.settings import ServeSettings
from medimg.serve.store import JobStore
from medimg.serve.tokens import TokenStore
from medimg.serve.workers import WorkerPool

__all__ = ["STATIC_DIR", "WEB_DIR", "create_app"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
"""The page and its own scripts (committed)."""
WEB_DIR = Path(__file__).parent / "web"
"""``package.json`` and, after ``npm ci``, ``node_modules`` (NiiVue, Swagger UI)."""

_VENDOR = {
    "niivue.umd.js": "@niivue/niivue/dist/niivue.umd.js",
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
}
_PAGES = {"index.html", "viewer.js", "style.css", "docs.html", "docs.js"}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _sweeper(settings: ServeSettings, store: JobStore, stop: threading.Event) -> None:
    """Delete finished jobs older than ``result_ttl_s`` (checked every tenth of it, <= 60 s)."""
    every = min(60.0, settings.result_ttl_s / 10)
    while not stop.wait(every):
        for job_id in store.expired(time.time() - settings.result_ttl_s):
            store.delete(job_id)
            shutil.rmtree(settings.jobs_dir / job_id, ignore_errors=True)
            logger.info("job %s: expired and deleted", job_id)


def create_app(
    settings: ServeSettings, models: Mapping[str, dict[str, Any]], *, start_workers: bool = True
) -> FastAPI:
    """The service for `settings`, serving `models` (name to ``Model.describe()``).

    On start-up (ASGI lifespan) the store recovers jobs left running by a previous process,
    then the worker pool and the expiry sweeper start; on shutdown they stop.
    """
    store = JobStore(settings.db_path)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        requeued, failed = store.recover(settings.max_attempts)
        if requeued or failed:
            logger.warning(
                "recovered jobs left running: %d queued again, %d failed", requeued, failed
            )
        pool = WorkerPool(settings, store)
        stop = threading.Event()
        sweeper = threading.Thread(target=_sweeper, args=(settings, store, stop), daemon=True)
        if start_workers:
            pool.start()
        sweeper.start()
        app.state.pool = pool
        try:
            yield
        finally:
            stop.set()
            if start_workers:
                pool.stop()

    app = FastAPI(
        title="medimg serve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Inference on medimg models: upload an image, poll the "
        "job, download the label map (NIfTI) or findings (JSON).",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.tokens = TokenStore(store)
    app.state.models = dict(models)
    app.state.pool = None
    app.include_router(router)
    _add_pages(app)
    _add_health(app, settings, store)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(SecurityHeaders)
    return app


def _asset(name: str) -> Path:
    if name in _PAGES:
        return STATIC_DIR / name
    if name in _VENDOR:
        path = WEB_DIR / "node_modules" / _VENDOR[name]
        if not path.is_file():
            raise HTTPException(
                503,
                f"{name} is not installed: run `npm ci` in {WEB_DIR} "
                "(bash scripts/dev.sh setup does)",
            )
        return path
    raise HTTPException(404, f"no static file {name!r}")


def _add_pages(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(_asset("index.html"), media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(_asset("docs.html"), media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = _asset(name)
        return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"))


def _add_health(app: FastAPI, settings: ServeSettings, store: JobStore) -> None:
    @app.get("/healthz", summary="The process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Workers are up and the queue has room")
    def readyz(request: Request) -> JSONResponse:
        pool: WorkerPool | None = request.app.state.pool
        alive = 0 if pool is None else pool.ready()
        queued = store.counts()["queued"]
        ready = alive > 0 and queued < settings.max_queued
        body = {"status": "ready" if ready else "not ready", "workers": alive, "queued": queued}
        headers = {} if ready else {"Retry-After": "5"}
        return JSONResponse(body, status_code=200 if ready else 503, headers=headers)

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    def metrics(request: Request) -> Response:
        require_token(request)
        pool: WorkerPool | None = request.app.state.pool
        lines = ["# HELP medimg_jobs Jobs in the store by status.", "# TYPE medimg_jobs gauge"]
        for status, count in store.counts().items():
            lines.append(f'medimg_jobs{{status="{status}"}} {count}')
        numbers = {} if pool is None else pool.describe()
        for name, value in numbers.items():
            lines += [f"# TYPE medimg_worker_{name} gauge", f"medimg_worker_{name} {value}"]
        lines += [
            "# TYPE medimg_queue_capacity gauge",
            f"medimg_queue_capacity {settings.max_queued}",
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
