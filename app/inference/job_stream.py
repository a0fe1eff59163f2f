"""SSE for an inference job: a `progress` event whenever more chunks are answered, then one `status`
event with the final status, and the stream ends.

The worker's publish after each chunk rings a bell of the process's one subscription
(app/core/fanout.py), a doorbell only: the state is re-read
from the job's keys each time, so a lost publish or a Redis hiccup delays an event but never skips
the end. Event ids count up from 1 in each stream; a client that reconnects gets the
current progress first.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from app.core import fanout
from app.inference import protocol
from app.inference.service import JOB_FINAL, job_status

PROGRESS_FIELDS = ("id", "status", "images", "chunks", "chunks_done", "progress", "errors")


async def job_events(job_id: str, is_disconnected: Callable[[], Any]) -> AsyncIterator[dict[str, Any]]:
    async with fanout.get_hub().bell(protocol.job_channel(job_id)) as bell:
        seen = bell.rings  # before the first read: no chunk slips by
        seq, last_done = 0, -1
        while True:
            state = await anyio.to_thread.run_sync(job_status, job_id)
            if state["chunks_done"] != last_done:
                last_done = state["chunks_done"]
                seq += 1
                yield {"id": seq, "event": "progress", "data": {k: state[k] for k in PROGRESS_FIELDS}}
            if state["status"] in JOB_FINAL:
                yield {"id": seq + 1, "event": "status", "data": {k: state[k] for k in PROGRESS_FIELDS}}
                return
            if await is_disconnected():
                return
            seen = await bell.wait(seen)
