"""A drain lasts as long as the worker process it drained: a worker that died while draining (killed,
out of memory) and was started again consumes its queues, and the registry says so."""

import sys
from pathlib import Path

import pytest
import redis

from app.core.workers import all_workers, mark_draining
from tests.ops.conftest import worker_is_live
from tests.support.stack import running, tail, wait_until

pytestmark = pytest.mark.integration

TRAINYARD = [sys.executable, "-m", "app.cli.main"]


def test_a_worker_started_again_after_dying_while_draining_is_not_listed_as_draining(
    process_env: dict[str, str], ops_redis: redis.Redis, worker_name: str, tmp_path: Path
) -> None:
    mark_draining(ops_redis, worker_name)  # what the previous process of this worker left behind
    log = tmp_path / "worker.log"
    with running([*TRAINYARD, "worker", "--device", "cpu", "--name", worker_name], process_env, log):
        wait_until(worker_is_live(ops_redis, worker_name), "worker presence", tail(log))
        (worker,) = [w for w in all_workers(ops_redis) if w["id"] == worker_name]
        assert worker["status"] == "online", worker
