"""One way to look rows up (app/core/visibility.py) and to page them (app/core/pagination.py), on a real
database (both parametrizations): a row of a project the key does not cover is never loaded, and its 404
is word for word the one of a row that does not exist."""

import pytest
from sqlalchemy import select

from app.core.auth import Principal
from app.core.db import Database
from app.core.errors import AppError
from app.core.pagination import paginate
from app.core.visibility import find_visible, get_visible
from app.models import Project, Role, TrainingJob
from tests.factories import make_job


def scoped_to(project_id: int) -> Principal:
    return Principal(key_id=1, name="scoped", role=Role.MEMBER, project_ids=frozenset({project_id}))


def test_a_row_the_key_may_not_see_is_never_loaded_and_answers_like_a_missing_one(db: Database) -> None:
    with db.session() as session:
        mine, theirs = make_job(session, "mine", project="ours"), make_job(session, "theirs", project="other")
        mine_id, theirs_id, our_project = mine.id, theirs.id, mine.project_id
    principal = scoped_to(our_project)

    with db.session() as session:
        assert get_visible(session, principal, TrainingJob, mine_id).name == "mine"
        assert get_visible(session, principal, Project, our_project).name == "ours"
        with pytest.raises(AppError) as hidden:
            get_visible(session, principal, TrainingJob, theirs_id)
        # Not a check after the load: the row was never fetched into the session.
        assert all(
            not (isinstance(row, TrainingJob) and row.id == theirs_id)
            for row in session.identity_map.values()
        )
        assert find_visible(session, principal, TrainingJob, theirs_id) is None
        with pytest.raises(AppError) as missing:
            get_visible(session, principal, TrainingJob, theirs_id + 1000)

    assert hidden.value.status == missing.value.status == 404
    assert hidden.value.detail == f"training job {theirs_id} does not exist"
    assert missing.value.detail == f"training job {theirs_id + 1000} does not exist"
    assert hidden.value.errors == missing.value.errors == []

    with db.session() as session:  # a trusted caller (worker, CLI on the server) sees every project
        assert get_visible(session, None, TrainingJob, theirs_id).name == "theirs"


def test_paginate_counts_every_filtered_row_and_slices_them_in_order(db: Database) -> None:
    with db.session() as session:
        for n in range(5):
            make_job(session, f"job-{n}", project="ours")
        make_job(session, "elsewhere", project="other")
        stmt = select(TrainingJob).join(Project).where(Project.name == "ours")

        rows, total = paginate(session, stmt, [TrainingJob.id.desc()], limit=2, offset=1)
        assert total == 5
        assert [job.name for job in rows] == ["job-3", "job-2"]

        rows, total = paginate(session, stmt, [TrainingJob.id.desc()], limit=2, offset=5)
        assert (rows, total) == ([], 5)
