"""What makes a batch output reusable: resume keys and per-case records.

:class:`ResumeKey` is what a case's output was made from: the checkpoint's SHA-256 (the model),
the preprocessing chain key (:func:`~medimg.transforms.cache.chain_key`), the inference settings
that change the output (:func:`inference_settings`) and the content identity of every input
file (:func:`input_identities`, through :func:`~medimg.io.integrity.file_identity`).
:class:`CaseRecord` is one case as ``summary.json`` holds it, key included.
:mod:`medimg.inference.batch` runs the batch and decides with these whether an output is reused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medimg.errors import ImageNotFoundError, ImageReadError
from medimg.inference.config import InferenceConfig
from medimg.io.integrity import FileIdentity, path_identities
from medimg.typing import PathLike

__all__ = [
    "CaseRecord",
    "CaseStatus",
    "ResumeKey",
    "inference_settings",
    "input_identities",
]

CaseStatus = Literal["pending", "written", "skipped", "failed"]
_DONE = ("written", "skipped")


def inference_settings(config: InferenceConfig, **extra: Any) -> dict[str, Any]:
    """The settings of ``config`` that change a prediction, as a JSON-ready dict.

    Window size, overlap, Gaussian sigma, mirror axes, output kind and precision change the
    numbers; device, batch size, memory budget, channels-last layout, the exact fast layers,
    prefetching and progress bars do not (beyond float rounding between devices), so they are
    left out and changing them reuses the outputs. ``extra`` adds what the caller does with
    the network's output (``output="labels on the stored grid"``, a decision threshold).

    Examples
    --------
    >>> settings = inference_settings(InferenceConfig(mirror_axes=(2, 0)), output="labels")
    >>> settings["mirror_axes"], settings["output"]
    ([0, 2], 'labels')
    """
    settings: dict[str, Any] = {
        "roi_size_vox": list(config.roi_size_vox),
        "overlap": config.overlap,
        "sigma_scale": config.sigma_scale,
        "mirror_axes": sorted(config.mirror_axes),
        "output": config.output,
        "precision": config.precision,
    }
    settings.update(extra)
    jsonable: dict[str, Any] = json.loads(json.dumps(settings))  # tuples as lists, as read back
    return jsonable


@dataclass(frozen=True)
class ResumeKey:
    """What an output was made from; an output is reused only under an equal key.

    Attributes
    ----------
    model_sha256 : str
        SHA-256 of the model's weights (``ModelBundle.weights_sha256``: the tensors, not the
        file, so a run folder and a package made from it give the same key).
    chain_key : str
        :func:`~medimg.transforms.cache.chain_key` of the preprocessing chain.
    settings : dict
        :func:`inference_settings`.
    inputs : tuple of FileIdentity
        The case's input files, in manifest order; compared by size and SHA-256.
    """

    model_sha256: str
    chain_key: str
    settings: Mapping[str, Any] = field(hash=False)
    inputs: tuple[FileIdentity, ...]

    def differences(self, recorded: ResumeKey | None) -> list[str]:
        """What differs from ``recorded`` (empty when the output can be reused), in words."""
        if recorded is None:
            return ["no resume key recorded with the output"]
        diffs = []
        if self.model_sha256 != recorded.model_sha256:
            diffs.append(
                f"model (checkpoint SHA-256 {recorded.model_sha256[:12]}... -> "
                f"{self.model_sha256[:12]}...)"
            )
        if self.chain_key != recorded.chain_key:
            diffs.append(f"preprocessing (chain key {recorded.chain_key[:12]}... -> "
                         f"{self.chain_key[:12]}...)")  # fmt: skip
        for name in sorted(set(self.settings) | set(recorded.settings)):
            old, new = recorded.settings.get(name), self.settings.get(name)
            if old != new:
                diffs.append(f"inference setting {name} ({old!r} -> {new!r})")
        if len(self.inputs) != len(recorded.inputs):
            diffs.append(f"number of input files ({len(recorded.inputs)} -> {len(self.inputs)})")
        else:
            diffs += [
                f"input file {now.path} (content changed: size {old.size} -> {now.size}, "
                f"SHA-256 {old.sha256[:12]}... -> {now.sha256[:12]}...)"
                for now, old in zip(self.inputs, recorded.inputs, strict=True)
                if not now.same_content(old)
            ]
        return diffs

    def to_json(self) -> dict[str, Any]:
        """The key as a JSON-ready dict (inverse of :meth:`from_json`)."""
        return {
            "model_sha256": self.model_sha256,
            "chain_key": self.chain_key,
            "settings": dict(self.settings),
            "inputs": [i.to_json() for i in self.inputs],
        }

    @classmethod
    def from_json(cls, record: Any) -> ResumeKey | None:
        """Parse :meth:`to_json`'s output; ``None`` when ``record`` is not a valid key."""
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
            return None
        inputs = [FileIdentity.from_json(i) for i in record.get("inputs") or ()]
        if not inputs or any(i is None for i in inputs):
            return None
        model, chain = record.get("model_sha256"), record.get("chain_key")
        if not isinstance(model, str) or not isinstance(chain, str):
            return None
        return cls(model, chain, record["settings"], tuple(i for i in inputs if i is not None))


def input_identities(
    paths: Sequence[PathLike], previous: ResumeKey | None = None
) -> tuple[FileIdentity, ...]:
    """Identities of a case's input files, re-using ``previous``'s hashes where stat allows.

    A DICOM series folder gives the identity of every file in it
    (:func:`~medimg.io.integrity.path_identities`), so a changed slice is noticed.

    Raises
    ------
    ImageNotFoundError, ImageReadError
        When a file is missing or cannot be read; the message names it.
    """
    earlier = {i.path: i for i in previous.inputs} if previous is not None else {}
    identities: list[FileIdentity] = []
    for path in paths:
        resolved = Path(path).resolve()
        try:
            identities += path_identities(resolved, previous=earlier)
        except FileNotFoundError:
            raise ImageNotFoundError(
                f"{path}: no such file; fix the case's path in the manifest or restore the file"
            ) from None
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return tuple(identities)


@dataclass(frozen=True)
class CaseRecord:
    """One case of a batch as ``summary.json`` holds it.

    Attributes
    ----------
    case_id : str
    status : {"pending", "written", "skipped", "failed"}
        ``pending``: not reached yet (or the run was interrupted before it); ``skipped``: a
        valid output of an equal key was there.
    output : str, optional
        The output's file name inside the folder, when the case writes one.
    key : ResumeKey, optional
        What the output was made from (done cases).
    output_identity : FileIdentity, optional
        Size and SHA-256 of the output file as written.
    result : dict, optional
        A result kept in the record itself (classification: called class, probabilities).
    error : str, optional
        Why the case failed, naming the file.
    time_s, peak_memory_bytes : float and int, optional
        Wall time and the process's peak memory while the case ran (cases that ran).
    """

    case_id: str
    status: CaseStatus
    output: str | None = None
    key: ResumeKey | None = None
    output_identity: FileIdentity | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    time_s: float | None = None
    peak_memory_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as ``summary.json`` lists it."""
        peak = self.peak_memory_bytes
        return {
            "case_id": self.case_id,
            "path": self.output,
            "status": self.status,
            "time_s": self.time_s,
            "peak_memory_mb": None if peak is None else round(peak / 2**20, 1),
            "error": self.error,
            "result": self.result,
            "resume_key": None if self.key is None else self.key.to_json(),
            "output_identity": None
            if self.output_identity is None
            else self.output_identity.to_json(),
        }

    @classmethod
    def from_json(cls, record: Any) -> CaseRecord | None:
        """A done record read back from ``summary.json``; ``None`` for anything else."""
        if not isinstance(record, dict) or record.get("status") not in _DONE:
            return None
        key = ResumeKey.from_json(record.get("resume_key"))
        case_id, output, result = record.get("case_id"), record.get("path"), record.get("result")
        if key is None or not isinstance(case_id, str):
            return None
        return cls(
            case_id=case_id,
            status="skipped",
            output=output if isinstance(output, str) else None,
            key=key,
            output_identity=FileIdentity.from_json(record.get("output_identity")),
            result=result if isinstance(result, dict) else None,
        )
