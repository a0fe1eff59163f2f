"""Stream tokens: what a browser's EventSource passes as `?token=` to follow one job's events."""

import json
import time

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from app.core.security import stream_token
from app.keys.service import revoke_key
from tests.auth.conftest import World, assert_problem, snapshot

pytestmark = pytest.mark.integration


def token_for(api: TestClient, world: World, who: str, job_id: int) -> str:
    response = api.post(f"/api/v1/training/jobs/{job_id}/stream-token", headers=world.headers(who))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["events_url"] == f"/api/v1/training/jobs/{job_id}/events?token={body['token']}"
    token: str = body["token"]
    return token


def first_event(api: TestClient, url: str) -> dict[str, object]:
    with api.stream("GET", url) as stream:
        assert stream.status_code == 200
        line = next(line for line in stream.iter_lines() if line.startswith("data:"))
    event: dict[str, object] = json.loads(line.removeprefix("data:"))
    return event


def test_a_stream_token_opens_its_jobs_events_without_a_header(api: TestClient, world: World) -> None:
    for who in ("member_alpha", "viewer_alpha"):  # viewers may watch: asking for a token writes nothing
        token = token_for(api, world, who, world.alpha_job)
        event = first_event(api, f"/api/v1/training/jobs/{world.alpha_job}/events?token={token}")
        assert event["job_id"] == world.alpha_job and event["seq"] == 1


def test_tokens_for_another_job_expired_forged_or_of_a_revoked_key_are_401(
    api: TestClient, db: Database, world: World
) -> None:
    before = snapshot(db)
    token = token_for(api, world, "admin", world.alpha_job)
    events = f"/api/v1/training/jobs/{world.beta_job}/events"
    assert_problem(api.get(events, params={"token": token}), 401)  # bound to alpha's job
    key_id = int(token.split(".")[2])
    expired = stream_token(world.alpha_job, key_id, int(time.time()) - 1)
    alpha_events = f"/api/v1/training/jobs/{world.alpha_job}/events"
    assert_problem(api.get(alpha_events, params={"token": expired}), 401)
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    assert_problem(api.get(alpha_events, params={"token": forged}), 401)
    later = token.split(".")
    later[3] = str(int(later[3]) + 3600)  # extending the expiry breaks the signature
    assert_problem(api.get(alpha_events, params={"token": ".".join(later)}), 401)
    for junk in ("", "ys1", "ys1.1.1.1", "x" * 300):
        assert_problem(api.get(alpha_events, params={"token": junk}), 401)
    # A stream token works for the events only, never as an API key.
    assert_problem(api.get(f"/api/v1/training/jobs/{world.alpha_job}", params={"token": token}), 401)
    assert_problem(
        api.get(f"/api/v1/training/jobs/{world.alpha_job}", headers={"Authorization": f"Bearer {token}"}), 401
    )
    member_token = token_for(api, world, "member_alpha", world.alpha_job)
    with db.session() as session:
        revoke_key(session, world.keys["member_alpha"])
    assert_problem(api.get(alpha_events, params={"token": member_token}), 401)
    assert snapshot(db)[:6] == before[:6]


def test_no_token_for_a_job_the_key_cannot_see(api: TestClient, world: World) -> None:
    response = api.post(
        f"/api/v1/training/jobs/{world.alpha_job}/stream-token", headers=world.headers("member_beta")
    )
    assert_problem(response, 404)
    assert_problem(api.post(f"/api/v1/training/jobs/{world.alpha_job}/stream-token"), 401)


def test_a_token_lives_as_long_as_configured(
    api: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import clear_caches

    monkeypatch.setenv("TRAINYARD_STREAM_TOKEN_TTL", "1")
    clear_caches()
    token = token_for(api, world, "admin", world.alpha_job)
    time.sleep(2.1)
    assert_problem(api.get(f"/api/v1/training/jobs/{world.alpha_job}/events", params={"token": token}), 401)
