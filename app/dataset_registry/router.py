from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import ValidationError

from app.core import untrusted_json
from app.core.auth import PrincipalDep
from app.core.deps import SessionDep
from app.core.errors import FieldError, invalid, invalid_fields
from app.core.inputs import Id
from app.core.naming import NAME_PATTERN
from app.core.pagination import PageDep
from app.core.visibility import ensure_project_visible
from app.dataset_registry import annotations, schemas, service
from app.datasets.types import TaskType

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=schemas.DatasetRead)
def register_zip(
    session: SessionDep,
    principal: PrincipalDep,
    project_id: Annotated[Id, Form()],
    name: Annotated[str, Form(pattern=NAME_PATTERN)],
    file: Annotated[UploadFile, File(description="a ZIP of a DICE dataset folder")],
    description: Annotated[str | None, Form(max_length=2000)] = None,
) -> schemas.DatasetRead:
    """Register a DICE dataset from an uploaded ZIP (extracted safely, validated, or nothing is kept)."""
    ensure_project_visible(principal, project_id)
    return service.to_read(service.register_from_zip(session, project_id, name, description, file.file))


@router.post("/from-folder", status_code=201, response_model=schemas.DatasetRead)
def register_folder(
    body: schemas.DatasetFromFolder, session: SessionDep, principal: PrincipalDep
) -> schemas.DatasetRead:
    """Register a DICE folder already in storage (copied into the dataset's own folder)."""
    ensure_project_visible(principal, body.project_id)
    return service.to_read(service.register_from_folder(session, body, principal))


@router.get("", response_model=schemas.DatasetPage)
def list_datasets(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    project_id: Id | None = None,
    task_type: TaskType | None = None,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> schemas.DatasetPage:
    rows, total = service.list_datasets(
        session, project_id, task_type, search, page.limit, page.offset, principal
    )
    return schemas.DatasetPage(datasets=[service.to_read(d) for d in rows], total=total)


@router.get("/{dataset_id}", response_model=schemas.DatasetRead)
def get_dataset(dataset_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.DatasetRead:
    return service.to_read(service.get_dataset(session, dataset_id, principal=principal))


@router.post("/{dataset_id}/annotations", response_model=schemas.AnnotationUploadRead)
def upload_annotations(
    dataset_id: Id,
    session: SessionDep,
    principal: PrincipalDep,
    batch: Annotated[str, Form(description="JSON: {task_type, classes?, images: [...]} (DICE shape)")],
    files: Annotated[list[UploadFile] | None, File(description="image files, matched by file_name")] = None,
) -> schemas.AnnotationUploadRead:
    """Add images and annotations to the dataset; validated as a whole, all or nothing."""
    service.get_dataset(session, dataset_id, principal=principal)
    try:
        parsed = schemas.AnnotationBatch.model_validate(untrusted_json.loads(batch))
    except untrusted_json.BadJson as exc:
        raise invalid("batch", str(exc)) from exc
    except ValidationError as exc:
        errors = [FieldError("batch." + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        raise invalid_fields(errors) from exc
    return annotations.upload(session, dataset_id, parsed, files or [])


@router.get("/{dataset_id}/annotations/stats", response_model=schemas.AnnotationStats)
def annotation_stats(dataset_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.AnnotationStats:
    service.get_dataset(session, dataset_id, principal=principal)
    return annotations.stats(session, dataset_id)
