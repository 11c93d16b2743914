"""``medimg info FILE...``: the grid and intensity range of image files.

The range is computed in chunks of a few MiB for NIfTI and Analyze (a 2.7 MB ``.nii.gz`` that
decodes to 2.7 GB no longer costs gigabytes), and reading it verifies the gzip trailer, so a
damaged body is reported. ``--header-only`` reads no voxels and so cannot see such damage.
``--max-memory-gb`` refuses files whose decoded size is larger, as the other commands would.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from medimg.cli import add_max_memory_option

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``info`` subcommand to ``sub``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "info",
        help="print shape, spacing, axis codes, affine, dtype and range of image files",
        description="Print shape, spacing (mm), axis codes, affine (RAS), dtype and intensity "
        "range of each file. Exit 2 if any file cannot be read.",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="NIfTI, Analyze, NRRD or MetaImage file, or a DICOM SEG (its segments listed)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument(
        "--header-only",
        action="store_true",
        help="read only headers (no intensity range; a damaged compressed body goes unseen)",
    )
    add_max_memory_option(p, what="refuse files that decode to more than GB GiB")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``medimg info``."""
    from medimg.errors import MedimgError
    from medimg.io import intensity_range, read_header

    failed = 0
    for name in args.files:
        try:
            record = read_header(name).describe()
            if record["format"] == "dicom-seg":  # a DICOM SEG: its segments too
                from dataclasses import asdict

                from medimg.io.dicom.seg import seg_info

                record["segments"] = [asdict(s) for s in seg_info(name)]
            if not args.header_only and record["format"] != "dicom-seg":
                record["range"] = list(intensity_range(name, max_bytes=args.max_bytes))
        except MedimgError as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(record) if args.json else _format(record))
    return 2 if failed else 0


def _format(record: dict[str, Any]) -> str:
    lines = [f"{record['file']}"]
    lines.append(f"  format    {record['format']}")
    channels = f" x {record['channels']} channels" if record["channels"] > 1 else ""
    lines.append(f"  shape     {' x '.join(map(str, record['shape']))}{channels}")
    lines.append(f"  spacing   {' x '.join(f'{s:g}' for s in record['spacing_mm'])} mm")
    lines.append(f"  axcodes   {record['axcodes']}")
    lines.append(f"  dtype     {record['dtype']}")
    if "range" in record:
        lines.append(f"  range     {record['range'][0]:g} .. {record['range'][1]:g}")
    for s in record.get("segments", ()):
        made = f"{s['algorithm_type']} {s['algorithm']}".strip()
        lines.append(
            f"  segment   {s['number']}: {s['label']!r} {s['type']} ({s['category']}; {made})"
        )
    rows = record["affine"]
    lines.append(
        "  affine    " + "\n            ".join(" ".join(f"{v:10.4f}" for v in r) for r in rows)
    )
    return "\n".join(lines)
