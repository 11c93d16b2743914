"""The task protocol and the per-stage configs and results the engines share.

A *task* (segmentation, classification, detection) says what differs between problems:
which manifests it takes, how its training samples, network and loss are built, how its model
folder is loaded, how one case is predicted and written, when an output is done, and how
outputs are scored. The engines
of :mod:`medimg.tasks.engine` do the rest the same way for every task: split, fit, checkpoint
choice and model record; batch prediction with one error policy
(:data:`~medimg.inference.CASE_ERRORS`), resume keys, progress and per-case summary; evaluation
with its run record.

Each stage has its own config, validated once on construction: the task's training config
(:class:`~medimg.tasks.SegmentationConfig`, :class:`~medimg.tasks.ClassificationConfig`, which
satisfy :class:`TrainSettings`), :class:`PredictConfig` and :class:`EvaluateConfig`. Settings
that only one task has are a typed options object of that task (``options``), refused by any
other task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medimg.errors import ConfigError
from medimg.manifests import SPLITS

if TYPE_CHECKING:
    import torch

    from medimg.fingerprint import Fingerprint
    from medimg.inference import BatchCase, CaseRecord
    from medimg.manifests import Manifest, ResolvedCase
    from medimg.networks import DetectorConfig, NetworkConfig
    from medimg.training import FitResult, ModelBundle, TrainConfig
    from medimg.transforms import AugmentConfig, PreprocessConfig

__all__ = [
    "PRECISIONS",
    "CaseOutcome",
    "EvaluateConfig",
    "NetworkModels",
    "PredictConfig",
    "PredictResult",
    "Predictor",
    "RunFolders",
    "Task",
    "TrainPlan",
    "TrainResult",
    "TrainSettings",
    "check_split",
    "resolve_model_dir",
]

PRECISIONS = ("float32", "bfloat16", "float16", "auto")
"""Autocast dtypes of prediction (the inference vocabulary of :class:`InferenceConfig`)."""


def check_split(split: str) -> str:
    """``split`` when it is a manifest split; :class:`ConfigError` naming the valid ones."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def resolve_model_dir(folder: Path) -> Path:
    """The model folder of ``folder``: itself, or its ``model/`` when ``folder`` is a run folder.

    A folder holding ``model.json`` is a model folder; one without it whose ``model/`` holds
    one is a run folder (what ``medimg train --out`` wrote). Anything else is returned as it
    is, for the model loader to report.
    """
    from medimg.training import MODEL_RECORD

    folder = Path(folder)
    nested = folder / "model"
    if not (folder / MODEL_RECORD).is_file() and (nested / MODEL_RECORD).is_file():
        return nested
    return folder


class RunFolders:
    """The model and prediction folders of a task config (a mixin of the task configs).

    The config declares ``out_dir``, ``model_folder`` (``None``: the run's own ``model/``)
    and ``predictions_folder`` (``None``: the run's own ``predictions/``).
    """

    out_dir: Path
    model_folder: Path | None
    predictions_folder: Path | None

    @property
    def model_dir(self) -> Path:
        """Where training writes the model and prediction reads it."""
        if self.model_folder is None:
            return self.out_dir / "model"
        return resolve_model_dir(self.model_folder)

    @property
    def predictions_dir(self) -> Path:
        """Where prediction writes its outputs and evaluation reads them."""
        return self.predictions_folder or self.out_dir / "predictions"


class NetworkModels:
    """``load_model`` of a task whose model is a medimg network (segmentation, classification).

    The task declares ``head_type`` (its head settings dataclass, or None).
    """

    head_type: type[Any] | None = None

    def load_model(self, model_dir: Path, *, trust: Any = None, passphrase: Any = None) -> Any:
        """The model's network with its verified weights (and head): ``load_model_bundle``.

        ``model_dir``: a model folder or a package (read with ``trust`` and ``passphrase``).
        """
        from medimg.training import load_model_bundle

        return load_model_bundle(
            model_dir, head_type=self.head_type, trust=trust, passphrase=passphrase
        )


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """How the batch-prediction engine runs, for any task.

    Attributes
    ----------
    manifest : Path
        Dataset manifest whose ``split`` is predicted.
    model_dir : Path
        Trained model folder (holding ``model.json``) or model package (``.medimg``).
    out_dir : Path
        Prediction folder: outputs, ``summary.json``, ``run.json``.
    split : {"training", "validation", "test"}
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"float32", "bfloat16", "float16", "auto"}
        Autocast dtype of the network at prediction.
    overwrite : bool
        Predict every case again, ignoring earlier records.
    fail_fast : bool
        Check every file first and stop at the first failing case; otherwise record failing
        cases (status ``failed``, reason naming the file) and go on.
    progress : bool
        tqdm bars over cases (and, where the task has them, windows).
    options : object, optional
        The task's own prediction options (e.g. sliding-window overlap); its defaults when None.
    trust : tuple of Path
        A package's trusted signers' public keys (empty: ``MEDIMG_TRUST`` or the trust folder,
        :func:`medimg.packages.read_package`).
    passphrase_file : Path, optional
        File whose first line is an encrypted package's passphrase (never the passphrase
        itself: the config is written to ``run.json``).
    """

    manifest: Path
    model_dir: Path
    out_dir: Path
    split: str = "test"
    device: str = "auto"
    precision: str = "float32"
    overwrite: bool = False
    fail_fast: bool = True
    progress: bool = False
    options: object | None = None
    trust: tuple[Path, ...] = ()
    passphrase_file: Path | None = None

    def __post_init__(self) -> None:
        for name in ("manifest", "model_dir", "out_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        check_split(self.split)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """How the evaluation engine scores a prediction folder, for any task.

    Attributes
    ----------
    manifest : Path
        Dataset manifest holding the references of ``split``.
    predictions_dir : Path
        Folder written by the prediction engine.
    out_dir : Path
        Report folder.
    split : {"training", "validation", "test"}
    overwrite : bool
        Replace an existing report.
    options : object, optional
        The task's own evaluation options (e.g. surface-Dice tolerance); defaults when None.
    """

    manifest: Path
    predictions_dir: Path
    out_dir: Path
    split: str = "test"
    overwrite: bool = False
    options: object | None = None

    def __post_init__(self) -> None:
        for name in ("manifest", "predictions_dir", "out_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        check_split(self.split)


class TrainSettings(Protocol):
    """What the training engine reads from a task's training config."""

    @property
    def manifest(self) -> Path: ...  # noqa: D102
    @property
    def preprocess(self) -> PreprocessConfig: ...  # noqa: D102
    @property
    def augment(self) -> AugmentConfig | None: ...  # noqa: D102
    @property
    def train(self) -> TrainConfig: ...  # noqa: D102
    @property
    def validation_fraction(self) -> float: ...  # noqa: D102
    @property
    def seed(self) -> int: ...  # noqa: D102
    @property
    def model_dir(self) -> Path: ...  # noqa: D102


@dataclass(frozen=True)
class TrainPlan:
    """What a task hands the training engine: network, loss, batches, validation, record.

    ``network`` is the settings dataclass the model is rebuilt from (written as the model
    record's ``network``: a :class:`~medimg.networks.NetworkConfig`, or detection's
    :class:`~medimg.networks.DetectorConfig`); ``model`` the module built from it, which
    :func:`~medimg.training.fit` trains (``loss`` may be one of its methods). ``head`` is the
    task's typed part of the model record (``None`` when it has none); ``record`` adds
    JSON-ready fields to the training ``run.json``.
    """

    network: NetworkConfig | DetectorConfig
    model: torch.nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batches: Callable[[int], Any]
    validate: Callable[[torch.nn.Module, torch.device], float] | None
    outputs: Mapping[int, str]
    head: object | None = None
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """What training produced: the fit, the checkpoint and the case split."""

    model_dir: Path
    checkpoint: Path
    checkpoint_sha256: str
    fit: FitResult
    train_cases: tuple[str, ...]
    validation_cases: tuple[str, ...]


class Predictor(Protocol):
    """One task's prediction of a batch, set up for a model and a :class:`PredictConfig`.

    ``settings`` enters every case's resume key; ``summary_name`` names the batch summary in
    the folder; ``output`` is the file a case writes (``None`` when its result lives in the
    summary); ``run`` predicts one case (raising one of
    :data:`~medimg.inference.CASE_ERRORS` on failure) and returns the result to record;
    ``is_done`` checks a reusable output beyond its recorded digest; ``start`` and ``finish``
    run once before and after the cases (a task's table of results).
    """

    settings: Mapping[str, Any]
    summary_name: str

    def output(self, case: ResolvedCase) -> Path | None: ...  # noqa: D102
    def run(self, case: ResolvedCase, batch_case: BatchCase) -> dict[str, Any] | None: ...  # noqa: D102
    def is_done(self, case: ResolvedCase) -> bool: ...  # noqa: D102
    def start(self) -> None: ...  # noqa: D102
    def finish(self, records: Sequence[CaseRecord]) -> Path: ...  # noqa: D102


@dataclass(frozen=True)
class CaseOutcome:
    """One case of a prediction run, for any task.

    ``status``: ``written``, ``skipped`` (a valid output was there) or ``failed`` (``error``
    says why, naming the file). ``path`` is the case's output file (``None`` when the task keeps
    results in a table); ``result`` what the task recorded (classification: the predicted class
    and the probabilities). ``time_s`` and ``peak_memory_bytes`` are ``None`` for skipped cases.
    """

    case_id: str
    status: str
    path: Path | None = None
    result: Mapping[str, Any] | None = None
    error: str | None = None
    time_s: float | None = None
    peak_memory_bytes: int | None = None


@dataclass(frozen=True)
class PredictResult:
    """Every case of a prediction run: the folder, the main output and the summary file.

    ``path`` is the task's main output: the folder of label maps, or a table of results.
    """

    out_dir: Path
    path: Path
    summary_path: Path
    cases: tuple[CaseOutcome, ...]


class Task(Protocol):
    """What a task supplies to the engines of :mod:`medimg.tasks.engine`.

    Attributes
    ----------
    name : str
        ``"segmentation"``, ``"classification"``, ``"detection"``.
    metric : str
        Name of the validation metric training maximises (``Dice``, ``AUC``, ``CPM``).
    head_type : type or None
        The typed head of its model record (:func:`~medimg.training.load_model_bundle`).
    train_config : type
        The task's training config (satisfying :class:`TrainSettings`).
    predict_options, evaluate_options : type
        The task's option classes of :class:`PredictConfig` and :class:`EvaluateConfig`.

    The command line reads these classes' fields to tell which options apply to a task, and
    their defaults for ``--help``; registering a task is one entry of
    :data:`medimg.tasks.TASKS`.
    """

    name: str
    metric: str
    head_type: type[Any] | None
    train_config: type[Any]
    predict_options: type[Any]
    evaluate_options: type[Any]

    def evaluation_dir(self, run_dir: Path, split: str) -> Path:
        """Where the report of ``split`` goes in the run folder ``run_dir``."""

    def check_manifest(self, manifest: Manifest, path: Path) -> None:
        """Raise :class:`ConfigError` unless ``manifest`` is one of this task."""

    def plan_training(
        self,
        cfg: Any,
        manifest: Manifest,
        fingerprint: Fingerprint,
        chain: Any,
        split: tuple[Sequence[ResolvedCase], Sequence[ResolvedCase]],
    ) -> TrainPlan:
        """Samples (through ``chain``), network, loss and validation of ``cfg`` on ``split``."""

    def load_model(
        self, model_dir: Path, *, trust: Sequence[Path] | None = None,
        passphrase: str | None = None,
    ) -> ModelBundle:  # fmt: skip
        """The model's verified network (evaluation mode, CPU) for :meth:`predictor`.

        ``model_dir`` is a model folder or a package (read with ``trust`` and
        ``passphrase``: :func:`~medimg.training.load_model_bundle`). Raises
        :class:`ConfigError` for a folder without ``model.json`` or of another task,
        :class:`~medimg.errors.CheckpointError` for a damaged one,
        :class:`~medimg.errors.PackageError` for a package that fails its checks.
        """

    def predictor(self, bundle: ModelBundle, chain: Any, cfg: PredictConfig) -> Predictor:
        """The task's prediction of one batch with ``bundle``."""

    def evaluate(self, cases: Sequence[ResolvedCase], manifest: Manifest,
                 cfg: EvaluateConfig) -> Any:  # fmt: skip
        """Score the outputs of ``cases``, write the report into ``cfg.out_dir``; the result."""
