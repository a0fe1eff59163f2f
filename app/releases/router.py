from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.core.auth import PrincipalDep
from app.core.deps import SessionDep
from app.releases import schemas, service

router = APIRouter(prefix="/api/v1/training", tags=["releases"])

ZipPath = Annotated[str, Query(min_length=1, max_length=1000, description="projects/<p>/releases/<zip>")]


@router.get("/check-extracted", response_model=schemas.ExtractionRead)
def check_extracted(
    zip_path: ZipPath, session: SessionDep, principal: PrincipalDep
) -> schemas.ExtractionRead:
    """Whether the release is extracted under training_data/, and whether the ZIP changed since."""
    return service.status(session, zip_path, principal)


@router.post("/extract-release", response_model=schemas.ExtractionRead)
def extract_release(
    body: schemas.ExtractRequest, session: SessionDep, principal: PrincipalDep
) -> schemas.ExtractionRead:
    """Extract safely into projects/<p>/training_data/<release_slug>/ (all or nothing)."""
    return service.extract(session, body.zip_path, principal)


@router.delete("/releases", status_code=204)
def delete_release(zip_path: ZipPath, session: SessionDep, principal: PrincipalDep) -> Response:
    """Delete the release ZIP and its extracted folder."""
    service.delete(session, zip_path, principal)
    return Response(status_code=204)
