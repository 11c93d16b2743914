"""``medimg dicom ls DIR`` and ``medimg convert DICOM_DIR OUT_DIR``: DICOM folders."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from medimg.cli import add_max_memory_option, positive_int

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``dicom`` group (``dicom ls``) and ``convert`` to ``sub``."""
    group: argparse.ArgumentParser = sub.add_parser(
        "dicom",
        help="inspect DICOM folders",
        description="Inspect DICOM folders: which volumes they hold and why.",
    )
    inner = group.add_subparsers(dest="dicom_command", metavar="COMMAND")
    ls = inner.add_parser(
        "ls",
        help="list the volumes of a DICOM folder",
        description="List each volume found under DIR (recursively, or through DICOMDIR): "
        "modality, description, slice count, size, spacing, orientation, why a series was "
        "split and which files were left out. Reads headers only. A series that cannot be "
        "read (a truncated file, an invalid header value, a CT/MR/... slice without "
        "ImagePositionPatient, ImageOrientationPatient or PixelSpacing) is listed as refused "
        "with the file, tag and fix, also as an 'error:' line on stderr. Exit status: 0 when "
        "every series can be read, 1 when some are refused, 2 when every series is refused "
        "or DIR holds no DICOM image.",
    )
    ls.add_argument("folder", metavar="DIR", help="folder of DICOM files")
    ls.set_defaults(handler=run_ls)
    from medimg.cli.dicom_seg import register as register_seg

    register_seg(inner)  # medimg dicom seg (DICOM SEG and SR output)

    convert = sub.add_parser(
        "convert",
        help="convert every DICOM series of a folder to NIfTI + JSON sidecar",
        description="Write one NIfTI per volume found under DICOM_DIR into OUT_DIR, each with a "
        "JSON sidecar of acquisition metadata (no patient-identifying fields unless "
        "--keep-phi). A series that fails its checks or is refused (truncated file, invalid "
        "header value, slice without geometry: see 'medimg dicom ls') is reported on an "
        "'error:' line and not written; the others still convert. A 4D series (fMRI, diffusion, "
        "Siemens mosaics included) is written as one 4D NIfTI, time the 4th axis, unless "
        "--split-4d. Exit 1 if any failed, 2 on a usage error or a folder without DICOM images.",
    )
    convert.add_argument("folder", metavar="DICOM_DIR")
    convert.add_argument("out_dir", metavar="OUT_DIR")
    convert.add_argument("--force", action="store_true", help="overwrite existing outputs")
    convert.add_argument(
        "--keep-phi", action="store_true", help="keep patient-identifying fields in sidecars"
    )
    convert.add_argument(
        "--resample-tilt",
        action="store_true",
        help="resample gantry-tilted series onto an orthogonal grid instead of refusing them",
    )
    convert.add_argument(
        "--resample-uneven",
        action="store_true",
        help="interpolate series with missing or uneven slices instead of refusing them",
    )
    convert.add_argument(
        "--split-4d",
        action="store_true",
        help="write each time point of a 4D series (fMRI, diffusion) to its own file, "
        "<stem>_t001.nii.gz, <stem>_t002.nii.gz... (default: one 4D file per series)",
    )
    convert.add_argument(
        "--min-slices", type=positive_int, default=3, help="fewest slices of a volume (default 3)"
    )
    add_max_memory_option(convert, what="refuse series that decode to more than GB GiB")
    convert.set_defaults(handler=run_convert)


def _size(series: Any) -> str:
    first = series.frames[0]
    if series.refused:
        return "?"
    if series.is_projection:
        return f"{first.columns}x{first.rows}"
    return f"{first.columns}x{first.rows}x{len(series.frames)}"


def _spacing(series: Any) -> str:
    from medimg.io.dicom.selection import series_step_mm

    first = series.frames[0]
    if first.pixel_spacing_mm is None or series.refused:
        return "?"
    row_mm, col_mm = first.pixel_spacing_mm
    text = f"{col_mm:.3g}x{row_mm:.3g}"
    return text if series.is_projection else f"{text}x{series_step_mm(series):.3g} mm"


def run_ls(args: argparse.Namespace) -> int:
    """Handle ``medimg dicom ls``."""
    from medimg.io.dicom import scan_dicom_folder
    from medimg.io.dicom.selection import series_orientation

    scan = scan_dicom_folder(args.folder, pixels=False)
    n_refused = sum(1 for s in scan.series if s.refused)
    refused_text = f", {n_refused} series refused" if n_refused else ""
    print(f"{scan.root}: {len(scan.series) - n_refused} volume(s){refused_text}")
    for s in scan.series:
        print(
            f"  #{s.series_number:<4d} {s.modality:<3s} {s.description!r:30s} "
            f"{len(s.frames):4d} images  {_size(s):>13s}  {_spacing(s):>20s}  "
            f"{series_orientation(s)}"
        )
        if s.is_mosaic:
            files = len({f.path for f in s.frames})
            print(f"        MOSAIC: {files} Siemens mosaic file(s) unpacked into slices")
        if s.n_parts > 1:
            time = f", time point {s.time_point} of {s.time_points}" if s.time_point else ""
            print(f"        volume {s.part} of {s.n_parts}{time}: {s.split_reason}")
        for note in s.notes:
            print(f"        {note}")
        if s.refused:
            print(f"        refused: {s.refused}")
        print(f"        {s.folder}")
    for line in scan.left_out:
        print(f"  left out: {line}")
    refused = [s for s in scan.series if s.refused]
    for s in refused:
        print(f"error: {s.folder}: {s.label}: refused: {s.refused}", file=sys.stderr)
    if refused and len(refused) == len(scan.series):
        print(
            f"error: {scan.root}: none of its {len(refused)} series can be read (each refusal "
            "is listed above with its file, tag and fix)",
            file=sys.stderr,
        )
        return 2
    return 1 if refused else 0


def run_convert(args: argparse.Namespace) -> int:
    """Handle ``medimg convert``."""
    from medimg.io.dicom import DicomReadOptions
    from medimg.io.dicom.convert import convert_dicom_folder

    options = DicomReadOptions(
        min_slices=args.min_slices,
        gantry_tilt="resample" if args.resample_tilt else "error",
        uneven_spacing="resample" if args.resample_uneven else "error",
        max_bytes=args.max_bytes,
    )
    result = convert_dicom_folder(
        args.folder,
        args.out_dir,
        options=options,
        keep_phi=args.keep_phi,
        overwrite=args.force,
        split_4d=args.split_4d,
    )
    for path in result.written:
        print(f"wrote {path}")
    for _label, message in result.failed:
        print(f"error: {message}", file=sys.stderr)
    print(f"{len(result.written)} converted, {len(result.failed)} failed")
    return 1 if result.failed else 0
