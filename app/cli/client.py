"""A small HTTP client of the Trainyard API, used by the CLI (and usable from scripts)."""

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from app.core.jobs import TERMINAL


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
            message = body.get("detail") or body
        except ValueError:
            body, message = None, response.text
        super().__init__(f"HTTP {response.status_code}: {message}")
        self.status = response.status_code
        self.body = body


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/training/jobs", json=body)
        return result

    def list_jobs(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "GET", "/api/v1/training/jobs", params={k: v for k, v in params.items() if v is not None}
        )
        return result

    def get_job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/training/jobs/{job_id}")
        return result

    def list_models(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "GET", "/api/v1/models", params={k: v for k, v in params.items() if v is not None}
        )
        return result

    def get_model(self, model_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/models/{model_id}")
        return result

    def deploy(self, project_id: int, model_id: int) -> dict[str, Any]:
        path = f"/api/v1/projects/{project_id}/deployments"
        result: dict[str, Any] = self._call("POST", path, json={"model_id": model_id})
        return result

    def infer(self, images: list[tuple[str, bytes]], **form: Any) -> dict[str, Any]:
        """Run a model on a few images (`model_id`, or `project_id` for its active model)."""
        files = [("files", (name, data, "application/octet-stream")) for name, data in images]
        fields = {k: str(v) for k, v in form.items() if v is not None}
        result: dict[str, Any] = self._call("POST", "/api/v1/inference", files=files, data=fields)
        return result

    def events(self, job_id: int, after: int = 0, retries: int = 30) -> Iterator[dict[str, Any]]:
        """Follow the job's SSE stream until its terminal event, reconnecting with Last-Event-ID."""
        last = after
        failures = 0
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
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        last = event["seq"]
                        failures = 0
                        yield event
                        if event["type"] == "status" and event["data"].get("status") in TERMINAL:
                            return
            except httpx.TransportError:
                failures += 1
                if failures > retries:
                    raise
                time.sleep(min(5.0, 0.5 * failures))
