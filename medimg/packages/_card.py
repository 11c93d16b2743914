"""What a package says about its model: the input contract and the Markdown model card."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_contract", "evaluation_files", "inference_defaults", "render_card", "task_of"]

_EVALUATION_SUFFIXES = (".json", ".csv", ".png", ".md", ".txt")
_EVALUATION_BYTES = 32 * 1024**2
"""At most this much of a run's evaluation folder goes into a package (figures and tables)."""


def task_of(record: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    """The task of a model record: its run's ``task``, else what its network predicts.

    Parameters
    ----------
    record : mapping
        A checked ``model.json`` (:func:`medimg.training.read_model_record`).
    run : mapping
        The training ``run.json`` beside it (empty when there is none).

    Returns
    -------
    str
        ``"segmentation"``, ``"classification"`` or ``"detection"``.

    Examples
    --------
    >>> task_of({"network": {"anchor_shapes_vox": [[8, 8, 8]]}}, {})
    'detection'
    >>> task_of({"network": {"name": "dynunet"}}, {"task": "segmentation"})
    'segmentation'
    """
    from medimg.networks import lookup_network

    if isinstance(run.get("task"), str):
        return str(run["task"])
    network = record["network"]
    if "anchor_shapes_vox" in network:
        return "detection"
    return lookup_network(str(network.get("name"))).task.value


def build_contract(
    task: str, bundle: Any, record: Mapping[str, Any], run: Mapping[str, Any]
) -> dict[str, Any]:
    """The input contract and inference defaults of a loaded model (``contract.json``).

    3D models name the orientation (``RAS``: every chain reorients to it) and the spacing
    their chain resamples to; 2D (X-ray) models the size their chain resizes to.

    Parameters
    ----------
    task : str
        The model's task (:func:`task_of`).
    bundle : ModelBundle
        The loaded model (:func:`medimg.training.load_model_bundle`).
    record, run : mapping
        Its ``model.json`` and training ``run.json`` (empty when there is none).

    Returns
    -------
    dict
        JSON-ready: ``task``, ``modality``, ``channels``, ``spatial_dims``, ``outputs``,
        ``orientation`` and ``spacing_mm`` (3D) or ``size_px`` (2D), ``head`` (when the model
        has one) and ``inference`` (:func:`inference_defaults`).
    """
    from medimg.transforms.modality import target_spacing_for

    network = bundle.network
    spatial_dims = int(network.spatial_dims)
    contract: dict[str, Any] = {
        "task": task,
        "modality": record["modality"],
        "channels": int(network.in_channels),
        "spatial_dims": spatial_dims,
        "outputs": dict(record["outputs"]),
    }
    if spatial_dims == 3:
        contract["orientation"] = "RAS"
        spacing = target_spacing_for(bundle.preprocess, bundle.fingerprint)
        contract["spacing_mm"] = [float(s) for s in spacing]
    else:
        contract["orientation"] = None
        contract["size_px"] = list(bundle.preprocess.xray_size_px)
    if bundle.head is not None or "head" in record:
        contract["head"] = record.get("head")
    contract["inference"] = inference_defaults(
        run,
        roi_size_vox=getattr(network, "roi_size_vox", None),
        sw_overlap=getattr(network, "sw_overlap", None),
    )
    return contract


def inference_defaults(
    run: Mapping[str, Any], *, roi_size_vox: Sequence[int] | None, sw_overlap: float | None
) -> dict[str, Any]:
    """A model's inference defaults (``contract.json`` ``inference``), from its run.

    Prediction uses them for every setting the user does not give
    (:func:`medimg.tasks.load_model`, ``medimg predict``).

    Parameters
    ----------
    run : mapping
        The training ``run.json`` (its ``config``'s ``sw_overlap`` and ``mirror_axes``).
    roi_size_vox : sequence of int, optional
        The network's sliding window (None: it has none).
    sw_overlap : float, optional
        The network's own overlap, used when the run's config has none (detection).

    Returns
    -------
    dict
        ``roi_size_vox`` (list or None), ``sw_overlap`` (float or None), ``mirror_axes``
        (list) and ``precision`` (``"float32"``: what training validated with).

    Examples
    --------
    >>> inference_defaults({"config": {"sw_overlap": 0.25}}, roi_size_vox=(16, 16, 8),
    ...                    sw_overlap=None)  # doctest: +NORMALIZE_WHITESPACE
    {'roi_size_vox': [16, 16, 8], 'sw_overlap': 0.25, 'mirror_axes': [],
     'precision': 'float32'}
    """
    config: Mapping[str, Any] = run["config"] if isinstance(run.get("config"), dict) else {}
    return {
        "roi_size_vox": list(roi_size_vox or ()) or None,
        "sw_overlap": config.get("sw_overlap", sw_overlap),
        "mirror_axes": list(config.get("mirror_axes") or []),
        "precision": "float32",
    }


def evaluation_files(run_dir: Path, model_dir: Path) -> dict[str, Path]:
    """The run's figures and metrics, by member name (``evaluation/...``), bounded in size.

    The run folder's ``evaluation/`` (``medimg evaluate``'s report) and the model folder's
    ``curves.png`` (training curves); ``run.json`` files are left out (they hold local paths).

    Parameters
    ----------
    run_dir : Path
        The run folder (holding ``evaluation/``).
    model_dir : Path
        Its model folder (holding ``curves.png``).

    Returns
    -------
    dict of str to Path
        Member name to file: ``.json``, ``.csv``, ``.png``, ``.md`` and ``.txt`` files, at
        most 32 MiB together, in name order.
    """
    found: dict[str, Path] = {}
    curves = model_dir / "curves.png"
    if curves.is_file():
        found["evaluation/training_curves.png"] = curves
    folder = run_dir / "evaluation"
    if folder.is_dir() and folder.resolve() != model_dir.resolve():
        total = 0
        for path in sorted(folder.rglob("*")):
            if not (path.is_file() and not path.is_symlink()) or path.name == "run.json":
                continue
            if path.suffix not in _EVALUATION_SUFFIXES or path.name.startswith("."):
                continue
            total += path.stat().st_size
            if total > _EVALUATION_BYTES:
                break
            found["evaluation/" + path.relative_to(folder).as_posix()] = path
    return found


def _table(rows: Mapping[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return lines


def _summary(evaluation: Mapping[str, bytes]) -> list[str]:
    lines: list[str] = []
    for name, data in sorted(evaluation.items()):
        if not name.endswith("summary.json"):
            continue
        try:
            summary = json.loads(data)
        except ValueError:
            continue
        scalars = {k: v for k, v in summary.items() if isinstance(v, int | float | str)}
        if scalars:
            lines += ["", f"From `{name}`:", "", *_table(
                {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in scalars.items()}
            )]  # fmt: skip
    return lines


def render_card(
    *,
    name: str,
    version: str,
    contract: Mapping[str, Any],
    run: Mapping[str, Any],
    versions: Mapping[str, Any],
    evaluation: Mapping[str, bytes],
    weights_sha256: str,
) -> str:
    """The model card (``card.md``): task, outputs, data, contract, evaluation, versions.

    Parameters
    ----------
    name, version : str
        The model's name and version (the card's title).
    contract : mapping
        Its input contract (:func:`build_contract`).
    run : mapping
        The training ``run.json`` (cases, manifest digest, seed).
    versions : mapping
        Package versions (:func:`medimg.training.package_versions`); None values left out.
    evaluation : mapping of str to bytes
        Evaluation members (:func:`evaluation_files`, read): figures shown, ``summary.json``
        scalars tabulated.
    weights_sha256 : str
        The weights file's SHA-256.

    Returns
    -------
    str
        Markdown.
    """
    outputs = contract["outputs"]
    kind = "Labels" if contract["task"] == "segmentation" else "Classes"
    cases: Mapping[str, Any] = run["cases"] if isinstance(run.get("cases"), dict) else {}
    lines = [f"# {name} {version}", "", f"A {contract['task']} model packaged by medimg.", ""]
    lines += [f"## {kind}", "", "| value | name |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in outputs.items()]
    lines += ["", "## Data", ""]
    lines += [
        f"- training cases: {len(cases.get('train', []))}, validation cases: "
        f"{len(cases.get('validation', []))}",
        f"- manifest SHA-256: {run.get('manifest_sha256') or 'not recorded'}",
        f"- seed: {run.get('seed', 'not recorded')}",
    ]
    spacing = contract.get("spacing_mm")
    if spacing:
        grid = f"{' x '.join(f'{s:g}' for s in spacing)} mm, {contract['orientation']}"
    else:
        grid = f"{' x '.join(map(str, contract.get('size_px') or []))} px"
    inference = contract["inference"]
    lines += ["", "## Input contract", ""]
    lines += _table({
        "modality": contract["modality"], "channels": contract["channels"],
        "dimensions": f"{contract['spatial_dims']}D", "trained at": grid,
        "window (ROI)": inference["roi_size_vox"], "overlap": inference["sw_overlap"],
        "mirror axes": inference["mirror_axes"] or "none", "precision": inference["precision"],
    })  # fmt: skip
    lines += ["", "## Evaluation", ""]
    figures = sorted(n for n in evaluation if n.endswith(".png"))
    if not evaluation:
        lines.append("No evaluation was recorded in the run folder.")
    lines += [f"![{Path(n).stem}]({n})" for n in figures]
    lines += _summary(evaluation)
    lines += ["", "## Versions", ""]
    lines += _table({k: v for k, v in versions.items() if v is not None})
    lines += ["", f"Weights (`weights.safetensors`) SHA-256: `{weights_sha256}`", ""]
    lines += ["## Use", "", "```", "medimg model verify PACKAGE --trust SIGNER.pub.pem",
              "medimg predict --model PACKAGE --manifest M --out DIR", "```", ""]  # fmt: skip
    return "\n".join(lines)
