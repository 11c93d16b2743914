"""The ``medimg`` command: a thin layer of subcommands over the library.

Each subcommand lives in its own module under :mod:`medimg.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``handler``. Handlers import heavy
packages (torch, MONAI) inside their body so ``medimg --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from medimg import __version__
from medimg.errors import MedimgError

__all__ = ["build_parser", "main"]

_COMMAND_MODULES: tuple[str, ...] = (
    "medimg.cli.info",
    "medimg.cli.demo",
    "medimg.cli.segmentation",
    "medimg.cli.validate",
    "medimg.cli.synth",
    "medimg.cli.fingerprint",
    "medimg.cli.manifest",
    "medimg.cli.importers",
    "medimg.cli.dicom",
)
"""Modules that each register one subcommand (or a group), in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="medimg",
        description="Medical-imaging pipelines on MONAI: geometry-true IO, validated manifests, "
        "one preprocessing chain per modality.",
    )
    parser.add_argument("--version", action="version", version=f"medimg {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 failure, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.handler(args)
    except (MedimgError, FileExistsError, FileNotFoundError) as exc:
        first, *rest = str(exc).splitlines() or [type(exc).__name__]
        print(f"error: {first}", file=sys.stderr)
        for line in rest:
            print(line, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code
