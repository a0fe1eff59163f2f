"""The dashboard in a real browser (the system Chromium through Playwright) against a real API and
worker: one stack and one browser for the whole module, the tests in the order a user goes."""

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import make_yolo_dataset
from tests.support.stack import api_and_worker, auth, create_key, sqlite_env, tail, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no system Chromium (scripts/ensure-services.sh)"),
]
FAST = {"imgsz": 64, "batch": 8, "workers": 0, "plots": False}
EPOCHS = 12  # enough that a stop sent after the first epoch lands before the last one


@dataclass
class Stack:
    url: str
    admin: str
    env: dict[str, str]
    dataset: Path
    logs: Any
    state: dict[str, Any] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(self.admin), timeout=30)

    def job(self, job_id: int) -> dict[str, Any]:
        with self.api() as client:
            body: dict[str, Any] = client.get(f"/api/v1/training/jobs/{job_id}").json()
            return body


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_redis_url: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("web-e2e")
    env = sqlite_env(root, stack_redis_url, tmp_path_factory.getbasetemp())
    dataset = make_yolo_dataset(root / "shapes", train=16, val=4, size=64)
    with api_and_worker(root, env, f"web-{root.name}") as (url, key):
        yield Stack(url, key, env, dataset, tail(root / "worker.log"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


@dataclass
class Session:
    page: Any
    console_errors: list[str]


@pytest.fixture
def signed_in(browser: Any, stack: Stack) -> Iterator[Any]:
    """A new browser context signed in with `key`; console errors and failed requests are collected."""
    sessions: list[Session] = []

    def open_as(key: str, width: int = 1280, height: int = 800) -> Session:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        session = Session(page, [])
        page.on("console", lambda m: m.type == "error" and session.console_errors.append(m.text))
        page.on("pageerror", lambda e: session.console_errors.append(str(e)))
        page.goto(f"{stack.url}/jobs")
        assert page.url.startswith(f"{stack.url}/login?next=/jobs")
        page.fill("#api_key", key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{stack.url}/jobs")
        sessions.append(session)
        return session

    yield open_as
    for session in sessions:
        session.page.context.close()


def chart_points(page: Any) -> int:
    return int(page.get_attribute("#chart-val", "data-points") or 0)


def submit_job(stack: Stack, name: str, **config: Any) -> int:
    body = {"name": name, "project": "demo", "dataset_path": str(stack.dataset), "config": {**FAST, **config}}
    with stack.api() as client:
        response = client.post("/api/v1/training/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: int = response.json()["id"]
    return job_id


def wait_status(stack: Stack, job_id: int, *statuses: str, timeout: float = 240) -> dict[str, Any]:
    return wait_until(
        lambda: (job := stack.job(job_id))["status"] in statuses and job,
        f"job {job_id} never became {statuses}",
        stack.logs,
        timeout,
    )


def test_start_a_job_from_the_form_watch_it_live_stop_and_resume(stack: Stack, signed_in: Any) -> None:
    session = signed_in(stack.admin)
    page = session.page
    page.click("text=New job")
    page.goto(f"{stack.url}/jobs/new?mode=developer")
    page.fill("#f-project", "demo")
    page.fill("#f-name", "from-the-browser")
    page.fill("#f-dataset", str(stack.dataset))
    page.fill("#p-epochs", "abc")
    # The resolver's verdict appears beside the field as you type.
    page.wait_for_function("document.getElementById('err-cfg-epochs').textContent.length > 0")
    page.fill("#p-epochs", str(EPOCHS))
    for name, value in FAST.items():
        page.fill(f"#p-{name}", str(value).lower())
    page.click("#preflight-button")
    page.wait_for_selector("#preflight >> text=Preflight passed")
    assert page.text_content("#err-cfg-epochs") == ""
    assert "detect train" in (page.text_content("#preflight-cli") or "")
    page.click("#start-button")
    page.wait_for_url(f"{stack.url}/jobs/*")
    job_id = int(page.url.rsplit("/", 1)[1])
    stack.state["first"] = job_id
    page.evaluate("window.notReloaded = true")

    # Epoch by epoch, without a reload: the chart gains points, the bar moves, the log follows.
    page.wait_for_function(
        "Number(document.getElementById('chart-val').dataset.points) >= 1", timeout=180_000
    )
    first_bar = int(page.get_attribute("#progress progress", "value") or 0)
    assert first_bar > 0
    # A job submitted meanwhile waits for the only worker: its page says why, until it starts.
    waiting = signed_in(stack.admin)
    waiting_id = submit_job(stack, "waits-its-turn", epochs=1)
    waiting.page.goto(f"{stack.url}/jobs/{waiting_id}")
    assert "#1 in line" in (waiting.page.text_content("#waiting") or "")
    page.click("button.act-stop")
    page.wait_for_selector("#action-outcome >> text=stop: the job is stopping now")
    page.wait_for_selector("#job-status:text('stopped')", timeout=180_000)
    waiting.page.wait_for_selector("#job-status:text-matches('running|completed')", timeout=180_000)
    assert waiting.page.locator("#waiting").count() == 0
    assert waiting.console_errors == []
    stopped_at = chart_points(page)
    assert 1 <= stopped_at < EPOCHS
    assert page.locator("button.act-stop").count() == 0

    page.click("button.act-resume")
    page.wait_for_selector("#job-status:text-matches('queued|running')")
    page.wait_for_selector("#job-status:text('completed')", timeout=240_000)
    page.wait_for_function(f"Number(document.getElementById('chart-val').dataset.points) === {EPOCHS}")
    assert int(page.get_attribute("#progress progress", "value") or 0) > first_bar
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#log-lines li").count() > 3
    assert "attempt 2" in (page.text_content("#job-head") or "")
    page.locator("#log-lines").scroll_into_view_if_needed()
    shots = Path(os.environ.get("TRAINYARD_SCREENSHOT_DIR", str(stack.dataset.parent)))
    page.goto(f"{stack.url}/jobs/{job_id}")  # the finished page as a user lands on it
    page.wait_for_function(f"Number(document.getElementById('chart-val').dataset.points) === {EPOCHS}")
    page.screenshot(path=str(shots / "dashboard-job.png"), full_page=False)
    assert session.console_errors == []


def test_a_lost_connection_catches_up_without_duplicates(stack: Stack, signed_in: Any) -> None:
    session = signed_in(stack.admin)
    page = session.page
    job_id = submit_job(stack, "reconnects", epochs=3)
    page.goto(f"{stack.url}/jobs/{job_id}")
    first_point = "Number(document.getElementById('chart-val').dataset.points) >= 1"
    page.wait_for_function(first_point, timeout=180_000)
    # The connection drops (as a network error closes it for good): htmx's SSE extension opens a new one
    # from the page's `sse-connect`, which by now asks only for what follows the last event shown.
    page.evaluate(
        """() => {
            const source = document.getElementById('live')['htmx-internal-data'].sseEventSource;
            source.close();
            source.onerror(new Event('error'));
        }"""
    )
    assert "after=" in (page.get_attribute("#live", "sse-connect") or "")
    page.wait_for_selector("#job-status:text('completed')", timeout=180_000)
    page.wait_for_function("Number(document.getElementById('chart-val').dataset.points) === 3")
    epochs = page.locator("#metrics-rows tr td:first-child").all_text_contents()
    assert epochs == ["1", "2", "3"]  # each epoch once
    with stack.api() as client:
        logs = client.get(f"/api/v1/training/jobs/{job_id}/logs", params={"limit": 1000}).json()
    assert page.locator("#log-lines li").count() == logs["total"]
    assert set(session.console_errors) <= {"Event"}  # htmx logs the simulated error event, nothing else


def test_a_list_row_changes_state_without_a_reload(stack: Stack, signed_in: Any) -> None:
    session = signed_in(stack.admin)
    page = session.page
    job_id = submit_job(stack, "listed", epochs=1)
    page.goto(f"{stack.url}/jobs")
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector(f"#job-{job_id}[data-status=completed]", timeout=240_000)
    assert page.evaluate("window.notReloaded") is True
    stack.state["second"] = job_id
    assert session.console_errors == []


def test_compare_two_jobs(stack: Stack, signed_in: Any) -> None:
    session = signed_in(stack.admin, width=700, height=900)  # a narrow window
    page = session.page
    first, second = stack.state["first"], stack.state["second"]
    page.check(f"#job-{first} input.pick")
    page.check(f"#job-{second} input.pick")
    page.click("#compare-button")
    page.wait_for_url(f"{stack.url}/compare?ids=*")
    page.wait_for_selector("#chart-compare[data-series='2']")
    differs = page.locator("table.config-diff tr.differs th").all_text_contents()
    assert "epochs" in differs
    assert session.console_errors == []


def test_deploy_the_model_and_see_its_boxes_on_a_dropped_image(stack: Stack, signed_in: Any) -> None:
    session = signed_in(stack.admin)
    page = session.page

    def ready_model() -> int | None:
        with stack.api() as client:
            items = client.get("/api/v1/models", params={"project": "demo"}).json()["items"]
            mine = [m for m in items if m["lineage"]["job_id"] == stack.state["first"]]
            if mine and mine[0]["status"] == "failed":
                # Its validation can find the device busy with the other tests' training: ask again.
                client.post(f"/api/v1/models/{mine[0]['id']}/validate")
        return mine[0]["id"] if mine and mine[0]["status"] == "ready" else None

    model_id = wait_until(ready_model, "the trained model never became ready", stack.logs, 240)
    stack.state["model"] = model_id
    page.click("text=Models")
    page.click(f"#model-{model_id} button.act-deploy")
    page.wait_for_selector(f"text=model {model_id} is the active detection model")
    page.click(f"#model-{model_id} >> text=test")
    page.wait_for_url(f"{stack.url}/models/{model_id}/test")
    page.set_input_files("#test-files", str(stack.dataset / "images" / "val" / "0.jpg"))
    page.wait_for_selector("#test-results figure canvas")
    page.wait_for_function("document.getElementById('test-results').dataset.total !== undefined")
    assert "ms" in (page.text_content("#test-status") or "")
    # The slider at 0 shows every box the model predicted; at 1, none.
    page.fill("#conf", "0")
    page.dispatch_event("#conf", "input")
    total = int(page.get_attribute("#test-results", "data-total") or 0)
    assert total > 0 and int(page.get_attribute("#test-results", "data-shown") or 0) == total
    page.fill("#conf", "1")
    page.dispatch_event("#conf", "input")
    assert int(page.get_attribute("#test-results", "data-shown") or 0) == 0
    assert session.console_errors == []


def test_the_fleet_unloads_and_loads_a_workers_warm_model(stack: Stack, signed_in: Any) -> None:
    session = signed_in(stack.admin)
    page = session.page
    model_id = stack.state["model"]  # warm on the only worker since it answered the dropped image
    page.click("text=Fleet")
    page.wait_for_url(f"{stack.url}/fleet")
    warm = page.locator("table.workers tbody tr td.warm").first
    assert f"model {model_id}" in (warm.text_content() or "")
    warm.locator(f"form:has(input[name=model_id][value='{model_id}']) button").click()
    page.wait_for_selector(f"#fleet-outcome >> text=unload model {model_id} done")
    page.reload()
    assert f"model {model_id}" not in (warm.text_content() or "")
    load = page.locator("table.workers form:has(input[name=action][value=load])").first
    load.locator("input[name=model_id]").fill(str(model_id))
    load.locator("button").click()
    page.wait_for_selector(f"#fleet-outcome >> text=load model {model_id} done", timeout=60_000)
    page.reload()
    assert f"model {model_id}" in (warm.text_content() or "")
    assert session.console_errors == []


def test_upload_a_dice_zip_and_see_the_overlays(stack: Stack, signed_in: Any, tmp_path: Path) -> None:
    from tests.dataset_api.conftest import detection_dataset, zip_folder

    archive = tmp_path / "shapes.zip"
    archive.write_bytes(zip_folder(detection_dataset(tmp_path / "dice", n=6)))
    with stack.api() as client:
        client.post("/api/v1/projects", json={"name": "demo"})  # 409 when an earlier test made it
    page = signed_in(stack.admin).page
    page.click("text=Datasets")
    page.select_option("#upload select[name=project_id]", label="demo")
    page.fill("#upload input[name=name]", "uploaded")
    page.set_input_files("#upload input[type=file]", str(archive))
    page.click("#upload button[type=submit]")
    page.wait_for_url(f"{stack.url}/datasets/*", wait_until="domcontentloaded")
    page.wait_for_function("Number(document.getElementById('gallery').dataset.drawn) === 6")
    captions = page.locator("#gallery figcaption").all_text_contents()
    assert len(captions) == 6 and all(re.search(r"· [1-9]\d* labels$", c) for c in captions), captions
    assert page.locator("#gallery canvas").first.evaluate("c => c.width > 0 && c.height > 0")


def test_a_viewer_sees_no_write_controls_and_a_forged_write_is_refused(stack: Stack, signed_in: Any) -> None:
    viewer = signed_in(create_key(stack.env, "--role", "viewer", "--project", "demo"))
    page = viewer.page
    job_id = stack.state["first"]
    page.goto(f"{stack.url}/jobs/{job_id}")
    assert page.locator("form[action$='/resume'], button.act-stop, a[href='/jobs/new']").count() == 0
    csrf = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    status = page.evaluate(
        "([url, csrf]) => fetch(url, {method: 'POST', headers: {'X-CSRF-Token': csrf}}).then(r => r.status)",
        [f"/jobs/{job_id}/resume", csrf],
    )
    assert status == 403
    # ... and a write without the CSRF token is refused whoever sends it.
    admin = signed_in(stack.admin).page
    assert admin.request.post(f"{stack.url}/jobs/{job_id}/resume").status == 403


def test_another_projects_job_is_a_404_page(stack: Stack, signed_in: Any) -> None:
    with stack.api() as client:
        assert client.post("/api/v1/projects", json={"name": "elsewhere"}).status_code == 201
    outsider = signed_in(create_key(stack.env, "--role", "member", "--project", "elsewhere"))
    response = outsider.page.goto(f"{stack.url}/jobs/{stack.state['first']}")
    assert response is not None and response.status == 404
    assert f"training job {stack.state['first']} does not exist" in outsider.page.text_content("main")


def test_the_api_docs_render_offline(stack: Stack, browser: Any) -> None:
    page = browser.new_page()
    # Nothing leaves this origin (Redoc's CDN logo is patched out when vendored, Swagger's validator badge
    # is off); the pages' policy would block it if it did.
    outside: list[str] = []
    page.on(
        "request",
        lambda r: r.url.startswith("http") and not r.url.startswith(stack.url) and outside.append(r.url),
    )
    page.goto(f"{stack.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    page.goto(f"{stack.url}/redoc")
    page.wait_for_selector("redoc .api-content, [role=navigation]", timeout=30_000)
    page.wait_for_timeout(500)
    assert outside == []
    page.close()
