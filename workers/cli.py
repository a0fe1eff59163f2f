"""Start a GPU-pinned worker (one process per GPU) or the scheduler."""

import contextlib
import logging
import os
import threading
import warnings

import redis
from celery import signals

from app.core.logging import configure_logging
from app.core.settings import get_settings
from app.core.tasks import Queue, training_queue
from app.core.workers import announce, is_draining, rejoin, withdraw
from workers.disk import DiskMeter
from workers.identity import WorkerIdentity

log = logging.getLogger("app.backend")

PRESENCE_EVERY_SECONDS = 10.0


def run_worker(gpu: int | None, queues: list[str], name: str | None = None, pool: str | None = None) -> None:
    """Pin the process to one GPU (or the CPU), then consume `queues` one task at a time."""
    settings = get_settings()
    simulated = gpu is not None and settings.simulate_gpu
    if gpu is not None and not simulated:
        # Before torch is imported anywhere in this process or its trainers.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    device = "cpu" if gpu is None else str(gpu)
    if settings.inference_policy == "reserved":
        # The GPU serves inference only: this worker never takes a training job.
        queues = [q for q in queues if q != Queue.TRAINING]
    identity = WorkerIdentity(
        name=name or f"{settings.resolved_host}-{'cpu' if gpu is None else f'gpu{gpu}'}",
        device=device,
        queues=tuple(queues),
        simulated=simulated,
        pool=pool or "",
    )
    if Queue.TRAINING in queues:
        # Jobs that need this worker's pool are announced on its own queue (app/core/tasks.py).
        queues = [*queues, training_queue(identity.pool)]
    configure_logging(f"worker:{identity.name}")
    if simulated:
        log.warning("GPU %s is simulated (TRAINYARD_SIMULATE_GPU): computing on the CPU", gpu)
    if not queues:
        raise SystemExit(
            f"worker {identity.name} has no queue to consume (policy {settings.inference_policy})"
        )

    from workers import context

    context.set_identity(identity)
    context.get_lease().clear_own_stale()
    presence = _Presence(identity)
    # The registry shows a new current job with the claim and its end, not at the next refresh.
    context.get_runner().on_job_change = presence.announce
    # A draining worker finishes its job and takes no other (app/fleet/router.py).
    context.get_runner().accepting = lambda: not is_draining(presence.client, identity.name)

    @signals.worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        log.info("worker %s is up, consuming %s", identity.name, ",".join(queues))
        rejoin(presence.client, identity.name)
        try:
            context.get_runner().sweep_scratch()
        except Exception:  # a database hiccup must not keep the worker from serving
            log.warning("could not sweep old scratch folders", exc_info=True)
        presence.start()
        if Queue.TRAINING in identity.queues:
            context.get_runner().prepare_trainer()
        context.get_inference().start_control()  # GET/POST /api/v1/workers/{id}/models

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(**_: object) -> None:
        log.info("worker %s shutting down; handing back its running job", identity.name)
        context.get_runner().shutdown.set()
        context.get_runner().trainers.close()
        context.get_inference().stop_control()
        presence.stop()

    _celery_worker(
        [
            "--queues",
            ",".join(queues),
            "--pool",
            "threads",
            "--concurrency",
            "1",
            "--prefetch-multiplier",
            "1",
            "--hostname",
            # The node name the workers API drains by (app/fleet/router.py): the worker's id and host.
            f"{identity.name}@{identity.host}",
            "--task-events",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
    )


def run_scheduler() -> None:
    """Celery beat plus a one-slot worker for the scheduler queue (reconciliation), in one process:
    beat runs in a thread here rather than in the child process `--beat` would fork (~60 MB less)."""
    from celery.beat import EmbeddedService

    from workers.celery_app import celery_app

    configure_logging("scheduler")
    schedule = get_settings().resolved_data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    beat = EmbeddedService(celery_app, thread=True, schedule_filename=str(schedule))
    beat.start()
    try:
        _celery_worker(
            [
                "--queues",
                Queue.SCHEDULER,
                "--pool",
                "solo",
                "--hostname",
                "scheduler@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ]
        )
    finally:
        beat.stop()


def _celery_worker(options: list[str]) -> None:
    """Run Celery's worker quietly: our own log line says the worker is up (no ASCII banner), and the
    warning about running as root (usual in containers; we accept JSON only) is not shown at every start."""
    from celery.exceptions import SecurityWarning

    from workers.celery_app import celery_app

    warnings.filterwarnings("ignore", category=SecurityWarning)
    celery_app.worker_main(["--quiet", "worker", *options])


class _Presence(threading.Thread):
    """Keeps the worker's presence key alive in Redis (what /health and the workers API read)."""

    def __init__(self, identity: WorkerIdentity) -> None:
        super().__init__(name="presence", daemon=True)
        self.identity = identity
        settings = get_settings()
        self.client = redis.Redis.from_url(settings.resolved_redis_url)
        self.disk = DiskMeter(settings.resolved_data_dir)
        self._done = threading.Event()
        self._lock = threading.Lock()  # the runner's thread announces too

    def announce(self) -> None:
        from workers import context

        with self._lock:
            if self._done.is_set():
                return  # withdrawn: a job ending during shutdown must not bring the worker back
            try:
                current_job = context.get_runner().current_job
                info = {**self.identity.info(), **self.disk.report(), "current_job": current_job}
                announce(self.client, self.identity.name, info)
            except redis.RedisError:
                log.warning("could not announce worker presence", exc_info=True)

    def run(self) -> None:
        while True:
            # Here, not in `announce`: the runner's thread announces too, and must not wait for a walk.
            self.disk.walk_if_due()
            self.announce()
            if self._done.wait(PRESENCE_EVERY_SECONDS):
                break

    def stop(self) -> None:
        with self._lock:
            self._done.set()
            with contextlib.suppress(redis.RedisError):
                withdraw(self.client, self.identity.name)
