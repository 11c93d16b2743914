"""Which files a fingerprint was computed from, and whether a saved one still describes them."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from medimg._fingerprint_record import Fingerprint, FingerprintInput
from medimg.io.integrity import FileIdentity, file_identity, input_files
from medimg.typing import PathLike

if TYPE_CHECKING:
    from medimg.manifests import Manifest, ResolvedCase

logger = logging.getLogger("medimg.fingerprint")


def check_saved(
    saved: Fingerprint, manifest_path: PathLike, max_samples: int, seed: int
) -> tuple[Fingerprint | None, str]:
    """(the saved fingerprint with refreshed identities, why) or (None, why not)."""
    from medimg.manifests import manifest_sha256

    if saved.manifest_sha256 != manifest_sha256(manifest_path):
        return None, "the manifest changed"
    per_case = samples_per_case(max_samples, saved.n_cases)
    if (saved.seed, saved.samples_per_case) != (seed, per_case):
        return None, (
            f"sampling settings changed (seed {saved.seed} -> {seed}, samples per case "
            f"{saved.samples_per_case} -> {per_case})"
        )
    if not saved.inputs:
        return None, "the saved fingerprint records no input file identities (older medimg)"
    _, cases = training_cases(manifest_path)
    by_path = {i.identity.path: i.identity for i in saved.inputs}
    try:
        current = [
            FingerprintInput(cid, role, file_identity(path, previous=by_path.get(path_key(path))))
            for case in cases
            for cid, role, path in case_inputs(case)
        ]
    except OSError as exc:
        return None, f"an input file cannot be read ({exc})"
    keys = [(i.case_id, i.role) for i in current]
    if keys != [(i.case_id, i.role) for i in saved.inputs]:
        return None, (
            f"the input files differ: {len(current)} now, {len(saved.inputs)} recorded "
            "(a file added to or removed from a series folder?)"
        )
    changed = [
        (old, new)
        for old, new in zip(saved.inputs, current, strict=True)
        if not new.identity.same_content(old.identity)
    ]
    for old, new in changed:
        logger.info("%s changed: %s", new.describe(), difference(old.identity, new.identity))
    if changed:
        old, new = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        return None, f"{new.describe()} changed: {difference(old.identity, new.identity)}{more}"
    return replace(saved, inputs=tuple(current)), (
        f"manifest and {len(current)} input files unchanged"
    )


def difference(old: FileIdentity, new: FileIdentity) -> str:
    if old.size != new.size:
        return f"size {old.size} -> {new.size} bytes"
    return f"SHA-256 {old.sha256[:12]}... -> {new.sha256[:12]}..."


def path_key(path: Path) -> str:
    return str(Path(path).resolve())


def training_cases(manifest_path: PathLike) -> tuple[Manifest, list[ResolvedCase]]:
    """The manifest and its training and validation cases (what the statistics cover)."""
    from medimg.manifests import load_manifest, resolve_cases

    manifest = load_manifest(manifest_path, check_files=False)
    return manifest, [c for c in resolve_cases(manifest, manifest_path) if c.split != "test"]


def case_inputs(case: ResolvedCase) -> list[tuple[str, str, Path]]:
    """(case id, role, file) of every file a case's statistics read, in a fixed order."""
    files: list[tuple[str, str, Path]] = []
    images = list(case.images)
    for k, image in enumerate(images):
        role = "image" if len(images) == 1 else f"image[{k}]"
        if image.is_dir():  # a DICOM series: every file the reader may open
            inside = input_files(image)
            files += [(case.case_id, f"{role}: {p.relative_to(image)}", p) for p in inside]
        else:
            files.append((case.case_id, role, image))
    if case.label is not None:
        files.append((case.case_id, "label", case.label))
    return files


def samples_per_case(max_samples: int, n_cases: int) -> int:
    """Foreground voxels kept per case and channel: ``max_samples // n_cases``, at least 1."""
    return max(1, max_samples // max(1, n_cases))
