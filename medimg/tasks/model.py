"""A trained model for a program: ``load_model(source)`` and ``Model.predict(image)``.

:func:`load_model` takes a run folder, a model folder or a package (``.medimg``, verified by
:func:`medimg.packages.read_package` with ``trust`` and ``passphrase``), reads the model's
task from it and returns a :class:`Model`. :meth:`Model.predict` runs one image -- a path
(file or DICOM folder) or a :class:`~medimg.io.Volume` on its stored grid -- through the very
code ``medimg predict`` runs per case (the task's predictor, built with the same settings:
:func:`~medimg.tasks._segmentation_predict.predict_image`,
:func:`~medimg.tasks._classification_predict.classify_image`,
:func:`~medimg.tasks._detection_predict.detect_image`), so its results are the batch's,
voxel for voxel. A :class:`Prediction` holds the label map on the input's stored grid
(segmentation), JSON-ready ``findings`` and writes both atomically.

>>> from medimg import load_model  # doctest: +SKIP
>>> model = load_model("liver.medimg", trust=["alice.pub.pem"])  # doctest: +SKIP
>>> model.predict("case_001.nii.gz").write("out/")  # doctest: +SKIP
{'labels': PosixPath('out/labels.nii.gz'), 'findings': PosixPath('out/findings.json')}
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from medimg.tasks._contract import check_image_contract, contract_of
from medimg.tasks.defaults import predict_options_with, run_record, stored_precision
from medimg.typing import PathLike

if TYPE_CHECKING:
    from medimg.io import Volume
    from medimg.training import ModelBundle
    from medimg.training.bundle import ModelSource

__all__ = ["Model", "Prediction", "load_model"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)``: segmentation per sliding window (``(0, total)`` first, ``total``
the windows of the whole volume), else ``(0, 1)`` and ``(1, 1)``."""


@dataclass(frozen=True)
class Prediction:
    """One image's prediction.

    Attributes
    ----------
    task : str
        ``"segmentation"``, ``"classification"`` or ``"detection"``.
    label_map : Volume or None
        Segmentation: the class map (uint8, ``(1, X, Y, Z)``) on the input's stored grid,
        exactly what ``medimg predict`` writes; its ``source.path`` is the input. None else.
    findings : dict
        JSON-ready. Segmentation: ``labels`` (per label name: value, voxels, ``volume_ml``);
        classification: ``predicted``, ``probabilities`` (per class), ``threshold``,
        ``multi_label`` (and ``positive``, the classes at or over the threshold, when
        multi-label); detection: the box document ``medimg predict`` writes (boxes in world
        RAS+ mm and stored-grid voxels).
    """

    task: str
    label_map: Volume | None
    findings: dict[str, Any]
    labels_nifti: bytes | None = field(default=None, repr=False)

    def write(self, out_dir: PathLike, *, overwrite: bool = False) -> dict[str, Path]:
        """Write ``labels.nii.gz`` (segmentation) and ``findings.json`` atomically.

        The label file holds the same bytes ``medimg predict`` writes for the image.

        Raises
        ------
        OutputExistsError
            When a file exists and ``overwrite`` is false.
        """
        from medimg.io.writing import atomic_path

        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        if self.labels_nifti is not None:
            path = folder / "labels.nii.gz"
            with atomic_path(path, overwrite=overwrite) as tmp:
                tmp.write_bytes(self.labels_nifti)
            written["labels"] = path
        path = folder / "findings.json"
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(self.findings, indent=1) + "\n", encoding="utf-8")
        written["findings"] = path
        return written


class Model:
    """A loaded model (:func:`load_model`): what it is, and :meth:`predict`.

    Attributes
    ----------
    name : str
        The package's name, or the run folder's.
    task : str
        ``"segmentation"``, ``"classification"`` or ``"detection"``.
    outputs : dict of int to str
        Output index to label (segmentation) or class name.
    contract : dict
        The input contract and inference defaults (a package's ``contract.json``; made the
        same way from the record for a folder).
    card : str
        The model card (Markdown).
    sha256 : str
        The package file's SHA-256; for a folder, its checkpoint's.
    weights_sha256 : str
        The weights' digest (equal for a run folder and its package).
    bundle : ModelBundle
        The network and what its inputs need.
    options : object
        The task's prediction options in use (e.g.
        :class:`~medimg.tasks.SegmentationPredictOptions`).
    precision : str
        The autocast precision in use.

    One model predicts one image at a time (calls from several threads take turns).
    """

    def __init__(
        self, *, name: str, task: str, bundle: ModelBundle, contract: dict[str, Any],
        card: str, sha256: str, predictor: Any, chain: Any, options: object,
        precision: str,
    ) -> None:  # fmt: skip
        self.name, self.task, self.bundle = name, task, bundle
        self.outputs = dict(bundle.outputs)
        self.contract, self.card, self.sha256 = contract, card, sha256
        self.weights_sha256 = bundle.weights_sha256
        self._predictor, self._chain = predictor, chain
        self.options, self.precision = options, precision
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, task={self.task!r}, sha256={self.sha256[:12]}...)"

    def describe(self) -> dict[str, Any]:
        """The model as a JSON-ready dict (for an API's listing)."""
        source = self.bundle.source
        package = None if source is None else source.package
        return {
            "name": self.name,
            "task": self.task,
            "outputs": {str(k): v for k, v in sorted(self.outputs.items())},
            "contract": self.contract,
            "sha256": self.sha256,
            "weights_sha256": self.weights_sha256,
            "source": None if source is None else str(source.path),
            "kind": "folder" if package is None else "package",
            "signed_by": None if package is None else package.signed_by,
            "encrypted": False if package is None else bool(package.encrypted),
        }

    def predict(
        self, image: PathLike | Volume, *, progress: Progress | None = None,
        modality: str | None = None,
    ) -> Prediction:  # fmt: skip
        """Predict one image: a path (file or DICOM folder) or a Volume on its stored grid.

        ``progress(done, total)`` is called (segmentation) with ``(0, total)`` before the
        first sliding window and after each one, ``total`` being the windows of the whole
        preprocessed volume, or (classification, detection) with ``(0, 1)`` and ``(1, 1)``;
        what it raises stops the prediction. ``modality`` (``CT``, ``MR``, ``XR``), when
        given, is checked against the contract.

        Raises
        ------
        InputContractError
            When the image's channels or dimensions (or ``modality``) do not fit the model,
            naming the model (package or folder) and the image.
        ImageNotFoundError, ImageReadError, GeometryError
            For an image that cannot be read (or a Volume no longer on its stored grid).
        """
        from medimg.io import Volume, read_image_header

        if isinstance(image, Volume):
            name: object = f"{image.source.path} (Volume)"
            geometry: Any = SimpleNamespace(shape=image.spatial_shape,
                                            n_channels=int(image.array.shape[0]))  # fmt: skip
        else:
            name, geometry = image, read_image_header(image)
        check_image_contract(contract_of(self.bundle), name, geometry, modality=modality)
        with self._lock:
            run = {"segmentation": self._segment, "classification": self._classify,
                   "detection": self._detect}[self.task]  # fmt: skip
            return run(image, progress or (lambda done, total: None))

    def _segment(self, image: Any, progress: Progress) -> Prediction:
        import numpy as np

        from medimg.evaluation.segmentation import voxels_ml
        from medimg.io import Volume, load_volume
        from medimg.tasks._segmentation_predict import predict_image

        network: Any = (self.bundle.model, self.bundle.network)
        with tempfile.TemporaryDirectory(prefix="medimg-predict-") as tmp:
            out = predict_image(image, self._chain, network, self._predictor.infer,
                                Path(tmp) / "labels.nii.gz", progress=progress)  # fmt: skip
            data = out.read_bytes()
            labels = load_volume(out)
        where = image.source.path if isinstance(image, Volume) else Path(image)
        labels = replace(labels, source=replace(labels.source, path=Path(where)))
        # One counting pass in memory order (a C-order ravel of the Fortran-order map copies
        # it, and a mask per label is one more pass each).
        flat = np.asarray(labels.array).ravel(order="K")
        counts = np.bincount(flat, minlength=len(self.outputs) + 1)
        found = {
            name: {"value": k, "voxels": int(counts[k]),
                   "volume_ml": round(voxels_ml(int(counts[k]), labels.spacing_mm), 6)}
            for k, name in sorted(self.outputs.items())
        }  # fmt: skip
        return Prediction("segmentation", labels, {"task": "segmentation", "labels": found}, data)

    def _classify(self, image: Any, progress: Progress) -> Prediction:
        from medimg.tasks._classification_predict import classify_image

        progress(0, 1)
        threshold = self._predictor.threshold
        result = classify_image(self.bundle, self._chain, image, threshold=threshold)
        progress(1, 1)
        classes = [self.outputs[k] for k in sorted(self.outputs)]
        multi = bool(self.bundle.head.multi_label)
        findings: dict[str, Any] = {
            "task": "classification",
            "predicted": result["predicted"],
            "probabilities": dict(zip(classes, result["probabilities"], strict=True)),
            "threshold": threshold,
            "multi_label": multi,
        }
        if multi:
            findings["positive"] = [c for c, p in findings["probabilities"].items()
                                    if p >= threshold]  # fmt: skip
        return Prediction("classification", None, findings)

    def _detect(self, image: Any, progress: Progress) -> Prediction:
        from medimg.io import Volume
        from medimg.tasks._detection_predict import detect_image

        p = self._predictor
        path = image.source.path if isinstance(image, Volume) else Path(image)
        case_id = path.name.removesuffix(".gz").rsplit(".", 1)[0] or path.name
        progress(0, 1)
        doc = detect_image(self.bundle, self._chain, image, case_id, device=p.device,
                           precision=p.precision, min_score=p.options.min_score)  # fmt: skip
        progress(1, 1)
        return Prediction("detection", None, {"task": "detection", **doc})


def load_model(
    source: PathLike,
    *,
    trust: Sequence[PathLike] | None = None,
    passphrase: str | None = None,
    device: str = "auto",
    precision: str | None = None,
    options: object | None = None,
) -> Model:
    """Load a run folder, model folder or package for :meth:`Model.predict`.

    Parameters
    ----------
    source : path-like
        A run folder (holding ``model/``), a model folder (``model.json``) or a package.
    trust : sequence of path-like, optional
        Trusted signers' public keys for a package (None: ``MEDIMG_TRUST`` or the trust
        folder; with any trusted key the package must be signed by one).
    passphrase : str, optional
        An encrypted package's passphrase (never logged or stored).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"float32", "bfloat16", "float16", "auto"}, optional
        Autocast dtype; None: the model's inference default (``contract["inference"]``).
    options : object, optional
        The task's prediction options, e.g.
        ``SegmentationPredictOptions(sw_overlap=0.25, mirror_axes=(0, 1))``; used as given.
        None: the task's defaults with the model's stored overlap and mirror axes
        (``contract["inference"]``, :mod:`medimg.tasks.defaults`).

    Raises
    ------
    ConfigError
        When ``source`` is no model (no ``model.json``), or of a task without an engine, or
        ``options`` is not the task's prediction options class.
    CheckpointError, PackageError
        For a damaged folder, or a package failing its checks (hashes, signature,
        passphrase, format version).
    """
    from medimg.tasks import task_for
    from medimg.tasks.base import resolve_model_dir
    from medimg.training.bundle import open_model

    model_dir = resolve_model_dir(Path(source))
    opened = open_model(model_dir, trust=trust, passphrase=passphrase)
    task = task_for(_task_name(opened))
    bundle: ModelBundle = task.load_model(opened)  # type: ignore[arg-type]  # a ModelSource
    contract, card, name, sha256 = _description(opened, task.name, bundle, Path(source))
    inference = contract.get("inference") or {}
    if options is None:
        options = predict_options_with(task, inference)
    precision = stored_precision(inference, precision)
    chain, predictor = _predictor(task, bundle, device, precision, options)
    return Model(name=name, task=task.name, bundle=bundle, contract=contract, card=card,
                 sha256=sha256, predictor=predictor, chain=chain, options=options,
                 precision=precision)  # fmt: skip


def _task_name(source: ModelSource) -> str:
    from medimg.packages import task_of

    if source.package is not None:
        task = source.package.manifest.get("task") or source.package.contract.get("task")
        if isinstance(task, str):
            return task
    return task_of(source.record, {} if source.package is not None else run_record(source.path))


def _description(
    source: ModelSource, task: str, bundle: ModelBundle, given: Path
) -> tuple[dict[str, Any], str, str, str]:
    """Contract, card, name and SHA-256: a package's own; made from the record for a folder."""
    from medimg.packages import build_contract, evaluation_files, render_card
    from medimg.training import package_versions

    package = source.package
    if package is not None:
        name = str(package.manifest.get("name") or package.path.stem)
        return dict(package.contract), str(package.card), name, str(package.sha256)
    run = run_record(source.path)
    contract = build_contract(task, bundle, source.record, run)
    run_dir = source.path.parent if source.path.name == "model" else source.path
    name = run_dir.name if given.resolve() != source.path.resolve() else source.path.name
    evaluation = {n: p.read_bytes() for n, p in evaluation_files(run_dir, source.path).items()}
    card = render_card(
        name=name, version="(run folder)", contract=contract, run=run,
        versions=package_versions(), evaluation=evaluation,
        weights_sha256=bundle.checkpoint_sha256,
    )  # fmt: skip
    return contract, card, name, bundle.checkpoint_sha256


def _predictor(
    task: Any, bundle: ModelBundle, device: str, precision: str, options: object
) -> tuple[Any, Any]:
    """The chain and the task's batch predictor, set up as ``medimg predict`` sets them up."""
    from medimg.tasks.base import PredictConfig
    from medimg.transforms import preprocessing_for

    chain = preprocessing_for(bundle.modality, bundle.preprocess, bundle.fingerprint)
    # the predictor's settings come from a PredictConfig, exactly as in the batch engine
    # (which checks the options' class); its manifest and output folder are never used here
    cfg = PredictConfig(manifest=Path("-"), model_dir=Path("-"), out_dir=Path("-"),
                        device=device, precision=precision, options=options)  # fmt: skip
    return chain, task.predictor(bundle, chain, cfg)
