"""Unpacking a DICOM zip without trusting it: names, links, member count and inflated size."""

from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from medimg.serve.errors import UploadError

__all__ = ["extract_dicom_zip"]

_CHUNK = 1024 * 1024


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UploadError(
            400,
            f"zip member {name!r} has an absolute path; zip the series "
            "folder with relative paths (cd into it first)",
        )
    if ".." in parts:
        raise UploadError(
            400,
            f"zip member {name!r} climbs out of the archive ('..'); zip "
            "the series folder with plain relative paths",
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadError(
            400,
            f"zip member {name!r} is a symbolic link; zip the files "
            "themselves (zip without --symlinks)",
        )
    if info.flag_bits & 0x1:
        raise UploadError(400, f"zip member {name!r} is encrypted; upload an unencrypted zip")


def extract_dicom_zip(path: Path, dest: Path, *, max_members: int, max_bytes: int) -> int:
    """Unpack the files of the zip `path` into `dest` as ``00000.dcm``, ``00001.dcm``, ...

    Every member is checked before anything is inflated: no absolute path, no ``..``, no
    symbolic link, no encryption, at most `max_members` members and at most `max_bytes`
    declared in all. While inflating, the bytes actually produced are counted too, so a
    member that lies about its size stops at the limit. Member names are never used as
    paths. Returns the number of files written.

    Raises
    ------
    UploadError
        400 for a damaged or unsafe archive, 413 when it holds too many members or inflates
        past `max_bytes`.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise UploadError(
            400, f"the upload is not a readable zip archive ({exc}); zip the series folder again"
        ) from None
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            raise UploadError(
                413,
                f"the zip holds {len(members)} members, at most "
                f"{max_members}; upload one series per job",
            )
        for info in members:
            _check_member(info)
        files = [info for info in members if not info.is_dir()]
        declared = sum(info.file_size for info in files)
        if declared > max_bytes:
            raise UploadError(
                413,
                f"the zip inflates to {declared} bytes, at most {max_bytes} "
                "(a zip bomb, or a series too large for this service)",
            )
        if not files:
            raise UploadError(400, "the zip holds no files; zip the folder of one DICOM series")
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for index, info in enumerate(files):
            written = _inflate(archive, info, dest / f"{index:05d}.dcm", written, max_bytes)
    return len(files)


def _inflate(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, max_bytes: int
) -> int:
    try:
        with archive.open(info) as source, target.open("wb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadError(
                        413,
                        f"the zip inflates past {max_bytes} bytes (member "
                        f"{info.filename!r} lies about its size)",
                    )
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, zlib.error) as exc:
        raise UploadError(
            400,
            f"zip member {info.filename!r} cannot be inflated ({exc}); zip the series folder again",
        ) from None
    except OSError as exc:
        if exc.errno is not None:  # the disk, not the archive
            raise
        raise UploadError(400, f"zip member {info.filename!r} cannot be inflated ({exc})") from None
    return written
