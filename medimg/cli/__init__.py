"""The ``medimg`` command: a thin layer of subcommands over the library.

Each subcommand lives in its own module under :mod:`medimg.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``handler``. Handlers import heavy
packages (torch, MONAI) inside their body so ``medimg --help`` answers instantly.

:func:`main` turns every expected failure into one ``error:`` line on stderr and an exit code
(:data:`EXIT_CODES`): medimg's own errors, the operating system's (a folder that cannot be
written, a full disk), running out of memory, Ctrl-C and a reader that closed the pipe
(``medimg dicom ls DIR | head``). Anything else is a bug in medimg and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from medimg import __version__
from medimg.errors import CaseError, MedimgError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = [
    "EXIT_CODES",
    "add_max_memory_option",
    "build_parser",
    "gb_in_bytes",
    "main",
    "non_negative_int",
    "positive_float",
    "positive_int",
]

EXIT_CODES = MappingProxyType(
    {
        0: "success",
        1: "failed work: a case or series could not be processed, or the system failed "
        "while working (disk full, out of memory, I/O error)",
        2: "user error: bad arguments or inputs, or an output path that cannot be used; "
        "the message names the file or option and the fix",
        130: "interrupted (Ctrl-C)",
        141: "the reader of the output went away (e.g. `| head`); the rest was not printed",
    }
)
"""Exit status of ``medimg`` and what each means (also in ``medimg --help``)."""

_COMMAND_MODULES: tuple[str, ...] = (
    "medimg.cli.info",
    "medimg.cli.demo",
    "medimg.cli.tasks",
    "medimg.cli.validate",
    "medimg.cli.synth",
    "medimg.cli.fingerprint",
    "medimg.cli.manifest",
    "medimg.cli.importers",
    "medimg.cli.dicom",
    "medimg.cli.serve",
    "medimg.cli.model",
)
"""Modules that each register one subcommand (or a group), in ``--help`` order."""

# An OSError with one of these errnos means the path given cannot be used as it is (a user
# error, exit 2); any other (ENOSPC, EIO, ...) means the system failed during the work (exit 1).
_PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOTEMPTY,
    }
)
_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                PermissionError)  # fmt: skip
_OS_HINTS = MappingProxyType(
    {
        errno.ENOENT: "check the path",
        errno.EEXIST: "it is in the way; choose another path or remove it",
        errno.ENOTDIR: "a part of the path is a file; choose another path",
        errno.EISDIR: "give a file, not a folder",
        errno.EACCES: "choose a folder you may write to, or change its permissions",
        errno.EPERM: "choose a folder you may write to, or change its permissions",
        errno.EROFS: "the file system is read-only; choose a writable folder",
        errno.ENOSPC: "free disk space (or choose another disk) and run again",
    }
)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--cases 0`` is refused with exit code 2)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a seed, a count that may be zero)."""
    return _int_at_least(text, 0)


def _finite_positive(text: str, what: str) -> float:
    """``text`` as a finite number > 0, or an argparse error saying ``what`` it must be."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a {what}, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite {what} > 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a limit, a share of a CPU, a time)."""
    return _finite_positive(text, "number")


def gb_in_bytes(text: str) -> int:
    """An argparse type for ``--max-memory-gb``: a finite number of GiB > 0, returned in bytes.

    Commands store it as ``max_bytes`` (``dest="max_bytes"``), the library's decode limit.

    Examples
    --------
    >>> gb_in_bytes("0.5")
    536870912
    """
    value = _finite_positive(text, "number of GiB")
    if value * 1024**3 < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least one byte (about 1e-9 GiB), got {text!r}"
        )
    return int(value * 1024**3)


def add_max_memory_option(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Add ``--max-memory-gb GB`` to `parser`: the decode limit, as ``args.max_bytes`` in bytes.

    ``args.max_bytes`` is None when the option is not given: the library then applies
    :func:`medimg.io.default_max_bytes` when it reads. `what` begins the help text.
    """
    parser.add_argument(
        "--max-memory-gb",
        type=gb_in_bytes,
        default=None,
        dest="max_bytes",
        metavar="GB",
        help=f"{what} (default: 80%% of the memory available at the time, at most 16 GiB)",
    )


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, except that a failed write of help or version text to stdout is not ignored.

    argparse drops an ``OSError`` from writing ``--help`` (``medimg --help > /dev/full`` would
    exit 0 with nothing written); here it reaches :func:`main`, which reports it (exit 1, or 141
    for a closed pipe). A failed write to stderr is still dropped: there is nowhere to say so.
    Subcommand parsers are of this class too (``add_subparsers`` uses the parent's class).
    """

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        stdout = sys.stdout
        if not message or file is not stdout:
            super()._print_message(message, file)
            return
        sys.stdout.write(message)
        sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = _Parser(
        prog="medimg",
        description="Medical-imaging pipelines on MONAI: geometry-true IO, validated "
        "manifests,\none preprocessing chain per modality.",
        epilog="exit status:\n"
        + "\n".join(
            textwrap.fill(meaning, 78, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
            for code, meaning in EXIT_CODES.items()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    """Run the command line; return the exit code (:data:`EXIT_CODES`).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``medimg``; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        0 success, 1 failed work, 2 user error, 130 interrupted, 141 output pipe closed.
        argparse's own errors exit 2 (``SystemExit``) before any work starts.
    """
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except OSError as exc:  # stdout itself failed: a full disk behind `> out.txt`, say
        _silence_stdout()
        _print_error(f"cannot write the output: {_os_message(exc)}", type(exc).__name__)
        return 1


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc relaunches them
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.handler(args)
    except BrokenPipeError:
        raise
    except MedimgError as exc:
        _print_error(str(exc), type(exc).__name__)
        return 1 if isinstance(exc, CaseError) else 2
    except OSError as exc:
        _print_error(_os_message(exc), type(exc).__name__)
        return 2 if isinstance(exc, _PATH_ERRORS) or exc.errno in _PATH_ERRNOS else 1
    except MemoryError as exc:
        _print_error(f"out of memory: {str(exc) or 'an allocation failed'}", "MemoryError")
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def _print_error(message: str, fallback: str) -> None:
    first, *rest = message.splitlines() or [fallback]
    print(f"error: {first}", file=sys.stderr)
    for line in rest:
        print(line, file=sys.stderr)


def _os_message(exc: OSError) -> str:
    """``PATH: reason; hint`` for an OSError from the system (not one of medimg's)."""
    if exc.strerror is None:  # raised by hand with a message only
        return str(exc) or type(exc).__name__
    where = "" if exc.filename is None else f"{exc.filename}: "
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}: "
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{where}{exc.strerror.lower()}" + (f"; {hint}" if hint else "")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's flush at exit does not fail again.

    The recipe of the Python documentation (``signal`` module, "Note on SIGPIPE").
    """
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
