from pydantic import BaseModel, Field

# A registry entry is what the worker announced (workers/cli.py): a worker of an older version may leave
# out what it did not know yet, so every announced field but the id may be missing.


class WorkerRead(BaseModel):
    id: str
    host: str | None = Field(
        default=None, description="the machine it runs on: TRAINYARD_HOST, else its hostname"
    )
    device: str | None = Field(default=None, description='"cpu" or the index of the GPU it is pinned to')
    gpu_name: str | None = None
    memory_total_mb: int | None = Field(default=None, description="the GPU's memory, or the host's RAM")
    cpu_count: int | None = None
    queues: list[str] = Field(default_factory=list)
    pool: str | None = Field(
        default=None,
        description="the worker pool jobs may require (`trainyard worker --pool`, or its GPU model)",
    )
    pid: int | None = None
    version: str | None = None
    current_job: int | None = Field(
        default=None, description="the training job it runs (null for a key that does not see the job)"
    )
    cache_bytes: int | None = Field(
        default=None,
        description="bytes of its local caches (datasets and weights, under its data dir); measured at "
        "most every 30 s, null before the first measure",
    )
    disk_free_bytes: int | None = Field(
        default=None, description="free bytes of the file system that holds its data dir"
    )
    disk_total_bytes: int | None = Field(default=None, description="size of that file system")
    status: str = Field(description="online, draining or offline (its presence expired)")
    announced_at: float | None = Field(default=None, description="its last heartbeat, in epoch seconds")
    heartbeat_age_seconds: float


class WorkerPage(BaseModel):
    items: list[WorkerRead]
    total: int
