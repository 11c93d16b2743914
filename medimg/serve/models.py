"""The served models: loaded through :func:`medimg.tasks.load_model` (package verification)."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from medimg.errors import ConfigError
from medimg.serve.settings import ServeSettings

__all__ = ["JobModels", "ServedModel", "ServedPrediction", "describe_models", "load_models"]


class ServedPrediction(Protocol):
    """What the service needs of a prediction (:class:`medimg.tasks` ``Prediction``)."""

    @property
    def findings(self) -> Any:
        """JSON-able per-label volumes, class probabilities or boxes."""

    @property
    def labels_nifti(self) -> bytes | None:
        """The label map's NIfTI bytes (segmentation), else None."""

    def write(self, out_dir: Path) -> Mapping[str, Path]:
        """Write ``labels.nii.gz`` / ``findings.json`` atomically; the files by name."""


class ServedModel(Protocol):
    """What the service needs of a model (:class:`medimg.tasks` ``Model``)."""

    @property
    def name(self) -> str:
        """The name clients pick it by."""

    @property
    def card(self) -> str:
        """The model card (Markdown)."""

    @property
    def task(self) -> str:
        """``segmentation``, ``classification`` or ``detection``."""

    @property
    def options(self) -> object:
        """The task's prediction options in use."""

    @property
    def bundle(self) -> Any:
        """The network and what its inputs need (the SEG's algorithm comes from it)."""

    def describe(self) -> dict[str, Any]:
        """JSON-able record for ``GET /v1/models``."""

    def predict(
        self, image: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> ServedPrediction:
        """Predict one image file or DICOM folder."""


def load_models(settings: ServeSettings) -> dict[str, ServedModel]:
    """Every model of `settings`, by name, each verified as its package demands.

    Raises
    ------
    ConfigError
        When no model is given or two share a name; the loader's own errors otherwise.
    """
    from medimg.tasks import load_model

    if not settings.models:
        raise ConfigError("medimg serve needs at least one --model PACKAGE (or model folder)")
    models: dict[str, ServedModel] = {}
    for source in settings.models:
        trust = settings.trust or None
        model: ServedModel = load_model(source, trust=trust, device=settings.device)
        if model.name in models:
            raise ConfigError(
                f"two models are called {model.name!r} ({source} and an earlier --model); "
                "serve each name once"
            )
        models[model.name] = model
    return models


def describe_models(models: Mapping[str, ServedModel]) -> dict[str, dict[str, Any]]:
    """What ``GET /v1/models`` lists of each model: ``describe()`` and the model card."""
    return {name: {**model.describe(), "card": model.card} for name, model in models.items()}


class JobModels:
    """A worker's models: the served ones, and variants with a job's own options.

    A job with per-job options (:func:`medimg.serve._options.job_options`) runs on the model
    loaded again through :func:`medimg.tasks.load_model` with those options (its other
    options as served) and precision; the last `cache` such variants are kept.
    """

    def __init__(self, settings: ServeSettings, *, cache: int = 4) -> None:
        self.settings = settings
        self.served = load_models(settings)
        self._sources = dict(zip(self.served, settings.models, strict=True))
        self._variants: OrderedDict[str, ServedModel] = OrderedDict()
        self._cache = cache

    def get(self, name: str, options: Mapping[str, Any] | None) -> ServedModel | None:
        """The model `name` with `options` (None or empty: as served); None when not served."""
        from medimg.serve._options import OUTPUT_OPTIONS
        from medimg.tasks import load_model

        served = self.served.get(name)
        options = {k: v for k, v in (options or {}).items() if k not in OUTPUT_OPTIONS}
        if served is None or not options:
            return served
        key = json.dumps([name, options], sort_keys=True)
        if key in self._variants:
            self._variants.move_to_end(key)
            return self._variants[key]
        given = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in options.items() if k != "precision"}  # fmt: skip
        precision = options.get("precision")
        model: ServedModel = load_model(
            self._sources[name],
            trust=self.settings.trust or None,
            device=self.settings.device,
            precision=None if precision is None else str(precision),
            options=dataclasses.replace(served.options, **given),  # type: ignore[type-var]  # a dataclass
        )
        self._variants[key] = model
        while len(self._variants) > self._cache:
            self._variants.popitem(last=False)
        return model
