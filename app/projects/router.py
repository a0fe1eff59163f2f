from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.core.auth import PrincipalDep
from app.core.deps import SessionDep
from app.core.inputs import Id
from app.core.pagination import PageDep
from app.core.visibility import ensure_project_visible
from app.projects import schemas, service

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


@router.post("", status_code=201, response_model=schemas.ProjectRead)
def create_project(
    body: schemas.ProjectCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.ProjectRead:
    """Needs an admin key or a member key for all projects."""
    principal.require_all_projects("creating a project")
    return service.to_read(session, service.create_project(session, body))


@router.get("", response_model=schemas.ProjectPage)
def list_projects(
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    search: Annotated[str | None, Query(max_length=100)] = None,
) -> schemas.ProjectPage:
    projects, total = service.list_projects(session, search, page.limit, page.offset, principal)
    items = [service.to_read(session, p) for p in projects]
    return schemas.ProjectPage(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{project_id}", response_model=schemas.ProjectRead)
def get_project(project_id: Id, session: SessionDep, principal: PrincipalDep) -> schemas.ProjectRead:
    return service.to_read(session, service.get_project(session, project_id, principal=principal))


@router.patch("/{project_id}", response_model=schemas.ProjectRead)
def update_project(
    project_id: Id, body: schemas.ProjectUpdate, session: SessionDep, principal: PrincipalDep
) -> schemas.ProjectRead:
    ensure_project_visible(principal, project_id)
    return service.to_read(session, service.update_project(session, project_id, body, principal))


@router.delete("/{project_id}", status_code=204)
def delete_project(project_id: Id, session: SessionDep, principal: PrincipalDep) -> Response:
    """Delete the project, its datasets, versions, jobs and storage folder; 409 while a job is unfinished.
    Needs an admin key or a member key for all projects."""
    ensure_project_visible(principal, project_id)
    principal.require_all_projects("deleting a project")
    service.delete_project(session, project_id)
    return Response(status_code=204)
