"""``medimg serve``: an inference service with a browser viewer.

* :mod:`~medimg.serve.settings` -- :class:`ServeSettings`, every option in one record;
* :mod:`~medimg.serve.store` -- jobs (and tokens) in SQLite with WAL; the store is the queue;
* :mod:`~medimg.serve.workers` -- worker processes that load the models and run jobs;
* :mod:`~medimg.serve.tokens` -- API tokens, stored hashed, compared in constant time;
* :mod:`~medimg.serve.uploads` -- uploads checked by parsing (and zips unpacked safely);
* :mod:`~medimg.serve.app` and :mod:`~medimg.serve.routes` -- the FastAPI app, ``/v1`` API,
  page, health and metrics.

Importing this package starts nothing; :func:`create_app` builds the app and its ASGI
lifespan starts the workers.
"""

from __future__ import annotations

from medimg.serve.app import create_app
from medimg.serve.errors import UploadError
from medimg.serve.settings import ServeSettings
from medimg.serve.store import Job, JobStore
from medimg.serve.tokens import TokenStore

__all__ = ["Job", "JobStore", "ServeSettings", "TokenStore", "UploadError", "create_app"]
