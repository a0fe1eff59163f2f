"""Scheduling on the dashboard: a job's priority and pool, why a queued job waits and about when it starts
(in the jobs list, live, and on its page), and the priority and pool of the New job form."""

import re
import time
from collections.abc import Iterable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.jobs import JobStatus
from app.core.redis import get_redis
from app.core.settings import get_settings
from app.core.workers import announce
from app.models import TrainingJob
from app.scheduling.priorities import Priority
from tests.web.conftest import Jobs, csrf_of, set_status, sign_in

pytestmark = pytest.mark.integration

NO_WORKER = "no live worker consumes the training queue"
IDLE_WORKER = {"id": "box-gpu0", "host": "box", "device": "0", "queues": ["training"], "pool": "a100"}


@pytest.fixture
def high_beta(db: Database, jobs: Jobs) -> int:
    """The queued job of the fixture, at high priority."""
    with db.session() as session:
        session.get_one(TrainingJob, jobs.beta).priority = Priority.HIGH
    return jobs.beta


def test_the_list_shows_priority_and_why_a_queued_job_waits(
    admin: TestClient, jobs: Jobs, high_beta: int
) -> None:
    page = admin.get("/jobs").text
    beta = page[page.index(f'<tr id="job-{high_beta}"') :].split("</tr>")[0]
    assert f'<small class="why">#1 · {NO_WORKER}</small>' in beta
    assert '<td class="prio-high">high</td>' in beta
    alpha = page[page.index(f'<tr id="job-{jobs.alpha}"') :].split("</tr>")[0]
    assert '<td class="prio-normal">normal</td>' in alpha and 'class="why"' not in alpha  # running


def test_a_queued_rows_reason_is_sent_again_when_it_changes_without_an_event(
    admin: TestClient, jobs: Jobs, high_beta: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_SSE_PING", "1")  # a ping a second: the wait below can end
    get_settings.cache_clear()
    with admin.stream("GET", "/jobs/live", params={"ids": f"{jobs.alpha},{high_beta}"}) as stream:
        rows = rows_of(stream.iter_lines())
        first = next(rows) | next(rows)  # the first read sends every row (before any ping)
        assert NO_WORKER in first[high_beta]
        announce(get_redis(), "box-gpu0", IDLE_WORKER)  # a worker comes up: the job's own log says nothing
        deadline = time.monotonic() + 30
        for sent in rows:
            if "starting: a GPU is free" in sent.get(high_beta, ""):
                break
            assert time.monotonic() < deadline, "the row never said the job is starting"


def rows_of(lines: Iterable[str]) -> Iterator[dict[int, str]]:
    """The stream's messages as {job id: row html}, one message at a time; a ping as {}."""
    event = None
    for line in lines:
        if line.startswith("event: job-"):
            event = int(line.removeprefix("event: job-"))
        elif line.startswith("data: ") and event is not None:
            yield {event: line.removeprefix("data: ")}
            event = None
        elif line.startswith(":"):
            yield {}


def test_the_job_page_says_why_it_waits_and_reads_it_again_until_it_runs(
    admin: TestClient, db: Database, jobs: Jobs, high_beta: int
) -> None:
    page = admin.get(f"/jobs/{high_beta}").text
    assert "priority high" in page
    waiting = re.search(
        r'<p id="waiting" class="waiting" hx-get="([^"]+)" hx-trigger="every 10s">(.*?)</p>', page, re.S
    )
    assert waiting is not None and waiting.group(1) == f"/jobs/{high_beta}/waiting"
    assert (
        "#1 in line" in waiting.group(2)
        and NO_WORKER in waiting.group(2)
        and "no estimate yet" in waiting.group(2)
    )

    announce(get_redis(), "box-gpu0", IDLE_WORKER)
    polled = admin.get(f"/jobs/{high_beta}/waiting")
    assert (
        polled.status_code == 200 and "#1 in line" in polled.text and "starting: a GPU is free" in polled.text
    )

    set_status(db, high_beta, JobStatus.RUNNING)
    assert admin.get(f"/jobs/{high_beta}/waiting").status_code == 286  # htmx: stop polling
    assert 'id="waiting"' not in admin.get(f"/jobs/{high_beta}").text
    assert 'id="waiting"' not in admin.get(f"/jobs/{jobs.alpha}").text


def test_the_form_offers_the_priorities_a_role_may_ask_for_and_the_known_pools(
    app: FastAPI, db: Database, keys: dict[str, str], jobs: Jobs, yolo_dataset: object
) -> None:
    announce(get_redis(), "box-gpu0", IDLE_WORKER)
    member = sign_in(app, keys["member_alpha"])
    form_page = member.get("/jobs/new").text
    offered = re.findall(
        r'<option value="(\w+)"[^>]*>\1</option>', form_page.split('id="f-priority"')[1].split("</select>")[0]
    )
    assert offered == ["low", "normal", "high"]
    assert '<option value="a100" >a100</option>' in form_page
    admin = sign_in(app, keys["admin"])
    assert '<option value="urgent" >urgent</option>' in admin.get("/jobs/new").text

    form = {
        "csrf_token": csrf_of(member),
        "project": "alpha",
        "name": "pooled",
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_path": str(yolo_dataset),
        "cfg.epochs": "1",
        "priority": "urgent",  # not offered to a member, and refused beside its field if sent anyway
        "pool": "a100",
    }
    checked = member.post("/jobs/new/preflight", data=form, headers={"HX-Request": "true"})
    assert 'id="err-priority" hx-swap-oob="true">member keys may ask for high at most</span>' in checked.text
    form["priority"] = "high"
    checked = member.post("/jobs/new/preflight", data=form, headers={"HX-Request": "true"})
    assert "Preflight passed" in checked.text
    started = member.post("/jobs/new", data=form)
    assert started.status_code == 303, started.text
    with db.session() as session:
        job = session.get_one(TrainingJob, int(started.headers["location"].rsplit("/", 1)[1]))
        assert (job.priority, job.pool) == (Priority.HIGH, "a100")
