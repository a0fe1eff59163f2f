"""`trainyard keys create | list | revoke`, the first admin key of `trainyard serve`, and secrets."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli.main import cli
from app.cli.prepare import first_admin_key
from app.core.db import Database
from app.keys.service import KEY_PATTERN
from app.main import create_app
from app.models import ApiKey
from tests.conftest import bearer_headers, clear_caches

pytestmark = pytest.mark.integration
runner = CliRunner()


def keys(*args: str) -> str:
    result = runner.invoke(cli, ["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_create_use_list_and_revoke_a_key(db: Database) -> None:
    output = keys("create", "--role", "member", "--project", "vision", "--name", "ci")
    assert "created project 'vision'" in output
    token = output.strip().splitlines()[-1]
    assert KEY_PATTERN.match(token)
    with db.session() as s:
        row = s.scalars(select(ApiKey)).one()
        assert row.role == "member" and row.name == "ci" and not row.all_projects
        assert token not in {row.key_hash, row.prefix} and len(row.key_hash) == 64
    with TestClient(create_app(db)) as api:
        projects = api.get("/api/v1/projects", headers=bearer_headers(token)).json()
        assert [p["name"] for p in projects["items"]] == ["vision"]
        listing = keys("list")
        assert row.prefix in listing and "vision" in listing and token not in listing
        assert "revoked key" in keys("revoke", row.prefix)
        assert api.get("/api/v1/projects", headers=bearer_headers(token)).status_code == 401
    assert row.prefix not in keys("list") and row.prefix in keys("list", "--revoked")
    again = runner.invoke(cli, ["keys", "revoke", row.prefix])
    assert again.exit_code == 2 and "revoked" in again.output


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "admin", "--project", "p"],  # admins cover every project
        ["--role", "member"],  # a member needs projects or --all-projects
        ["--role", "viewer", "--project", "p", "--all-projects"],
        ["--role", "member", "--project", "../etc"],
        ["--role", "owner"],
    ],
)
def test_bad_key_requests_are_refused_and_create_nothing(db: Database, args: list[str]) -> None:
    result = runner.invoke(cli, ["keys", "create", *args])
    assert result.exit_code != 0
    with db.session() as s:
        assert s.scalars(select(ApiKey)).all() == []


def test_serve_makes_a_first_admin_key_once(db: Database) -> None:
    token = first_admin_key(db.url)  # `serve` prints it in its banner (tests/cli/test_cli_e2e.py)
    assert token is not None
    assert first_admin_key(db.url) is None
    with TestClient(create_app(db)) as api:
        response = api.post("/api/v1/projects", json={"name": "first"}, headers=bearer_headers(token))
        assert response.status_code == 201


def test_outside_dev_the_api_will_not_start_without_a_secret_key(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.security import MissingSecretKey

    monkeypatch.setenv("TRAINYARD_ENV", "production")
    monkeypatch.delenv("TRAINYARD_SECRET_KEY", raising=False)
    clear_caches()
    with pytest.raises(MissingSecretKey):
        create_app(db)
    monkeypatch.setenv("TRAINYARD_SECRET_KEY", "a-real-secret")
    clear_caches()
    create_app(db)
