"""One logging setup for API, workers and trainers: plain text in dev, JSON lines in production.

Context (request_id, job_id, attempt) is carried in context variables and stamped on every record.
"""

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[int | None] = ContextVar("job_id", default=None)
attempt_var: ContextVar[int | None] = ContextVar("attempt", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.job_id = job_id_var.get()
        record.attempt = attempt_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "category": record.name,
            "component": self.component,
            "message": record.getMessage(),
        }
        for key in ("request_id", "job_id", "attempt"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(component: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if (
        os.environ.get(
            "TRAINYARD_LOG_FORMAT", "json" if os.environ.get("TRAINYARD_ENV") == "production" else "text"
        )
        == "json"
    ):
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [{component}] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(os.environ.get("TRAINYARD_LOG_LEVEL", "INFO"))
    # Warnings (Celery's, libraries') become records in the same format instead of bare stderr text.
    logging.captureWarnings(True)
    # Alembic logs each step and plugin; `trainyard serve` and `db upgrade` say one line of their own.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if component == "scheduler":
        # Celery's own records of each periodic tick (sent, received, succeeded) say nothing happened;
        # the reconciliation task logs what it changed, when it changed something.
        for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
