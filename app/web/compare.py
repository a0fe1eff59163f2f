"""Compare 2-8 jobs: their metrics overlaid per metric, their configs side by side."""

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.core.deps import SessionDep
from app.core.errors import invalid
from app.training import service
from app.web.deps import UserDep, templates
from app.web.jobs import chart_data, visible_job

router = APIRouter(include_in_schema=False)


@router.get("/compare")
def compare_page(
    request: Request,
    session: SessionDep,
    user: UserDep,
    ids: Annotated[str, Query(pattern=r"^\s*\d+(\s*,\s*\d+)*\s*$")] = "",
) -> Response:
    job_ids = list(dict.fromkeys(int(i) for i in ids.split(",") if i.strip())) if ids else []
    if job_ids and not 2 <= len(job_ids) <= 8:
        raise invalid("ids", "pick between 2 and 8 jobs")
    jobs = [visible_job(session, user.principal, job_id) for job_id in job_ids]
    series = {job.id: chart_data(service.metrics_history(session, job.id)) for job in jobs}
    keys = sorted({key for job in jobs for key in job.config})
    differing = {key for key in keys if len({json.dumps(j.config.get(key)) for j in jobs}) > 1}
    context = {
        "user": user,
        "jobs": jobs,
        "ids": ",".join(map(str, job_ids)),
        "series": {str(job.id): {"name": f"#{job.id} {job.name}", "points": series[job.id]} for job in jobs},
        "keys": keys,
        "differing": differing,
    }
    return templates.TemplateResponse(request, "compare.html", context)
