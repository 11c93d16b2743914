"""``medimg serve``: the inference service, and ``medimg serve token create|revoke|list``."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from medimg.cli import positive_float, positive_int

__all__ = ["register"]

_DATA_HELP = "the service's folder: job store, uploads, results, tokens (default: %(default)s)"
_DEFAULT_DATA = "medimg-serve"


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand (and its ``token`` group) to ``sub``."""
    from medimg.serve.settings import ServeSettings

    d = ServeSettings(data_dir=Path(_DEFAULT_DATA))
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve models over HTTP with a browser viewer (and manage its tokens)",
        description="Serve models over HTTP: the /v1 API (OpenAPI at /docs), a browser page at "
        "/ (NiiVue viewer), jobs in SQLite under --data that survive restarts. Binds "
        "127.0.0.1 unless --host says otherwise, which needs a token (medimg serve token "
        "create).",
    )
    p.add_argument(
        "--model",
        action="append",
        type=Path,
        default=[],
        metavar="PACKAGE",
        help="a .medimg package, model folder or run folder (repeat for more)",
    )
    p.add_argument("--host", default=d.host, help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port (default: %(default)s)")
    p.add_argument("--data", type=Path, default=Path(_DEFAULT_DATA), help=_DATA_HELP)
    p.add_argument(
        "--workers",
        type=positive_int,
        default=d.workers,
        help="worker processes, one job each at a time (default: %(default)s)",
    )
    p.add_argument(
        "--device", default=d.device, help="device of the workers' models (default: %(default)s)"
    )
    p.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        metavar="KEY",
        help="a trusted signer's public key (repeat); packages must be signed by one",
    )
    p.add_argument(
        "--max-queued",
        type=positive_int,
        default=d.max_queued,
        help="jobs waiting at most; more are answered 429 (default: %(default)s)",
    )
    p.add_argument(
        "--max-jobs-per-token",
        type=positive_int,
        default=d.max_active_per_token,
        help="unfinished jobs one token may hold (default: %(default)s)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=d.max_upload_bytes / 2**20,
        help="largest upload in MiB (default: %(default)g)",
    )
    p.add_argument(
        "--max-decoded-mb",
        type=positive_float,
        default=d.max_decoded_bytes / 2**20,
        help="largest decoded volume or unzipped series in MiB (default: %(default)g)",
    )
    p.add_argument(
        "--upload-timeout-s",
        type=positive_float,
        default=d.upload_timeout_s,
        help="longest an upload may take (default: %(default)g)",
    )
    p.add_argument(
        "--result-ttl-hours",
        type=positive_float,
        default=d.result_ttl_s / 3600,
        help="finished jobs are deleted after this long (default: %(default)g)",
    )
    p.add_argument(
        "--job-precision",
        action="append",
        default=[],
        metavar="PRECISION",
        help="an autocast precision a job may ask for (form field precision: float32, "
        "bfloat16, float16 or auto; repeat); default: none, jobs run at the model's own",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages of ORIGIN (CORS is off unless given)",
    )
    p.set_defaults(handler=run)
    tokens = p.add_subparsers(dest="serve_command", metavar="token")
    t = tokens.add_parser(
        "token",
        help="create, revoke or list API tokens",
        description="API tokens of the service in --data.",
    )
    actions = t.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a token (printed once, stored hashed)")
    create.add_argument("--name", default="default", help="a label for the token")
    revoke = actions.add_parser("revoke", help="revoke a token by its id (token list)")
    revoke.add_argument("token_id", metavar="ID")
    listing = actions.add_parser("list", help="the tokens' ids, names and dates")
    for action in (create, revoke, listing):
        action.add_argument("--data", type=Path, default=Path(_DEFAULT_DATA), help=_DATA_HELP)
        action.set_defaults(handler=run_token)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_token(args: argparse.Namespace) -> int:
    """Handle ``medimg serve token create|revoke|list``."""
    from medimg.serve.store import JobStore
    from medimg.serve.tokens import TokenStore

    tokens = TokenStore(JobStore(args.data / "jobs.sqlite3"))
    if args.token_action == "create":
        info, token = tokens.create(args.name)
        print(f"token {info.id} ({info.name}) created; it is shown only now, keep it safe:")
        print(token)
    elif args.token_action == "revoke":
        info = tokens.revoke(args.token_id)
        print(f"token {info.id} ({info.name}) revoked at {_when(info.revoked)}")
    else:
        for info in tokens.list():
            state = "active" if info.revoked is None else f"revoked {_when(info.revoked)}"
            print(f"{info.id}  {info.name}  created {_when(info.created)}  {state}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg serve``: check the settings, load the models, run uvicorn."""
    import uvicorn

    from medimg.errors import ConfigError
    from medimg.serve import ServeSettings, create_app
    from medimg.serve.models import describe_models, load_models
    from medimg.serve.settings import MIB, is_loopback
    from medimg.serve.store import JobStore
    from medimg.serve.tokens import TokenStore

    settings = ServeSettings(
        data_dir=args.data,
        models=tuple(args.model),
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_queued=args.max_queued,
        max_active_per_token=args.max_jobs_per_token,
        max_upload_bytes=int(args.max_upload_mb * MIB),
        max_decoded_bytes=int(args.max_decoded_mb * MIB),
        upload_timeout_s=args.upload_timeout_s,
        result_ttl_s=args.result_ttl_hours * 3600,
        cors_origins=tuple(args.cors_origin),
        trust=tuple(args.trust),
        device=args.device,
        job_precisions=tuple(args.job_precision),
    )
    if not is_loopback(settings.host) and not TokenStore(JobStore(settings.db_path)).active():
        raise ConfigError(
            f"--host {settings.host} is reachable from other machines, but {settings.data_dir} "
            "has no token; create one first (medimg serve token create --data "
            f"{settings.data_dir}) or bind 127.0.0.1"
        )
    models = describe_models(load_models(settings))
    app = create_app(settings, models)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=5
    )
    return 0
