"""A small HTTP client of the Trainyard API, used by the CLI (and usable from scripts).

Every failure is one of two exceptions: `Unreachable` (nothing answered at the URL) and `ApiError`
(the API answered with an error), so the CLI can say what happened in one line.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from app.core.jobs import TERMINAL


class Unreachable(Exception):
    """Nothing answered at the API URL (not started, wrong host or port, or it went away)."""

    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(f"cannot reach the Trainyard API at {url} ({type(cause).__name__})")
        self.url = url


class ApiError(Exception):
    """The API answered with an error (application/problem+json: detail, and errors per field)."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        message = body.get("detail") if isinstance(body, dict) else None
        super().__init__(str(message or response.reason_phrase or response.text[:200]))
        self.status = response.status_code
        self.body = body if isinstance(body, dict) else {}


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if "params" in kwargs:
            kwargs["params"] = _clean(kwargs["params"])
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.url, exc) from exc
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def download(self, path: str, target: Path) -> int:
        """Stream a file the API serves to `target` (written whole or not at all); returns its size."""
        partial = target.with_name(target.name + ".part")
        try:
            with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response)
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise Unreachable(self.url, exc) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
        return target.stat().st_size

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    # Named calls used in more than one place (the rest use get/post with the path).
    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.post("/api/v1/training/jobs", body)
        return result

    def get_job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/v1/training/jobs/{job_id}")
        return result

    def get_model(self, model_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/v1/models/{model_id}")
        return result

    def project_id(self, name: str) -> int:
        """The id of the project with this exact name (the CLI takes names; a few routes take ids)."""
        page = self.get("/api/v1/projects", search=name, limit=500)
        for project in page["items"]:
            if project["name"] == name:
                return int(project["id"])
        raise LookupError(f"no project named {name!r} (or this key does not cover it)")

    def deploy(self, project_id: int, model_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.post(
            f"/api/v1/projects/{project_id}/deployments", {"model_id": model_id}
        )
        return result

    def infer(self, images: list[tuple[str, bytes]], **form: Any) -> dict[str, Any]:
        """Run a model on a few images (`model_id`, or `project_id` for its active model)."""
        files = [("files", (name, data, "application/octet-stream")) for name, data in images]
        fields = {k: str(v) for k, v in form.items() if v is not None}
        result: dict[str, Any] = self.request("POST", "/api/v1/inference", files=files, data=fields)
        return result

    def events(self, job_id: int, after: int = 0, patience: float = 60.0) -> Iterator[dict[str, Any]]:
        """Follow the job's SSE stream until it ends (the API ends it after the job's final status event),
        reconnecting with Last-Event-ID. A quiet stream (a job queued for hours) is fine; only an API
        that does not answer for `patience` seconds raises Unreachable."""
        last = after
        down_since: float | None = None
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with connect_sse(
                    self.http,
                    "GET",
                    f"/api/v1/training/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=None),
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        raise ApiError(source.response)
                    down_since = None
                    final = None
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        final = event if is_final(event) else None
                        if event["seq"] > last or final is not None:
                            last = max(last, event["seq"])
                            yield event
                    if final is not None:
                        return  # the stream ended right after a final status: the job is over
            except httpx.TransportError as exc:
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since > patience:
                    raise Unreachable(self.url, exc) from exc
                time.sleep(1.0)


def is_final(event: dict[str, Any]) -> bool:
    return event["type"] == "status" and event["data"].get("status") in TERMINAL
