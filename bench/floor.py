"""The floors under Trainyard's REST paths, measured by the benches in the same run:

- under a REST -> Celery -> worker path (bench_inference.py): a bare FastAPI endpoint that takes the same
  multipart upload and answers (no auth, no database), and a raw Celery round trip on the same Redis (a
  task whose worker pushes to a reply list the client pops);
- under a job submission (bench_submissions.py): a bare FastAPI endpoint that parses the same body, inserts
  one row through the SQLAlchemy ORM and commits it (on the same database, with the same durability), then
  sends one Celery message: what any FastAPI service must do to make a job durable and queued before its
  201, with no key, no check, no event.

    uvicorn --app-dir bench floor:api          celery -A floor worker --pool threads --concurrency 1
    FLOOR_DATABASE_URL=sqlite:///floor.db uvicorn --app-dir bench floor:api      (POST /jobs)
"""

import os
import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from fastapi import FastAPI, UploadFile
from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, Engine, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

BROKER = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

api = FastAPI()
celery = Celery("floor", broker=BROKER)
celery.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)
replies = redis.Redis.from_url(BROKER)


@api.post("/upload")
def upload(files: list[UploadFile]) -> dict[str, int]:
    return {"bytes": sum(len(f.file.read()) for f in files)}


@celery.task(name="floor.echo")
def echo(reply_key: str) -> None:
    replies.rpush(reply_key, b"ok")


class Base(DeclarativeBase):
    pass


class FloorJob(Base):
    __tablename__ = "floor_jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_name: Mapped[str] = mapped_column(String(100))
    dataset_path: Mapped[str] = mapped_column(String(4096))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Submission(BaseModel):
    project: str
    name: str
    model_name: str
    dataset_path: str
    config: dict[str, Any]


def database(url: str) -> tuple[Engine, AbstractContextManager[Any]]:
    """The engine, its table created, and what a writer holds while it writes: SQLite has one writer at a
    time, so this process's writers take turns instead of busy-waiting (WAL, SQLite's default
    `synchronous`, as the product runs it); PostgreSQL needs no turns."""
    if not url.startswith("sqlite"):
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        return engine, nullcontext()
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    Base.metadata.create_all(engine)
    return engine, threading.Lock()


# Made at start-up when the submission floor is served (the upload floor needs no database).
ENGINE, ONE_WRITER = (
    database(os.environ["FLOOR_DATABASE_URL"])
    if "FLOOR_DATABASE_URL" in os.environ
    else (None, nullcontext())
)


@api.post("/jobs", status_code=201)
def submit(body: Submission) -> dict[str, Any]:
    assert ENGINE is not None, "serve with FLOOR_DATABASE_URL set"
    with ONE_WRITER, Session(ENGINE, expire_on_commit=False) as session:
        job = FloorJob(**body.model_dump(exclude={"project"}), created_at=datetime.now(UTC))
        session.add(job)
        session.commit()
        answer = {
            "id": job.id,
            "name": job.name,
            "status": "queued",
            "created_at": job.created_at.isoformat(),
        }
    celery.send_task("floor.train", args=[answer["id"], 1], queue="floor-submissions")
    return answer
