"""Datasets and versions: per project, counts per class and split, a gallery with the annotations drawn,
versions with checksum, splits and leakage, the diff of two versions; upload a DICE ZIP, freeze."""

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.core.auth import Principal
from app.core.db import Database
from app.core.deps import DatabaseDep, SessionDep
from app.core.errors import not_found
from app.core.naming import NAME_PATTERN
from app.core.visibility import ensure_project_visible, ensure_visible
from app.dataset_registry import service as dataset_service
from app.datasets.dice import load_dice
from app.models import Dataset, Project
from app.projects.service import get_project
from app.versions import preview
from app.versions import service as version_service
from app.versions.manifest import annotation_json
from app.versions.schemas import VersionCreate
from app.web import actions
from app.web.deps import UserDep, WebUser, WriterDep, templates
from app.web.errors import is_htmx

router = APIRouter(include_in_schema=False)
GALLERY = 24


def visible_projects(session: Session, principal: Principal) -> list[Project]:
    stmt = select(Project).where(principal.project_filter(Project.id)).order_by(Project.name)
    return list(session.scalars(stmt))


@router.get("/datasets")
def datasets_page(
    request: Request, session: SessionDep, user: UserDep, project_id: int | None = None
) -> Response:
    if project_id is not None:
        ensure_project_visible(user.principal, project_id)
    rows, total = dataset_service.list_datasets(session, project_id, None, None, 200, 0, user.principal)
    context = {
        "user": user,
        "datasets": [dataset_service.to_read(d) for d in rows],
        "total": total,
        "projects": visible_projects(session, user.principal),
        "project_id": project_id,
    }
    return templates.TemplateResponse(request, "datasets.html", context)


@router.post("/datasets")
def upload_dataset(
    request: Request,
    session: SessionDep,
    user: WriterDep,
    project_id: Annotated[int, Form()],
    name: Annotated[str, Form(pattern=NAME_PATTERN)],
    file: Annotated[UploadFile, File()],
) -> Response:
    dataset = actions.register_dataset(session, user.principal, project_id, name, file.file)
    session.flush()
    target = f"/datasets/{dataset.id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def visible_dataset(session: Session, principal: Principal, dataset_id: int) -> Dataset:
    dataset = dataset_service.get_dataset(session, dataset_id)
    ensure_visible(principal, dataset.project_id, "dataset", dataset_id)
    return dataset


def drawable(annotation: dict[str, Any], names: dict[int, str]) -> dict[str, Any]:
    """One annotation in the manifest's shape (COCO-like, pixels) as the page's drawing code reads it."""
    shape: dict[str, Any] = {
        "class_id": annotation["class_id"],
        "class_name": names.get(annotation["class_id"], "?"),
        "confidence": annotation.get("confidence"),
    }
    if "bbox" in annotation:
        x, y, w, h = annotation["bbox"]
        shape["box"] = [x, y, x + w, y + h]
    if annotation.get("segmentation"):
        flat = annotation["segmentation"][0]
        shape["polygon"] = [[flat[i], flat[i + 1]] for i in range(0, len(flat) - 1, 2)]
    if annotation.get("keypoints"):
        k = annotation["keypoints"]
        shape["keypoints"] = [[k[i], k[i + 1], 1.0 if k[i + 2] else 0.0] for i in range(0, len(k) - 2, 3)]
    return shape


def gallery(dataset: Dataset, split: str | None) -> list[dict[str, Any]]:
    """The first images of each task with their annotations, in the shape the page's drawing code reads."""
    dice = load_dice(dataset_service.source_dir(dataset), check_files=False)
    items = []
    for task, annotations in dice.tasks.items():
        names = {c.id: c.name for c in annotations.classes}
        for image in [i for i in annotations.images if split in (None, "", i.split)][:GALLERY]:
            shapes = [drawable(annotation_json(a), names) for a in image.annotations]
            items.append(
                {
                    "task": task.value,
                    "image_id": image.id,
                    "path": image.path,
                    "split": image.split,
                    "name": image.file_name,
                    "annotations": shapes,
                }
            )
    return items


@router.get("/datasets/{dataset_id:int}")
def dataset_page(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    user: UserDep,
    split: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    dataset = visible_dataset(session, user.principal, dataset_id)
    context = {
        "user": user,
        "dataset": dataset_service.to_read(dataset),
        "gallery": gallery(dataset, split),
        "split": split or "",
    }
    return templates.TemplateResponse(request, "dataset.html", context)


@router.get("/datasets/{dataset_id:int}/files/{path:path}")
def dataset_file(dataset_id: int, path: str, session: SessionDep, user: UserDep) -> Response:
    """An image of the dataset (only under its own folder)."""
    root = dataset_service.source_dir(visible_dataset(session, user.principal, dataset_id)).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise not_found("file", path)
    return FileResponse(target)


@router.get("/projects/{project_id:int}/versions")
def versions_page(
    request: Request,
    project_id: int,
    session: SessionDep,
    user: UserDep,
    base: int | None = None,
    other: int | None = None,
) -> Response:
    ensure_project_visible(user.principal, project_id)
    project = get_project(session, project_id)
    rows, _total = version_service.list_versions(session, project_id, False, 100, 0)
    comparison = None
    if base is not None and other is not None:
        comparison = version_service.compare(session, project_id, base, other)
    datasets, _ = dataset_service.list_datasets(session, project_id, None, None, 100, 0, user.principal)
    context = {
        "user": user,
        "project": project,
        "versions": [version_service.to_read(v) for v in rows],
        "datasets": datasets,
        "comparison": comparison,
        "base": base,
        "other": other,
    }
    return templates.TemplateResponse(request, "versions.html", context)


# The version form's fields, by the part of the request they belong to (app/versions/schemas.py).
PREPROCESSING = ("auto_orient", "resize", "resize_mode", "tile", "tile_min_visibility", "keep_empty_tiles")
AUGMENTATION = (
    "multiplier", "seed", "horizontal_flip", "vertical_flip", "rotation", "scale", "brightness", "contrast",
    "blur", "noise", "cutout",
)  # fmt: skip


async def version_request(form: FormData, db: Database, user: WebUser, project_id: int) -> VersionCreate:
    """The version form as the API's request: empty fields take their defaults, a ticked box is true;
    bad values are the API's one 422, naming the fields (`augmentation.rotation`)."""

    def part(names: tuple[str, ...]) -> dict[str, Any]:
        return {n: form[n] for n in names if isinstance(form.get(n), str) and form[n] != ""}

    dataset_id = form.get("dataset_id")
    fields = {
        "dataset_id": int(dataset_id)
        if isinstance(dataset_id, str) and dataset_id.isdigit()
        else dataset_id or None,
        "display_name": form.get("display_name") or None,
        "preprocessing": part(PREPROCESSING),
        "augmentation": part(AUGMENTATION),
    }
    await version_service.note_smallest_image(db, user.principal, project_id, fields)
    try:
        return VersionCreate.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def class_names(db: Database, project_id: int, dataset_id: int | None) -> dict[str, dict[int, str]]:
    dice = load_dice(version_service.locate(db, project_id, dataset_id).source, check_files=False)
    return {task.value: {c.id: c.name for c in a.classes} for task, a in dice.tasks.items()}


@router.post("/projects/{project_id:int}/versions/preview")
async def preview_version(request: Request, project_id: int, db: DatabaseDep, user: UserDep) -> Response:
    """What the form would freeze: counts per split and class, sample images with their labels drawn."""
    ensure_project_visible(user.principal, project_id)
    body = await version_request(await request.form(), db, user, project_id)

    def render() -> dict[str, Any]:  # reads and renders images: off the event loop
        result = preview.preview(db, project_id, body)
        names = class_names(db, project_id, body.dataset_id)
        samples = [
            {
                "name": s.file_name,
                "split": s.split,
                "src": f"data:{s.media_type};base64,{s.data}",
                "annotations": [
                    drawable(a, names.get(task, {})) for task, anns in s.annotations.items() for a in anns
                ],
            }
            for s in result.samples
        ]
        return {"preview": result, "samples": samples}

    context = await anyio.to_thread.run_sync(render)
    return templates.TemplateResponse(request, "_version_preview.html", context)


@router.post("/projects/{project_id:int}/versions")
async def freeze(request: Request, project_id: int, db: DatabaseDep, user: WriterDep) -> Response:
    body = await version_request(await request.form(), db, user, project_id)
    await anyio.to_thread.run_sync(actions.freeze_version, db, user.principal, project_id, body)
    return RedirectResponse(f"/projects/{project_id}/versions", status_code=303)
