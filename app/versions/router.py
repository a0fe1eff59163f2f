from fastapi import APIRouter, Depends, Request, Response

from app.core.auth import PrincipalDep, read_only
from app.core.deps import DatabaseDep, SessionDep
from app.core.inputs import Id
from app.core.pagination import PageDep
from app.core.visibility import ensure_project_visible
from app.versions import preview, schemas, service

router = APIRouter(prefix="/api/v1/projects/{project_id}/versions", tags=["dataset versions"])


async def known_smallest_image(
    project_id: Id, request: Request, db: DatabaseDep, principal: PrincipalDep
) -> None:
    """Before the body is validated: see `service.note_smallest_image`."""
    try:
        raw = await request.json()
    except ValueError:
        return
    await service.note_smallest_image(db, principal, project_id, raw)


@router.post(
    "", status_code=201, response_model=schemas.VersionRead, dependencies=[Depends(known_smallest_image)]
)
def create_version(
    project_id: Id, body: schemas.VersionCreate, db: DatabaseDep, response: Response, principal: PrincipalDep
) -> schemas.VersionRead:
    """Freeze a version (201); a repeated idempotency key returns the version it made (200)."""
    ensure_project_visible(principal, project_id)
    version, created = service.create_version(db, project_id, body)
    if not created:
        response.status_code = 200
    return service.to_read(version)


@router.get("", response_model=schemas.VersionList)
def list_versions(
    project_id: Id,
    session: SessionDep,
    principal: PrincipalDep,
    page: PageDep,
    include_archived: bool = False,
) -> schemas.VersionList:
    """Newest first."""
    ensure_project_visible(principal, project_id)
    rows, total = service.list_versions(session, project_id, include_archived, page.limit, page.offset)
    return schemas.VersionList(versions=[service.to_read(v) for v in rows], total=total)


@router.get("/{version_id}", response_model=schemas.VersionDetail)
def get_version(
    project_id: Id, version_id: Id, session: SessionDep, principal: PrincipalDep
) -> schemas.VersionDetail:
    """The version with the jobs (and their weights) trained from it."""
    ensure_project_visible(principal, project_id)
    return service.to_detail(session, service.get_version(session, project_id, version_id))


@router.get("/{version_id}/compare", response_model=schemas.VersionComparison)
def compare_versions(
    project_id: Id, version_id: Id, other: Id, session: SessionDep, principal: PrincipalDep
) -> schemas.VersionComparison:
    """Images and classes added and removed going from this version to `other`."""
    ensure_project_visible(principal, project_id)
    return service.compare(session, project_id, version_id, other)


@router.delete("/{version_id}", response_model=schemas.VersionRead)
def archive_version(
    project_id: Id, version_id: Id, session: SessionDep, principal: PrincipalDep
) -> schemas.VersionRead:
    """Archive (soft delete); 409 while a job trains from it."""
    ensure_project_visible(principal, project_id)
    return service.to_read(service.archive_version(session, project_id, version_id))


@router.post("/preview", response_model=schemas.VersionPreview, dependencies=[Depends(known_smallest_image)])
@read_only  # renders in memory: viewers may look
def preview_version(
    project_id: Id, body: schemas.VersionCreate, db: DatabaseDep, principal: PrincipalDep
) -> schemas.VersionPreview:
    """What freezing `body` would make (counts per split and class, sample images); writes nothing."""
    ensure_project_visible(principal, project_id)
    return preview.preview(db, project_id, body)
