"""The metrics. Process-local ones (SSE clients, inference latency) live in the default registry;
fleet-wide ones (jobs, queues, workers) are read from the database and Redis at scrape time, so every
API process reports the same numbers whichever of them is scraped.
"""

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client import Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.core.db import Database
from app.core.jobs import JobStatus
from app.core.workers import PREFIX, all_workers
from app.models import Project, SchedulerState, TrainingJob
from app.scheduling import service as scheduling
from app.scheduling.pools import known_pools, queue_names
from app.scheduling.service import WaitKind

log = logging.getLogger("app.backend")

SSE_CLIENTS = Gauge("trainyard_sse_clients", "Open server-sent event streams in this API process")
INFERENCE_LATENCY = Histogram(
    "trainyard_inference_latency_seconds",
    "Time from an inference request to its answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

WAIT_WINDOW = timedelta(hours=1)
WAIT_QUANTILES = (0.5, 0.95, 1.0)
ANY_POOL = "*"  # the `pool` label of jobs that need no pool (not a pool name: app.scheduling.pools)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FleetCollector(Collector):
    """Jobs by status, wait time to start, queue depth and worker heartbeat age, read on each scrape."""

    def __init__(self, db: Database, client: redis.Redis) -> None:
        self.db = db
        self.client = client

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._jobs()
        except Exception:
            log.warning("metrics: could not read jobs from the database", exc_info=True)
        try:
            registry = all_workers(self.client)
        except redis.RedisError:
            log.warning("metrics: could not read the worker registry from Redis", exc_info=True)
            registry = []  # queued jobs then read as waiting for a worker, which is what the fleet sees
        try:
            yield from self._scheduling(registry)
        except Exception:
            log.warning("metrics: could not read the scheduler's view from the database", exc_info=True)
        try:
            yield from self._queues(registry)
            yield from self._workers()
        except redis.RedisError:
            log.warning("metrics: could not read queues and workers from Redis", exc_info=True)

    def _jobs(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        with self.db.session() as session:
            counts = dict(
                session.execute(select(TrainingJob.status, func.count()).group_by(TrainingJob.status)).all()
            )
            started = session.execute(
                select(TrainingJob.created_at, TrainingJob.started_at).where(
                    TrainingJob.started_at >= now - WAIT_WINDOW
                )
            ).all()
            oldest_queued = session.scalar(
                select(func.min(TrainingJob.created_at)).where(TrainingJob.status == JobStatus.QUEUED)
            )
        by_status = GaugeMetricFamily("trainyard_jobs", "Training jobs by status", labels=["status"])
        for status in JobStatus:
            by_status.add_metric([status.value], counts.get(status.value, 0))
        yield by_status

        waits = [(_aware(s) - _aware(c)).total_seconds() for c, s in started if s is not None]
        wait = GaugeMetricFamily(
            "trainyard_job_wait_seconds",
            "Wait from submission to start of the jobs that started in the last hour",
            labels=["quantile"],
        )
        for q in WAIT_QUANTILES:
            wait.add_metric([str(q)], _quantile(waits, q) if waits else 0.0)
        yield wait
        yield GaugeMetricFamily(
            "trainyard_job_wait_samples", "Jobs behind trainyard_job_wait_seconds", len(waits)
        )
        age = (now - _aware(oldest_queued)).total_seconds() if oldest_queued else 0.0
        yield GaugeMetricFamily(
            "trainyard_oldest_queued_job_age_seconds", "Age of the oldest queued job", age
        )

    def _scheduling(self, registry: list[dict[str, Any]]) -> Iterator[Metric]:
        """Queued jobs by the pool they need and the class of why they wait (app/scheduling/service.py
        `explain`), the scheduler's decisions, and each project's running jobs, quota and weight."""
        with self.db.session() as session:
            needs = dict(
                session.execute(
                    select(TrainingJob.id, TrainingJob.pool).where(TrainingJob.status == JobStatus.QUEUED)
                ).all()
            )
            pending = scheduling.explain(session, list(needs), registry) if needs else {}
            decisions = session.scalar(select(SchedulerState.decisions).where(SchedulerState.id == 1))
            names = dict(session.execute(select(Project.id, Project.name)).all())
            loads = scheduling.loads(session)
        counts = Counter((needs[job_id] or ANY_POOL, why.kind) for job_id, why in pending.items())
        by_reason = GaugeMetricFamily(
            "trainyard_jobs_queued",
            f"Queued training jobs by the pool they need ({ANY_POOL!r}: none) and why they wait",
            labels=["pool", "reason"],
        )
        for pool in sorted({ANY_POOL} | known_pools(registry) | {pool for pool, _ in counts}):
            for kind in WaitKind:
                by_reason.add_metric([pool, kind.value], counts.get((pool, kind), 0))
        yield by_reason
        yield CounterMetricFamily(
            "trainyard_scheduler_decisions",
            "Scheduling decisions: each time a free worker asks for a job, and each reclaim pass",
            decisions or 0,  # no row: a database the migration did not fill
        )
        running = GaugeMetricFamily(
            "trainyard_project_running_jobs",
            "Training jobs running (or stopping) per project",
            labels=["project"],
        )
        quota = GaugeMetricFamily(
            "trainyard_project_gpu_quota", "A project's GPU quota (no sample: no limit)", labels=["project"]
        )
        weight = GaugeMetricFamily(
            "trainyard_project_share_weight", "A project's weight in the fair share", labels=["project"]
        )
        for project_id, load in loads.items():
            name = names.get(project_id, str(project_id))  # created between the two reads
            running.add_metric([name], load.running)
            weight.add_metric([name], load.weight)
            if load.quota is not None:
                quota.add_metric([name], load.quota)
        yield from (running, quota, weight)

    def _queues(self, registry: list[dict[str, Any]]) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "trainyard_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        for queue in queue_names(registry):
            depth.add_metric([queue], self.client.llen(queue))
        yield depth

    def _workers(self) -> Iterator[Metric]:
        now = time.time()
        age = GaugeMetricFamily(
            "trainyard_worker_heartbeat_age_seconds",
            "Seconds since each live worker last announced itself",
            labels=["worker", "device"],
        )
        live = 0
        for key in self.client.scan_iter(match=PREFIX + "*", count=100):
            raw = self.client.get(key)
            if raw is None:
                continue
            info = json.loads(raw)
            live += 1
            announced = info.get("announced_at")
            if isinstance(announced, int | float):
                age.add_metric([str(info.get("id")), str(info.get("device", ""))], max(0.0, now - announced))
        yield age
        yield GaugeMetricFamily("trainyard_workers_live", "Workers whose presence key is alive", live)
