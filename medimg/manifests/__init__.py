"""Dataset manifests: the typed schema, loading with validation, splits and importers.

:func:`load_manifest` parses a manifest JSON file into an immutable :class:`Manifest` and raises
one :class:`~medimg.errors.ManifestError` listing every problem (schema, paths, and with
``check_files`` the files themselves). :func:`resolve_cases` gives absolute paths. Detection
manifests (schema version 2) carry lesion boxes (:class:`Box`, world RAS+ mm); :func:`task_of`
tells a manifest's task from its JSON.
"""

from __future__ import annotations

from medimg.manifests.boxes import Box
from medimg.manifests.load import (
    ResolvedCase,
    Tolerances,
    load_manifest,
    manifest_sha256,
    resolve_cases,
)
from medimg.manifests.schema import (
    SCHEMA_VERSION,
    SPLITS,
    TASKS,
    Case,
    Channel,
    LabelDef,
    Manifest,
    manifest_json_schema,
    task_of,
)

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "TASKS",
    "Box",
    "Case",
    "Channel",
    "LabelDef",
    "Manifest",
    "ResolvedCase",
    "Tolerances",
    "load_manifest",
    "manifest_json_schema",
    "manifest_sha256",
    "resolve_cases",
    "task_of",
]
