"""The served models: loaded through :func:`medimg.tasks.load_model` (package verification)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from medimg.errors import ConfigError
from medimg.serve.settings import ServeSettings

__all__ = ["ServedModel", "ServedPrediction", "describe_models", "load_models"]


class ServedPrediction(Protocol):
    """What the service needs of a prediction (:class:`medimg.tasks` ``Prediction``)."""

    @property
    def findings(self) -> Any:
        """JSON-able per-label volumes, class probabilities or boxes."""

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
