"""The dashboard's routes without a browser: sign-in and its session, CSRF, roles and project scoping,
the pages' content, the live fragments, the offline API docs and CORS."""

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import Database
from app.core.events import EventType, lock_job
from app.core.jobs import JobStatus
from app.core.settings import get_settings
from app.keys.service import revoke_key
from app.models import JobEvent, TrainingJob
from app.training import state
from app.web.jobs import LOG_TAIL
from tests.conftest import clear_caches
from tests.factories import make_yolo_dataset
from tests.web.conftest import Jobs, add_event, csrf_of, set_status, sign_in

pytestmark = pytest.mark.integration


def status_of(db: Database, job_id: int) -> str:
    with db.session() as session:
        return session.scalars(select(TrainingJob.status).where(TrainingJob.id == job_id)).one()


def test_pages_send_a_stranger_to_sign_in(app: FastAPI, jobs: Jobs) -> None:
    client = TestClient(app, follow_redirects=False)
    response = client.get(f"/jobs/{jobs.alpha}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/jobs/{jobs.alpha}"
    assert client.get("/login").status_code == 200
    # htmx requests are told where to go instead of getting a login page swapped into a fragment
    assert client.get("/jobs", headers={"HX-Request": "true"}).headers["HX-Redirect"] == "/login"


def test_sign_in_with_a_key_sets_a_session_cookie_bound_to_it(
    app: FastAPI, db: Database, keys: dict[str, str], jobs: Jobs
) -> None:
    client = TestClient(app, follow_redirects=False)
    refused = client.post("/login", data={"api_key": "ty_nope_nope"})
    assert refused.status_code == 401 and "unknown, malformed or revoked key" in refused.text
    response = client.post("/login", data={"api_key": keys["admin"], "next": "https://evil.example/x"})
    assert response.status_code == 303 and response.headers["location"] == "/jobs"  # no open redirect
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # dev
    assert keys["admin"] not in cookie
    page = client.get("/jobs")
    assert page.status_code == 200 and "a-run" in page.text and "b-run" in page.text
    # Revoking the key ends the session at once.
    with db.session() as session:
        revoke_key(session, keys["admin"])
    assert client.get("/jobs").status_code == 303


def test_a_forged_or_tampered_cookie_is_no_session(app: FastAPI, keys: dict[str, str], jobs: Jobs) -> None:
    client = sign_in(app, keys["viewer_alpha"])
    value = client.cookies["trainyard_session"]
    parts = value.split(".")
    parts[1] = str(int(parts[1]) - 1)  # another key id, same signature
    client.cookies.set("trainyard_session", ".".join(parts))
    assert client.get("/jobs").status_code == 303


def test_a_sign_in_form_posted_from_another_site_is_refused(app: FastAPI, keys: dict[str, str]) -> None:
    client = TestClient(app, follow_redirects=False)
    response = client.post(
        "/login", data={"api_key": keys["admin"]}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 401 and "set-cookie" not in response.headers


def test_the_session_cookie_is_secure_outside_dev(
    app: FastAPI, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_ENV", "production")
    monkeypatch.setenv("TRAINYARD_SECRET_KEY", "s" * 40)
    clear_caches()
    response = TestClient(app, follow_redirects=False).post("/login", data={"api_key": keys["admin"]})
    assert "Secure" in response.headers["set-cookie"]


def test_sign_out_ends_the_session(admin: TestClient) -> None:
    response = admin.post("/logout", data={"csrf_token": csrf_of(admin)})
    assert response.status_code == 303 and 'trainyard_session=""' in response.headers["set-cookie"]


def test_writes_without_the_csrf_token_are_refused(admin: TestClient, db: Database, jobs: Jobs) -> None:
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = admin.post(f"/jobs/{jobs.alpha}/stop", headers=headers)
        assert response.status_code == 403 and "CSRF" in response.text
    assert admin.post("/logout").status_code == 403
    assert status_of(db, jobs.alpha) == JobStatus.RUNNING


def test_stop_acts_at_once_and_says_what_it_did(admin: TestClient, db: Database, jobs: Jobs) -> None:
    token = csrf_of(admin)
    response = admin.post(f"/jobs/{jobs.alpha}/stop", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert response.status_code == 200 and "stop: the job is stopping now" in response.text
    assert status_of(db, jobs.alpha) == JobStatus.STOPPING
    # A refused action shows the API's message inline, not a page.
    refused = admin.post(f"/jobs/{jobs.alpha}/cancel", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert refused.status_code == 409 and "a stopping job cannot be cancelled" in refused.text
    assert "<html" not in refused.text
    # Without htmx, a form post goes back to the job page.
    plain = admin.post(f"/jobs/{jobs.beta}/cancel", data={"csrf_token": token})
    assert plain.status_code == 303 and plain.headers["location"] == f"/jobs/{jobs.beta}"
    assert status_of(db, jobs.beta) == JobStatus.CANCELLED


def test_a_viewer_sees_no_write_controls_and_a_forged_write_is_refused(
    app: FastAPI, db: Database, keys: dict[str, str], jobs: Jobs
) -> None:
    viewer = sign_in(app, keys["viewer_alpha"])
    page = viewer.get(f"/jobs/{jobs.alpha}")
    assert page.status_code == 200
    assert "act-stop" not in page.text and "New job" not in page.text
    response = viewer.post(f"/jobs/{jobs.alpha}/stop", headers={"X-CSRF-Token": csrf_of(viewer)})
    assert response.status_code == 403 and "read-only" in response.text
    assert viewer.post("/jobs/new", data={"csrf_token": csrf_of(viewer)}).status_code == 403
    assert status_of(db, jobs.alpha) == JobStatus.RUNNING


def test_another_projects_job_is_a_404_page(app: FastAPI, keys: dict[str, str], jobs: Jobs) -> None:
    member = sign_in(app, keys["member_alpha"])
    for path in (f"/jobs/{jobs.beta}", f"/jobs/{jobs.beta}/live", f"/compare?ids={jobs.alpha},{jobs.beta}"):
        response = member.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert f"training job {jobs.beta} does not exist" in response.text
    missing = member.get("/jobs/999999")
    assert missing.status_code == 404 and "training job 999999 does not exist" in missing.text
    listed = member.get("/jobs").text
    assert "a-run" in listed and "b-run" not in listed
    forged = member.post(f"/jobs/{jobs.beta}/stop", headers={"X-CSRF-Token": csrf_of(member)})
    assert forged.status_code == 404


def test_the_jobs_list_filters_and_pages(admin: TestClient, db: Database, jobs: Jobs) -> None:
    page = admin.get("/jobs", params={"project": "alpha"}).text
    assert "a-run" in page and "b-run" not in page
    assert "mAP50-95 0.250 @ 1" in page  # best metric so far, from the metrics events
    assert "30 s" in page  # ETA of the running job
    # New events since the last render move both (only those are read: the list keeps a summary).
    add_event(db, jobs.alpha, EventType.METRICS, {"epoch": 2, "train": {}, "val": {"mAP50-95": 0.5}})
    add_event(db, jobs.alpha, EventType.PROGRESS, {"epoch": 2, "epochs": 2, "eta_s": 120.0})
    add_event(db, jobs.alpha, EventType.METRICS, {"epoch": 3, "train": {}, "val": {"mAP50-95": 0.4}})
    page = admin.get("/jobs", params={"project": "alpha"}).text
    assert "mAP50-95 0.500 @ 2" in page and "2 m" in page
    queued = admin.get("/jobs", params={"status": "queued"}).text
    assert "b-run" in queued and "a-run" not in queued
    assert admin.get("/jobs", params={"status": "bogus"}).status_code == 422


def test_the_job_page_shows_everything_so_far(admin: TestClient, db: Database, jobs: Jobs) -> None:
    add_event(db, jobs.alpha, EventType.LOG, {"level": "WARNING", "message": "<script>alert(1)</script>"})
    page = admin.get(f"/jobs/{jobs.alpha}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert f'sse-connect="/jobs/{jobs.alpha}/live?after=' in page
    assert "epoch 1/2" in page and "ETA 30 s" in page
    assert "mAP50-95" in page and "training 2 epochs" in page
    assert "act-stop" in page and "act-resume" not in page
    assert "yolo" in page and "epochs: 2" in page  # CLI preview and resolved YAML


def test_the_job_page_says_where_each_attempt_ran(admin: TestClient, db: Database, jobs: Jobs) -> None:
    with db.session() as session:
        state.claim(session, jobs.beta, 1, "box-a-gpu0", 30, host="box-a")
    with db.session() as session:
        state.requeue(session, lock_job(session, jobs.beta), "lease expired", max_attempts=3)
    with db.session() as session:
        state.claim(session, jobs.beta, 2, "box-b-gpu1", 30, host="box-b")
    page = admin.get(f"/jobs/{jobs.beta}").text
    ran_on = re.findall(
        r"<strong>attempt (\d)</strong> <span class=\"ran-on\">on ([\w-]+) <small>\(worker ([\w-]+)\)", page
    )
    assert ran_on == [("1", "box-a", "box-a-gpu0"), ("2", "box-b", "box-b-gpu1")]


def test_the_job_page_shows_the_newest_log_lines_oldest_first(
    admin: TestClient, db: Database, jobs: Jobs
) -> None:
    for n in range(1, LOG_TAIL + 6):
        add_event(db, jobs.alpha, EventType.LOG, {"level": "INFO", "message": f"line {n}."})
    page = admin.get(f"/jobs/{jobs.alpha}").text
    shown = [int(n) for n in re.findall(r"</b> line (\d+)\.</li>", page)]
    assert shown == list(range(6, LOG_TAIL + 6))  # the tail, in the order they were written
    assert "training 2 epochs" not in page  # the fixture's line is older than the tail


def test_the_live_stream_sends_fragments_after_the_page_and_resumes(
    admin: TestClient, db: Database, jobs: Jobs
) -> None:
    with db.session() as session:
        after = session.get(TrainingJob, jobs.alpha).last_event_seq  # type: ignore[union-attr]
    add_event(
        db,
        jobs.alpha,
        EventType.PROGRESS,
        {"epoch": 2, "epochs": 2, "batch": 3, "batches": 4, "eta_s": 5.0, "phase": "train"},
    )
    add_event(
        db, jobs.alpha, EventType.METRICS, {"epoch": 2, "train": {"box_loss": 1.2}, "val": {"mAP50-95": None}}
    )
    set_status(db, jobs.alpha, JobStatus.COMPLETED)
    body = admin.get(f"/jobs/{jobs.alpha}/live", params={"after": after}).text
    events = re.findall(r"^event: (\w+)", body, re.M)
    assert events == ["progress", "metrics", "status", "end"]
    assert "batch 3/4" in body and "ETA 5 s" in body
    metrics_message = body.split("event: metrics")[1].split("event:")[0]
    assert "&#34;epoch&#34;: 2" in metrics_message and "mAP50-95" not in metrics_message  # null: left out
    # Reconnecting with Last-Event-ID sends only what follows.
    resumed = admin.get(f"/jobs/{jobs.alpha}/live", headers={"Last-Event-ID": str(after + 2)}).text
    assert re.findall(r"^event: (\w+)", resumed, re.M) == ["status", "end"]


def test_the_new_job_form_checks_as_you_type_and_starts(
    admin: TestClient, db: Database, jobs: Jobs, yolo_dataset: object
) -> None:
    page = admin.get("/jobs/new", params={"mode": "developer"})
    assert page.status_code == 200 and 'name="cfg.lr0"' in page.text
    assert 'name="cfg.lr0"' not in admin.get("/jobs/new").text  # user mode: the safe subset
    token = csrf_of(admin)
    form = {
        "csrf_token": token,
        "project": "alpha",
        "name": "from-form",
        "task_type": "detection",
        "model_name": "yolo11n",
        "dataset_path": str(yolo_dataset),
        "cfg.epochs": "0",
    }
    checked = admin.post("/jobs/new/preflight", data=form, headers={"HX-Request": "true"})
    assert checked.status_code == 200
    assert re.search(r'id="err-cfg-epochs" hx-swap-oob="true">[^<]+', checked.text)
    form["cfg.epochs"] = "1"
    checked = admin.post("/jobs/new/preflight", data=form, headers={"HX-Request": "true"})
    assert "Preflight passed" in checked.text and "yolo detect train" in checked.text
    assert 'id="err-cfg-epochs" hx-swap-oob="true"></span>' in checked.text
    started = admin.post("/jobs/new", data=form)
    assert started.status_code == 303
    job_id = int(started.headers["location"].rsplit("/", 1)[1])
    with db.session() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None and job.name == "from-form" and job.config["epochs"] == 1
        assert session.scalar(select(JobEvent.type).where(JobEvent.job_id == job_id)) == "status"


def test_the_form_checks_as_the_signed_in_key_and_reveals_no_other_projects_folder(
    app: FastAPI, keys: dict[str, str], jobs: Jobs
) -> None:
    storage = get_settings().resolved_storage_root
    make_yolo_dataset(storage / "projects" / "beta" / "datasets" / "shapes", train=1, val=1, size=32)
    member = sign_in(app, keys["member_alpha"])
    form = {
        "csrf_token": csrf_of(member),
        "project": "alpha",
        "name": "probe",
        "model_name": "yolo11n",
        "dataset_path": "projects/beta/datasets/shapes",
    }
    checked = member.post("/jobs/new/preflight", data=form, headers={"HX-Request": "true"}).text
    assert "Preflight passed" not in checked and "red" not in checked  # not even its classes
    assert re.search(r'id="err-dataset_path" hx-swap-oob="true">[^<]*does not exist', checked), checked


def test_compare_highlights_the_differing_config(admin: TestClient, db: Database, jobs: Jobs) -> None:
    with db.session() as session:
        session.get(TrainingJob, jobs.beta).config = {"epochs": 5}  # type: ignore[union-attr]
    page = admin.get("/compare", params={"ids": f"{jobs.alpha},{jobs.beta}"})
    assert page.status_code == 200
    assert re.search(r'<tr class="differs"><th scope="row">epochs</th>', page.text)
    assert admin.get("/compare", params={"ids": str(jobs.alpha)}).status_code == 422


def test_the_api_docs_load_only_vendored_files(app: FastAPI) -> None:
    client = TestClient(app)
    for path, asset in (
        ("/docs", "/static/vendor/swagger-ui/swagger-ui-bundle.js"),
        ("/redoc", "/static/vendor/redoc/redoc.standalone.js"),
    ):
        page = client.get(path).text
        assert asset in page and "cdn" not in page.lower() and "fonts.googleapis" not in page
        served = client.get(asset)
        assert served.status_code == 200 and b"https://cdn." not in served.content
    assert '"validatorUrl": null' in client.get("/docs").text  # no badge from validator.swagger.io
    assert client.get("/static/vendor/htmx/htmx.min.js").status_code == 200


def test_cors_is_off_by_default_and_answers_preflight_for_allowed_origins(
    db: Database, monkeypatch: pytest.MonkeyPatch, jobs: Jobs
) -> None:
    from app.main import create_app

    preflight = {
        "Origin": "https://ui.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,last-event-id",
    }
    closed = TestClient(create_app(db)).options("/api/v1/training/jobs", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    monkeypatch.setenv("TRAINYARD_CORS_ORIGINS", "https://ui.example, https://other.example")
    clear_caches()
    client = TestClient(create_app(db))
    answered = client.options("/api/v1/training/jobs", headers=preflight)
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "https://ui.example"
    assert "last-event-id" in answered.headers["access-control-allow-headers"].lower()
    other = client.options("/api/v1/training/jobs", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_an_allowed_origin_follows_a_jobs_events_with_a_stream_token(
    db: Database, monkeypatch: pytest.MonkeyPatch, jobs: Jobs, keys: dict[str, str]
) -> None:
    from app.main import create_app

    monkeypatch.setenv("TRAINYARD_CORS_ORIGINS", "https://ui.example")
    clear_caches()
    client = TestClient(create_app(db))
    set_status(db, jobs.beta, JobStatus.CANCELLED)  # a finished job: its stream replays, then ends
    allowed, evil = {"Origin": "https://ui.example"}, {"Origin": "https://evil.example"}
    minted = client.post(
        f"/api/v1/training/jobs/{jobs.beta}/stream-token",
        headers={**allowed, "Authorization": f"Bearer {keys['admin']}"},
    )
    assert minted.status_code == 200 and minted.headers["access-control-allow-origin"] == "https://ui.example"
    events = f"/api/v1/training/jobs/{jobs.beta}/events"
    preflight = client.options(
        events,
        headers={
            **allowed,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert (
        preflight.status_code == 200
        and preflight.headers["access-control-allow-origin"] == "https://ui.example"
    )
    # What a browser's EventSource on that origin sends: no Authorization header, the token in the URL.
    stream = client.get(events, params={"token": minted.json()["token"]}, headers=allowed)
    assert stream.status_code == 200, stream.text
    assert stream.headers["access-control-allow-origin"] == "https://ui.example"
    assert '"status": "cancelled"' in stream.text
    assert client.get(events, headers=allowed).status_code == 401  # without the token
    # Another origin gets the same answer, but no header that lets its page read it.
    refused = client.get(events, params={"token": minted.json()["token"]}, headers=evil)
    assert "access-control-allow-origin" not in refused.headers
