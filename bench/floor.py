"""The floor under any REST -> Celery -> worker path, for bench_inference.py to measure in the same run:
a bare FastAPI endpoint that takes the same multipart upload and answers (no auth, no database), and a
raw Celery round trip on the same Redis (a task whose worker pushes to a reply list the client pops).

    uvicorn --app-dir bench floor:api          celery -A floor worker --pool threads --concurrency 1
"""

import os

import redis
from celery import Celery
from fastapi import FastAPI, UploadFile

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
