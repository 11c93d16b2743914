"""Dataset manifests: the typed schema, loading with validation, splits and importers.

:func:`load_manifest` parses a manifest JSON file into an immutable :class:`Manifest` and raises
one :class:`~medimg.errors.ManifestError` listing every problem (schema, paths, and with
``check_files`` the files themselves). :func:`resolve_cases` gives absolute paths.
"""

from __future__ import annotations

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
    Case,
    Channel,
    LabelDef,
    Manifest,
    manifest_json_schema,
)

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
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
]
