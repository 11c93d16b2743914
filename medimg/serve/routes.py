"""The versioned API: ``/v1/models`` and ``/v1/jobs``."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from medimg.serve._http import read_form, require_token
from medimg.serve._options import job_options
from medimg.serve.errors import UploadError
from medimg.serve.settings import ServeSettings
from medimg.serve.store import AdmissionError, Job, JobStore, new_job_id
from medimg.serve.uploads import UploadLimits, check_upload

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")
Owner = Annotated[str, Depends(require_token)]

_OPTION_HELP = {
    "sw_overlap": "segmentation's sliding-window overlap, in [0, 1)",
    "mirror_axes": "segmentation's test-time mirror axes, e.g. '0 1' (empty: none)",
    "threshold": "classification's positive-call probability, in (0, 1)",
    "min_score": "detection's lowest box score kept, in [0, 1]",
    "seg_type": "a DICOM upload's SEG: binary (default) or labelmap",
    "precision": "autocast precision, one the service allows (medimg serve --job-precision)",
}

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a NIfTI (.nii, .nii.gz), NRRD or MetaImage (.mha) "
                            "file, or a zip of one DICOM series; its content decides, not "
                            "its name",
                        },
                        "model": {
                            "type": "string",
                            "description": "the model's name (GET /v1/models); optional "
                            "when one model is served",
                        },
                        **{
                            name: {"type": "string", "description": f"optional: {text}"}
                            for name, text in _OPTION_HELP.items()
                        },
                    },
                }
            }
        },
    }
}


def _settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.settings
    return settings


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


@router.get("/models", summary="The served models: task, labels or classes, input, card")
def list_models(request: Request, owner: Owner) -> dict[str, Any]:
    """Every served model's description (``Model.describe()``), by name."""
    hidden = {"source"}  # where the operator keeps the model is not the clients' business
    models = request.app.state.models.values()
    return {"models": [{k: v for k, v in m.items() if k not in hidden} for m in models]}


def _pick_model(request: Request, name: object) -> str:
    models: dict[str, Any] = request.app.state.models
    if name is None or name == "":
        if len(models) == 1:
            return next(iter(models))
        raise HTTPException(422, f"form field 'model' is missing; one of: {', '.join(models)}")
    if not isinstance(name, str) or name not in models:
        raise HTTPException(
            422, f"form field 'model' must be one of {', '.join(models)}, got {name!r}"
        )
    return name


def _admission_check(store: JobStore, settings: ServeSettings) -> None:
    """Refuse early (before reading the body) when the job could not be queued anyway."""
    counts = store.counts()
    if counts["queued"] >= settings.max_queued:
        raise HTTPException(
            429,
            f"the queue is full ({counts['queued']} jobs waiting); retry later",
            headers={"Retry-After": "5"},
        )


async def _save_upload(upload: UploadFile, target: Path) -> int:
    def copy() -> int:
        upload.file.seek(0)
        with target.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)
            return out.tell()

    return await run_in_threadpool(copy)


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit an image for prediction (multipart: file, model)",
    openapi_extra=_UPLOAD_SCHEMA,
    responses={
        400: {"description": "the upload is not a readable volume"},
        401: {"description": "no token or a wrong one"},
        408: {"description": "the upload took too long"},
        413: {"description": "the body or its decoded volume is too large"},
        429: {"description": "queue full or too many jobs for this token (Retry-After)"},
    },
)
async def create_job(request: Request, owner: Owner) -> JSONResponse:
    """Accept one upload as a queued job: 202 with the job's JSON (``id``, ``status``)."""
    settings, store = _settings(request), _store(request)
    _admission_check(store, settings)
    form = await read_form(
        request, max_bytes=settings.max_upload_bytes, timeout_s=settings.upload_timeout_s
    )
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(
                422,
                "form field 'file' is missing or not a file; send the "
                "image as multipart/form-data field 'file'",
            )
        model = _pick_model(request, form.get("model"))
        try:
            task = request.app.state.models[model]["task"]
            options = job_options(task, form.multi_items(), precisions=settings.job_precisions)
        except UploadError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        job_id = new_job_id()
        folder = settings.jobs_dir / job_id
        folder.mkdir(parents=True)
        try:
            size = await _save_upload(upload, folder / "upload.part")
            limits = UploadLimits(settings.max_decoded_bytes, settings.max_zip_members)
            checked = await run_in_threadpool(check_upload, folder / "upload.part", folder, limits)
            if "seg_type" in options and checked.kind != "dicom":
                raise UploadError(
                    422,
                    "form field 'seg_type' sets the DICOM SEG of a zip of one DICOM series; "
                    f"this upload is a {checked.kind} file, which gets no SEG; drop the field",
                )
            job = Job.queued(
                job_id,
                model=model,
                owner=owner,
                input=str(checked.path.relative_to(folder)),
                input_kind=checked.kind,
                options=options or None,
            )
            store.submit(
                job,
                max_queued=settings.max_queued,
                max_active_per_owner=settings.max_active_per_token,
                retry_after_s=5,
            )
        except UploadError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("upload refused (%d)", exc.status)  # the reason may name members
            raise HTTPException(exc.status, str(exc)) from None
        except AdmissionError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(
                429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}
            ) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        await form.close()
    logger.info("job %s: queued (%s, %s, %d bytes)", job_id, model, checked.kind, size)
    stored = store.get(job_id)
    body = job.to_json() if stored is None else stored.to_json()
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


def _own_job(request: Request, job_id: str, owner: str) -> Job:
    job = _store(request).get(job_id)
    if job is None or job.owner != owner:
        raise HTTPException(
            404,
            f"no job {job_id!r} (it never existed, was deleted, expired, "
            "or belongs to another token)",
        )
    return job


_WAIT_POLL_S = 0.1
"""How often a waiting ``GET /v1/jobs/{id}?wait=S`` reads the job again (in the server)."""


@router.get("/jobs/{job_id}", summary="A job: status, progress, timings, error")
async def get_job(
    request: Request,
    job_id: str,
    owner: Owner,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=60,
            description="seconds to hold the answer until the job is done or failed "
            "(long poll; 0, the default, answers at once)",
        ),
    ] = 0.0,
) -> dict[str, Any]:
    """The job's JSON: ``status`` is queued, running, done or failed.

    With ``wait`` the answer comes as soon as the job ends, or after ``wait`` seconds with
    its status then: one request instead of many polls, whose handling would take CPU from
    the workers.
    """
    job = await run_in_threadpool(_own_job, request, job_id, owner)
    deadline = time.monotonic() + wait
    while job.status in ("queued", "running") and time.monotonic() < deadline:
        if await request.is_disconnected():
            break
        await asyncio.sleep(min(_WAIT_POLL_S, max(0.0, deadline - time.monotonic())))
        job = await run_in_threadpool(_own_job, request, job_id, owner)
    return job.to_json()


def _result_file(job: Job, folder: Path, name: str) -> Path | None:
    relative = (job.result or {}).get(name)
    return None if relative is None else folder / relative


def _done_job(request: Request, job_id: str, owner: str) -> Job:
    job = _own_job(request, job_id, owner)
    if job.status != "done":
        detail = f"job {job_id} is {job.status}"
        if job.status == "failed":
            detail += f" ({job.error}); it has no result"
        else:
            detail += f"; poll GET /v1/jobs/{job_id} until its status is done"
        raise HTTPException(409, detail)
    return job


def _dicom_result(job: Job, folder: Path, format: str) -> FileResponse:
    what = {"seg": "DICOM SEG", "sr": "DICOM SR of the segments' volumes"}[format]
    if job.input_kind != "dicom":
        raise HTTPException(
            409,
            f"job {job.id}'s upload was a {job.input_kind} file, not a DICOM series; a {what} "
            "refers to the uploaded DICOM images, so there is none; ask format=nifti (the "
            "label map on the input's grid) or format=json, or upload a zip of the series",
        )
    path = _result_file(job, folder, format)
    if path is None or not path.is_file():
        raise HTTPException(
            409, f"job {job.id}'s model ({job.model}) gives no label map, so no {what}; "
            "ask format=json",
        )  # fmt: skip
    return FileResponse(path, media_type="application/dicom", filename=f"{job.id}_{path.name}")


@router.get("/jobs/{job_id}/result", summary="The result: NIfTI label map (default), JSON, SEG")
def get_result(
    request: Request,
    job_id: str,
    owner: Owner,
    format: Annotated[Literal["nifti", "json", "seg", "sr"], Query()] = "nifti",
) -> Response:
    """The label map (``nifti``), the findings (``json``) or, for a DICOM upload, DICOM files.

    ``seg``: the DICOM SEG on the uploaded series; ``sr``: the SR of its segments' volumes.
    """
    job = _done_job(request, job_id, owner)
    folder = _settings(request).jobs_dir / job_id
    if format == "json":
        return JSONResponse({"id": job_id, "model": job.model, "findings": job.findings})
    if format in ("seg", "sr"):
        return _dicom_result(job, folder, format)
    path = _result_file(job, folder, "labels")
    if path is None or not path.is_file():
        raise HTTPException(404, f"job {job_id}'s model gives no label map; ask format=json")
    return FileResponse(path, media_type="application/gzip", filename=f"{job_id}_labels.nii.gz")


@router.get("/jobs/{job_id}/image", summary="The input image as NIfTI (a DICOM upload's series)")
def get_image(request: Request, job_id: str, owner: Owner) -> Response:
    """The input image as NIfTI, on the label map's grid.

    A DICOM upload's series as read by medimg; a NIfTI upload as sent. NRRD and MetaImage
    uploads: 409 (the client has the file).
    """
    job = _done_job(request, job_id, owner)
    folder = _settings(request).jobs_dir / job_id
    path = _result_file(job, folder, "image")
    if path is None and job.input_kind in ("nifti", "nifti-gz"):
        path = folder / job.input
    if path is None or not path.is_file():
        raise HTTPException(
            409,
            f"job {job_id}'s upload was a {job.input_kind} file, which the service does not "
            "convert; the image is the file you sent (the label map lies on its grid)",
        )
    gz = path.name.endswith(".gz")
    return FileResponse(
        path,
        media_type="application/gzip" if gz else "application/octet-stream",
        filename=f"{job_id}_image.nii{'.gz' if gz else ''}",
    )


@router.delete("/jobs/{job_id}", status_code=204, summary="Delete a job and its files")
def delete_job(request: Request, job_id: str, owner: Owner) -> Response:
    """Remove the job (a running one stops at its next progress report) and its files."""
    _own_job(request, job_id, owner)
    _store(request).delete(job_id)
    shutil.rmtree(_settings(request).jobs_dir / job_id, ignore_errors=True)
    logger.info("job %s: deleted", job_id)
    return Response(status_code=204)
