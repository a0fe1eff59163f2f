"""HTTP endpoints of base weights: admins import and delete; every key lists and reads."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from app.core.auth import Principal, PrincipalDep, forbidden
from app.core.deps import SessionDep
from app.core.inputs import Id
from app.core.jobs import TaskType
from app.core.pagination import PageDep
from app.models import Role
from app.weights import schemas, service

router = APIRouter(prefix="/api/v1/weights", tags=["weights"])


def _require_admin(principal: Principal, action: str) -> None:
    # Base weights belong to no project: every project may start from them, so only admins add or remove.
    if principal.role != Role.ADMIN:
        raise forbidden(f"{action} base weights needs an admin key")


@router.post("", status_code=201, response_model=schemas.WeightsRead)
def import_weights(
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
    file: Annotated[UploadFile, File(description="an Ultralytics .pt checkpoint")],
    name: Annotated[str | None, Form(description="default: the file name without .pt")] = None,
) -> schemas.WeightsRead:
    """Check and store a `.pt`; importing the same bytes again answers 200 with the same record."""
    _require_admin(principal, "importing")
    weights, created = service.import_weights(session, file.file, file.filename or "", name)
    if not created:
        response.status_code = 200
    return schemas.WeightsRead.model_validate(weights)


@router.get("", response_model=schemas.WeightsPage)
def list_weights(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    task: TaskType | None = None,
) -> schemas.WeightsPage:
    rows, total = service.list_weights(session, task, page.limit, page.offset)
    items = [schemas.WeightsRead.model_validate(w) for w in rows]
    return schemas.WeightsPage(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{weights_id:int}", response_model=schemas.WeightsRead)
def get_weights(weights_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.WeightsRead:
    return schemas.WeightsRead.model_validate(service.get_weights(session, weights_id))


@router.delete("/{weights_id:int}", status_code=204)
def delete_weights(weights_id: Id, session: SessionDep, principal: PrincipalDep) -> Response:
    """Refused (409) while a job starts from these weights or a model descends from them."""
    _require_admin(principal, "deleting")
    service.delete_weights(session, weights_id)
    return Response(status_code=204)
