"""What a key may not see looks exactly like what does not exist (app/core/visibility.py).

Every route of the app that takes an id, a storage key, a path or a project name is walked with a member
key of project beta: once with project alpha's value, once with a value that names nothing. The two
answers must be the same (status, content type, body; only the request id, the request path and the value
itself may differ), and neither may change anything (database rows, the storage tree, Redis). The list of
such parameters comes from the app's route table, so a new route that takes one fails this test until
it is walked here (or exempted, with the reason).
"""

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel

from app.core.db import Database
from app.core.settings import get_settings
from tests.auth.conftest import World, api_routes, assert_problem, redis_state, snapshot
from tests.auth.test_routes import fill
from tests.dataset_api.conftest import detection_dataset, files_under, upload_dataset, zip_folder
from tests.factories import make_yolo_dataset, register_untrained_model

pytestmark = pytest.mark.integration

NOPE = 987654  # an id no row has
NO_PROJECT = "projects/no-such-project"  # storage of a project that does not exist
REFERENCE = re.compile(r"(^|_)(id|ids|key|keys|path)$|^(project|other)$")


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 20, 20)).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Scene:
    """The attack tests' world, plus what inference and versions need: a ready model in each project,
    an image and a YOLO folder in alpha's storage, an inference job of alpha, a version of beta."""

    world: World
    alpha_model: int
    alpha_weights: str
    alpha_image: str
    alpha_folder: str
    alpha_inference: str
    beta_model: int
    beta_dataset: int
    beta_version: int
    dataset: Path  # a YOLO dataset in an import root: what beta's job bodies train on

    def mine(self) -> dict[str, Any]:
        """beta's value of each path parameter."""
        return {
            "job_id": self.world.beta_job,
            "project_id": self.world.beta,
            "dataset_id": self.beta_dataset,
            "version_id": self.beta_version,
            "model_id": self.beta_model,
            "export_id": NOPE,
        }


@pytest.fixture
def scene(
    api: TestClient,
    db: Database,
    world: World,
    tmp_path: Path,
    yolo_dataset: Path,
    admin_headers: dict[str, str],
) -> Scene:
    storage = get_settings().resolved_storage_root
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\x80\x02 a checkpoint" * 200_000)  # ~3 MB: above a small image limit
    with db.session() as session:
        alpha_model = register_untrained_model(session, storage, weights, "alpha", "a-model", 64)
        beta_model = register_untrained_model(session, storage, weights, "beta", "b-model", 64)
    alpha_image = "projects/alpha/datasets/synthetic/source/images/train/img1.png"
    alpha_folder = "projects/alpha/training_data/shapes"
    make_yolo_dataset(storage / alpha_folder, train=1, val=1, size=32)
    assert (storage / alpha_image).is_file()
    admin = TestClient(api.app, headers=admin_headers)
    uploaded = upload_dataset(admin, world.beta, zip_folder(detection_dataset(tmp_path / "beta")))
    assert uploaded.status_code == 201, uploaded.text
    version = admin.post(f"/api/v1/projects/{world.beta}/versions", json={})
    assert version.status_code == 201, version.text
    job = api.post(
        "/api/v1/inference/jobs",
        data={"model_id": str(alpha_model), "keys": alpha_image},
        files=[("files", ("upload.jpg", jpeg(), "image/jpeg"))],
        headers=world.headers("member_alpha"),
    )
    assert job.status_code == 202, job.text
    return Scene(
        world,
        alpha_model,
        "projects/alpha/model/registry/a-model/best.pt",
        alpha_image,
        alpha_folder,
        job.json()["id"],
        beta_model,
        uploaded.json()["id"],
        version.json()["id"],
        yolo_dataset,
    )


# The route table ---------------------------------------------------------------------------------
def _fields(dependant: Dependant) -> Iterator[tuple[str, str]]:
    """(where, name) of every path, query and body parameter, through sub-dependencies; a body that is
    one model stands for its fields."""
    for where in ("path", "query"):
        for param in getattr(dependant, f"{where}_params"):
            yield where, param.alias
    for param in dependant.body_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            yield from (("body", name) for name in model.model_fields)
        else:
            yield "body", param.alias
    for sub in dependant.dependencies:
        yield from _fields(sub)


def reference_params(app: FastAPI) -> set[tuple[str, str, str]]:
    """(method, path, "where:name") of every parameter that names an id, a key, a path or a project."""
    return {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path), f"{where}:{name}")  # {model_id:int}: {model_id}
        for method, path, route in api_routes(app)
        for where, name in _fields(route.dependant)
        if REFERENCE.search(name)
    }


# How each one is walked --------------------------------------------------------------------------
Value = Callable[[Scene], Any]


@dataclass(frozen=True)
class Probe:
    theirs: Value  # alpha's value
    nothing: Value  # a value that names nothing
    drop: tuple[str, ...] = ()  # fields of the base request that would hide the one probed
    extra: dict[str, Any] = field(default_factory=dict)


def _constant(value: Any) -> Value:
    return lambda _s: value


JOB = Probe(lambda s: s.world.alpha_job, _constant(NOPE))
PROJECT = Probe(lambda s: s.world.alpha, _constant(NOPE))
PROJECT_NAME = Probe(_constant("alpha"), _constant("no-such-project"))
DATASET = Probe(lambda s: s.world.dataset, _constant(NOPE))
VERSION = Probe(lambda s: s.world.version, _constant(NOPE))
MODEL = Probe(lambda s: s.alpha_model, _constant(NOPE))
INFERENCE = Probe(lambda s: s.alpha_inference, _constant("0" * 32))
RELEASE = Probe(lambda s: s.world.release, _constant(f"{NO_PROJECT}/releases/r1.zip"))
DATASET_FOLDER = Probe(lambda s: s.alpha_folder, _constant(f"{NO_PROJECT}/training_data/shapes"))
IMAGE_KEY = Probe(lambda s: s.alpha_image, _constant(f"{NO_PROJECT}/datasets/synthetic/source/img1.png"))
JOB_REFERENCES = {
    "body:project": PROJECT_NAME,
    "body:dataset_path": DATASET_FOLDER,
    "body:dataset_id": Probe(lambda s: s.world.dataset, _constant(NOPE), drop=("dataset_path",)),
    "body:dataset_version_id": Probe(lambda s: s.world.version, _constant(NOPE), drop=("dataset_path",)),
    "body:checkpoint_model_id": MODEL,
    "body:checkpoint_job_id": JOB,
}
INFERENCE_REFERENCES = {
    "body:keys": IMAGE_KEY,
    "body:model_id": MODEL,
    "body:project_id": Probe(lambda s: s.world.alpha, _constant(NOPE), drop=("model_id",)),
}
JOB_ROUTES = [
    "/api/v1/training/jobs/{job_id}",
    "/api/v1/training/jobs/{job_id}/events",
    "/api/v1/training/jobs/{job_id}/logs",
    "/api/v1/training/jobs/{job_id}/metrics",
    "/api/v1/training/jobs/{job_id}/checkpoints",
]
JOB_ACTIONS = ["stop", "cancel", "resume", "stream-token"]
VERSION_ROUTES = [("GET", ""), ("DELETE", ""), ("GET", "/compare")]

PROBES: dict[tuple[str, str, str], Probe] = {
    **{("GET", path, "path:job_id"): JOB for path in JOB_ROUTES},
    **{("POST", f"/api/v1/training/jobs/{{job_id}}/{action}", "path:job_id"): JOB for action in JOB_ACTIONS},
    **{("POST", "/api/v1/training/jobs", name): probe for name, probe in JOB_REFERENCES.items()},
    **{("POST", "/api/v1/training/preflight", name): probe for name, probe in JOB_REFERENCES.items()},
    ("GET", "/api/v1/training/jobs", "query:project"): PROJECT_NAME,
    **{(m, "/api/v1/projects/{project_id}", "path:project_id"): PROJECT for m in ("GET", "PATCH", "DELETE")},
    ("POST", "/api/v1/datasets", "body:project_id"): PROJECT,
    ("GET", "/api/v1/datasets", "query:project_id"): PROJECT,
    ("POST", "/api/v1/datasets/from-folder", "body:project_id"): PROJECT,
    ("POST", "/api/v1/datasets/from-folder", "body:source_path"): Probe(
        _constant("projects/alpha/datasets/synthetic/source"), _constant(f"{NO_PROJECT}/datasets/x/source")
    ),
    ("GET", "/api/v1/datasets/{dataset_id}", "path:dataset_id"): DATASET,
    ("POST", "/api/v1/datasets/{dataset_id}/annotations", "path:dataset_id"): DATASET,
    ("GET", "/api/v1/datasets/{dataset_id}/annotations/stats", "path:dataset_id"): DATASET,
    **{
        ("POST", f"/api/v1/projects/{{project_id}}/versions{tail}", param): probe
        for tail in ("", "/preview")
        for param, probe in (("path:project_id", PROJECT), ("body:dataset_id", DATASET))
    },
    ("GET", "/api/v1/projects/{project_id}/versions", "path:project_id"): PROJECT,
    **{
        (m, f"/api/v1/projects/{{project_id}}/versions/{{version_id}}{tail}", f"path:{name}"): probe
        for m, tail in VERSION_ROUTES
        for name, probe in (("project_id", PROJECT), ("version_id", VERSION))
    },
    ("GET", "/api/v1/projects/{project_id}/versions/{version_id}/compare", "query:other"): VERSION,
    ("GET", "/api/v1/training/check-extracted", "query:zip_path"): RELEASE,
    ("POST", "/api/v1/training/extract-release", "body:zip_path"): RELEASE,
    ("DELETE", "/api/v1/training/releases", "query:zip_path"): RELEASE,
    ("GET", "/api/v1/models", "query:project"): PROJECT_NAME,
    ("GET", "/api/v1/models", "query:project_id"): PROJECT,
    ("GET", "/api/v1/models/{model_id}", "path:model_id"): MODEL,
    ("GET", "/api/v1/models/{model_id}/weights", "path:model_id"): MODEL,
    ("POST", "/api/v1/models/{model_id}/export-best", "path:model_id"): MODEL,
    ("POST", "/api/v1/models/{model_id}/validate", "path:model_id"): MODEL,
    **{(m, "/api/v1/models/{model_id}/exports", "path:model_id"): MODEL for m in ("GET", "POST")},
    **{
        ("GET", f"/api/v1/models/{{model_id}}/exports/{{export_id}}{tail}", "path:model_id"): MODEL
        for tail in ("", "/file")
    },
    **{
        (m, f"/api/v1/projects/{{project_id}}/deployments{tail}", "path:project_id"): PROJECT
        for m, tail in (("GET", ""), ("POST", ""), ("DELETE", ""), ("POST", "/rollback"))
    },
    ("POST", "/api/v1/projects/{project_id}/deployments", "body:model_id"): MODEL,
    **{("POST", "/api/v1/inference", name): probe for name, probe in INFERENCE_REFERENCES.items()},
    **{("POST", "/api/v1/inference/jobs", name): probe for name, probe in INFERENCE_REFERENCES.items()},
    **{
        ("GET", f"/api/v1/inference/jobs/{{inference_id}}{tail}", "path:inference_id"): INFERENCE
        for tail in ("", "/results", "/events")
    },
}

CALLBACKS = "/api/v1/training/jobs/{job_id}/callback/"
# Parameters that name nothing of a project, with the reason.
EXEMPT: dict[tuple[str, str, str], str] = {
    **{
        (
            m,
            p,
            n,
        ): "workers serve every project: reading the fleet is open, changing it needs an all-projects key"
        for m, p, n in [
            ("GET", "/api/v1/workers/{worker_id}", "path:worker_id"),
            ("POST", "/api/v1/workers/{worker_id}/drain", "path:worker_id"),
            ("GET", "/api/v1/workers/{worker_id}/models", "path:worker_id"),
            ("POST", "/api/v1/workers/{worker_id}/models", "path:worker_id"),
            ("POST", "/api/v1/workers/{worker_id}/models", "body:model_id"),
        ]
    },
    **{
        ("POST", CALLBACKS + name, "path:job_id"): "a trainer callback takes its job's token, not a key"
        for name in ("started", "progress", "metrics", "log", "completion", "checkpoint")
    },
    ("POST", CALLBACKS + "checkpoint", "body:path"): "a trainer callback takes its job's token, not a key",
    **{
        ("POST", f"/api/v1/projects/{{project_id}}/versions{tail}", "body:idempotency_key"): (
            "looked up only among the versions of the project in the path"
        )
        for tail in ("", "/preview")
    },
    **{
        ("GET", f"/api/v1/models/{{model_id}}/exports/{{export_id}}{tail}", "path:export_id"): (
            "looked up only among the exports of the model in the path (walked above)"
        )
        for tail in ("", "/file")
    },
    **{
        (m, "/api/v1/weights/{weights_id}", "path:weights_id"): (
            "base weights belong to no project: every key reads them, only admins import or delete them"
        )
        for m in ("GET", "DELETE")
    },
}


def base_request(scene: Scene, method: str, path: str) -> dict[str, Any]:
    """A request beta's member may send (the probed parameter is then set to the value tried)."""
    job = {"name": "probe", "project": "beta", "dataset_path": str(scene.dataset), "config": {"epochs": 1}}
    inference = {"model_id": str(scene.beta_model), "timeout": "1"}
    bases: dict[str, dict[str, Any]] = {
        "/api/v1/training/jobs": {"json": job},
        "/api/v1/training/preflight": {"json": job},
        "/api/v1/projects/{project_id}": {"json": {"description": "ours now"}},
        "/api/v1/datasets": {
            "data": {"project_id": str(scene.world.beta), "name": "probe"},
            "files": {"file": ("d.zip", b"PK\x05\x06" + b"\x00" * 18, "application/zip")},
        },
        "/api/v1/datasets/from-folder": {
            "json": {"project_id": scene.world.beta, "name": "probe", "source_path": "projects/beta/none"}
        },
        "/api/v1/datasets/{dataset_id}/annotations": {"data": {"batch": "{}"}},
        "/api/v1/projects/{project_id}/deployments": {"json": {"model_id": scene.beta_model}},
        "/api/v1/models/{model_id}/exports": {"json": {"format": "onnx"}},
        "/api/v1/projects/{project_id}/versions/{version_id}/compare": {
            "params": {"other": scene.beta_version}
        },
        "/api/v1/inference": {"data": inference, "files": [("files", ("a.jpg", jpeg(), "image/jpeg"))]},
        "/api/v1/inference/jobs": {"data": inference, "files": [("files", ("a.jpg", jpeg(), "image/jpeg"))]},
    }
    request = {key: dict(value) for key, value in bases.get(path, {}).items()}
    if method in {"POST", "PATCH"} and not request:
        request["json"] = {}
    return {"method": method, "url": path, **request}


def with_value(scene: Scene, method: str, path: str, param: str, probe: Probe, value: Any) -> dict[str, Any]:
    request = base_request(scene, method, path)
    where, name = param.split(":")
    body = "json" if "json" in request else "data"
    for dropped in probe.drop:
        request.get(body, {}).pop(dropped, None)
    if where == "path":
        request["url"] = fill(path, {**scene.mine(), name: value})
    elif where == "query":
        request["params"] = {**request.get("params", {}), name: value}
    else:
        request.setdefault(body, {})[name] = value if body == "json" else str(value)
    if where != "path":
        request["url"] = fill(path, scene.mine())
    return request


def answer(response: Any, value: Any) -> tuple[Any, ...]:
    """What the caller learns: status, content type and body, without the request's own id and path; in
    what tells why a request is refused (`detail`, `errors`, a preflight's `problems`), the value tried
    is replaced by a placeholder."""
    pattern = re.compile(rf"(?<!\w){re.escape(str(value))}(?!\w)")

    def placeholder(item: Any) -> Any:
        if isinstance(item, str):
            return pattern.sub("<value>", item)
        if isinstance(item, dict):
            return {k: placeholder(v) for k, v in item.items()}
        return [placeholder(v) for v in item] if isinstance(item, list) else item

    kind = response.headers.get("content-type", "")
    if "json" not in kind:
        return response.status_code, kind, response.text
    body = response.json()
    if isinstance(body, dict):
        body = {
            k: placeholder(v) if k in {"detail", "errors", "problems"} else v
            for k, v in body.items()
            if k not in {"request_id", "instance"}
        }
    return response.status_code, kind, body


# The tests ---------------------------------------------------------------------------------------
def test_every_route_that_takes_a_reference_is_walked(app: FastAPI) -> None:
    found = reference_params(app)
    unwalked = found - PROBES.keys() - EXEMPT.keys()
    assert not unwalked, f"walk these with another project's value in PROBES (or EXEMPT them): {unwalked}"
    stale = (PROBES.keys() | EXEMPT.keys()) - found
    assert not stale, f"no route takes these any more: {stale}"
    assert len(PROBES) >= 60


def test_another_projects_values_answer_like_values_that_name_nothing(
    api: TestClient, app: FastAPI, db: Database, scene: Scene, redis_client: redis.Redis
) -> None:
    storage = get_settings().resolved_storage_root
    headers = scene.world.headers("member_beta")
    before = (snapshot(db), files_under(storage), redis_state(redis_client))
    for (method, path, param), probe in sorted(PROBES.items()):
        answers = []
        for value in (probe.theirs(scene), probe.nothing(scene)):
            response = api.request(**with_value(scene, method, path, param, probe, value), headers=headers)
            assert response.status_code < 500, (method, path, param, response.text)
            answers.append(answer(response, value))
            after = (snapshot(db), files_under(storage), redis_state(redis_client))
            assert after == before, f"{method} {path} with {param}={value!r} changed something"
        assert answers[0] == answers[1], (method, path, param, answers)


def test_the_walk_uses_values_that_exist(api: TestClient, scene: Scene) -> None:
    """The same values reach alpha's things with alpha's key (else the walk would prove nothing)."""
    alpha = scene.world.headers("member_alpha")
    storage = get_settings().resolved_storage_root
    for key in (scene.alpha_image, scene.alpha_weights, scene.alpha_folder + "/data.yaml"):
        assert (storage / key).is_file()
    preflight = api.post(
        "/api/v1/training/preflight",
        json={"name": "mine", "project": "alpha", "dataset_path": scene.alpha_folder},
        headers=alpha,
    )
    assert preflight.status_code == 200 and preflight.json()["ok"], preflight.text
    assert api.get(f"/api/v1/inference/jobs/{scene.alpha_inference}", headers=alpha).status_code == 200
    assert api.get(f"/api/v1/models/{scene.alpha_model}", headers=alpha).status_code == 200
    released = api.get(
        "/api/v1/training/check-extracted", params={"zip_path": scene.world.release}, headers=alpha
    )
    assert released.status_code == 200


def test_inference_on_another_projects_keys_reveals_nothing(
    api: TestClient, db: Database, scene: Scene, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image, a 3 MB .pt (above the image limit here) and a missing key of alpha: one answer for all
    three, the same from both inference routes; alpha's own key may use them."""
    from tests.conftest import clear_caches

    monkeypatch.setenv("TRAINYARD_INFERENCE_MAX_IMAGE_MB", "1")
    clear_caches()
    storage = get_settings().resolved_storage_root
    before = (snapshot(db), files_under(storage), redis_state(redis_client))
    for route in ("/api/v1/inference", "/api/v1/inference/jobs"):
        answers = set()
        for key in (scene.alpha_image, scene.alpha_weights, "projects/alpha/no/such.png"):
            form = {"model_id": str(scene.beta_model), "keys": key, "timeout": "1"}
            response = api.post(route, data=form, headers=scene.world.headers("member_beta"))
            body = assert_problem(response, 404)
            assert body["errors"] == [{"field": "keys", "reason": f"no image at storage key {key!r}"}]
            answers.add(str(answer(response, key)))
        assert len(answers) == 1, answers
    assert (snapshot(db), files_under(storage), redis_state(redis_client)) == before
    mine = {"model_id": str(scene.alpha_model), "keys": scene.alpha_image}
    accepted = api.post("/api/v1/inference/jobs", data=mine, headers=scene.world.headers("member_alpha"))
    assert accepted.status_code == 202, accepted.text


def test_preflight_refuses_another_projects_folder_like_a_submission(
    api: TestClient, db: Database, scene: Scene
) -> None:
    """Defect 2: no class names, no server path; the same 404 as submitting, and as a folder of a project
    that does not exist, given absolute or relative, existing or not, with or without a data.yaml."""
    storage = get_settings().resolved_storage_root
    (storage / "projects/alpha/training_data/no-yaml").mkdir(parents=True)
    beta = scene.world.headers("member_beta")
    before = snapshot(db)
    for folder in (
        scene.alpha_folder,
        str(storage / scene.alpha_folder),
        "projects/alpha/training_data/no-yaml",
        "projects/alpha/training_data/missing",
        f"{NO_PROJECT}/training_data/shapes",
    ):
        body = {"name": "probe", "project": "beta", "dataset_path": folder}
        answers = set()
        for route in ("/api/v1/training/preflight", "/api/v1/training/jobs"):
            response = api.post(route, json=body, headers=beta)
            problem = assert_problem(response, 404)
            assert problem["errors"] == [
                {"field": "dataset_path", "reason": f"folder {folder!r} does not exist"}
            ]
            assert "red" not in response.text and str(storage) not in response.text.replace(folder, "")
            answers.add(str(answer(response, folder)[::2]))  # status and body: the same words
        assert len(answers) == 1
    assert snapshot(db) == before


def test_another_projects_dataset_version_is_a_missing_version(
    api: TestClient, db: Database, scene: Scene
) -> None:
    """Defect 3: not "version N belongs to project 'alpha'"."""
    before = snapshot(db)
    beta = scene.world.headers("member_beta")
    answers = []
    for version in (scene.world.version, NOPE):
        body = {"name": "probe", "project": "beta", "dataset_version_id": version}
        response = api.post("/api/v1/training/jobs", json=body, headers=beta)
        assert assert_problem(response, 404)["detail"] == f"dataset version {version} does not exist"
        assert "alpha" not in response.text
        answers.append(answer(response, version))
    assert answers[0] == answers[1]
    assert snapshot(db) == before
    # A key that sees both projects is told what is wrong.
    admin = api.post(
        "/api/v1/training/jobs",
        json={"name": "probe", "project": "beta", "dataset_version_id": scene.world.version},
        headers=scene.world.headers("admin"),
    )
    assert "belongs to project 'alpha'" in assert_problem(admin, 422)["detail"]


def test_storage_outside_the_projects_is_for_all_project_keys(
    api: TestClient, db: Database, scene: Scene, redis_client: redis.Redis
) -> None:
    """Inference job inputs (and folders an operator drops in storage) belong to no project: a scoped key
    cannot name them; an admin key can."""
    storage = get_settings().resolved_storage_root
    inputs = sorted(
        p.relative_to(storage).as_posix() for p in (storage / "inference").rglob("*") if p.is_file()
    )
    make_yolo_dataset(storage / "incoming" / "shapes", train=1, val=1, size=32)
    before = (snapshot(db), files_under(storage), redis_state(redis_client))
    beta = scene.world.headers("member_beta")
    form = {"model_id": str(scene.beta_model), "keys": inputs[0], "timeout": "1"}
    assert_problem(api.post("/api/v1/inference", data=form, headers=beta), 404)
    job = {"name": "probe", "project": "beta", "dataset_path": "incoming/shapes"}
    assert_problem(api.post("/api/v1/training/jobs", json=job, headers=beta), 404)
    folder = {"project_id": scene.world.beta, "name": "probe", "source_path": "incoming/shapes"}
    assert_problem(api.post("/api/v1/datasets/from-folder", json=folder, headers=beta), 404)
    assert (snapshot(db), files_under(storage), redis_state(redis_client)) == before
    admin = scene.world.headers("admin")
    assert api.post("/api/v1/training/jobs", json=job, headers=admin).status_code == 201


def test_a_link_into_another_project_is_judged_by_where_it_leads(api: TestClient, scene: Scene) -> None:
    storage = get_settings().resolved_storage_root
    (storage / "projects/beta/training_data").mkdir(parents=True, exist_ok=True)
    (storage / "projects/beta/training_data/borrowed").symlink_to(storage / scene.alpha_folder)
    (storage / "projects/beta/peek.png").symlink_to(storage / scene.alpha_image)
    beta = scene.world.headers("member_beta")
    body = {"name": "probe", "project": "beta", "dataset_path": "projects/beta/training_data/borrowed"}
    assert_problem(api.post("/api/v1/training/preflight", json=body, headers=beta), 404)
    form = {"model_id": str(scene.beta_model), "keys": "projects/beta/peek.png", "timeout": "1"}
    assert_problem(api.post("/api/v1/inference", data=form, headers=beta), 404)
