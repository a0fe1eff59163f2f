"""Settings, read from the environment (and `.env`): one object for API, workers and CLI."""

import os
import socket
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("data"), validation_alias="TRAINYARD_DATA_DIR")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    storage_root: Path | None = Field(default=None, validation_alias="TRAINYARD_STORAGE_ROOT")
    # `s3`: the same keys in a bucket (credentials from the usual AWS_* variables or instance role).
    storage: Literal["local", "s3"] = Field(default="local", validation_alias="TRAINYARD_STORAGE")
    s3_bucket: str | None = Field(default=None, validation_alias="TRAINYARD_S3_BUCKET")
    s3_endpoint_url: str | None = Field(default=None, validation_alias="TRAINYARD_S3_ENDPOINT_URL")
    api_url: str = Field(default="http://127.0.0.1:8000", validation_alias="TRAINYARD_API_URL")
    env: str = Field(default="dev", validation_alias="TRAINYARD_ENV")
    # Signs per-attempt callback tokens. Required outside dev; in dev a random key is kept in the data dir.
    secret_key: SecretStr | None = Field(default=None, validation_alias="TRAINYARD_SECRET_KEY")

    # The lease: a worker renews it every `heartbeat_seconds`; a job whose lease is older than
    # `lease_ttl_seconds` is presumed orphaned and goes back to the queue.
    lease_ttl_seconds: int = Field(default=30, validation_alias="TRAINYARD_LEASE_TTL")
    heartbeat_seconds: float = Field(default=5.0, validation_alias="TRAINYARD_HEARTBEAT")
    reconcile_seconds: float = Field(default=10.0, validation_alias="TRAINYARD_RECONCILE_EVERY")
    max_attempts: int = Field(default=3, validation_alias="TRAINYARD_MAX_ATTEMPTS")
    # A queued job not taken for this long gets its command again (its message may have been lost).
    redispatch_after_seconds: float = Field(default=300.0, validation_alias="TRAINYARD_REDISPATCH_AFTER")
    retry_backoff_seconds: float = Field(default=5.0, validation_alias="TRAINYARD_RETRY_BACKOFF")
    # A worker keeps its next trainer process started, torch and Ultralytics imported (~300 MB), so a
    # job starts training within a second of its claim; off, each job's trainer starts cold.
    warm_trainer: bool = Field(default=True, validation_alias="TRAINYARD_WARM_TRAINER")
    # How long a trainer asked to stop may take to reach the end of its step before it is killed.
    stop_grace_seconds: float = Field(default=120.0, validation_alias="TRAINYARD_STOP_GRACE")
    sse_ping_seconds: float = Field(default=15.0, validation_alias="TRAINYARD_SSE_PING")

    # Inference. `wait`: on a shared GPU, inference waits for the device's lease (training holds it for
    # a whole job); `other-worker`: a busy device hands the request back to the queue for another worker;
    # `reserved`: this worker takes no training at all, its GPU serves inference only.
    inference_policy: Literal["wait", "other-worker", "reserved"] = Field(
        default="wait", validation_alias="TRAINYARD_INFERENCE_POLICY"
    )
    inference_timeout_seconds: float = Field(default=30.0, validation_alias="TRAINYARD_INFERENCE_TIMEOUT")
    inference_max_image_mb: float = Field(default=20.0, validation_alias="TRAINYARD_INFERENCE_MAX_IMAGE_MB")
    inference_max_pixels: int = Field(default=40_000_000, validation_alias="TRAINYARD_INFERENCE_MAX_PIXELS")
    # Requests with more images than this must go through an inference job (POST /inference/jobs).
    inference_sync_max_images: int = Field(default=64, validation_alias="TRAINYARD_INFERENCE_SYNC_MAX")
    # Images per forward pass: a larger request runs as several, the next decoding while one predicts.
    inference_batch_size: int = Field(default=16, ge=1, validation_alias="TRAINYARD_INFERENCE_BATCH")
    # The worker's model cache: at most this many models, and this much weight memory.
    model_cache_size: int = Field(default=4, validation_alias="TRAINYARD_MODEL_CACHE_SIZE")
    model_cache_mb: float = Field(default=2048.0, validation_alias="TRAINYARD_MODEL_CACHE_MB")
    # The worker's disk cache of weight files by sha256 (base weights); least recently used evicted.
    weights_cache_mb: float = Field(default=10240.0, validation_alias="TRAINYARD_WEIGHTS_CACHE_MB")
    # The worker's disk cache of dataset folders by content (workers/dataset_cache.py): least recently
    # used evicted, never one a running job uses (so only what is in use can exceed this bound).
    cache_max_gb: float = Field(default=50.0, gt=0, validation_alias="TRAINYARD_CACHE_MAX_GB")
    # GPU sharing between processes: before a trainer starts on a GPU, the other workers on that GPU drop
    # their warm models; the trainer waits this long at most for them (bounded by a third of the lease).
    gpu_evict_timeout_seconds: float = Field(default=10.0, validation_alias="TRAINYARD_GPU_EVICT_TIMEOUT")
    host: str | None = Field(
        default=None,
        validation_alias="TRAINYARD_HOST",
        description=(
            "The name of the machine a worker runs on, as the workers API and each job's attempts show it: "
            "set it where the hostname is not the machine's (a container has its own). Default: the "
            "hostname. GPU leases stay keyed by the hostname (workers/identity.py)."
        ),
    )
    simulate_gpu: bool = Field(
        default=False,
        validation_alias="TRAINYARD_SIMULATE_GPU",
        description=(
            "For machines without a GPU (tests, demos): a `--gpu N` worker keeps the identity of GPU N "
            "(its device, its lease shared with the other processes on GPU N, its cache emptied before "
            "training) but computes on the CPU; CUDA_VISIBLE_DEVICES is left alone and nvidia-smi unused."
        ),
    )

    # Scheduling (app/scheduling/): pools to accept jobs for before any of their workers announced
    # itself (comma-separated), and the lowest priority that may preempt a borrowed GPU ("urgent";
    # "": no preemption).
    pools: str = Field(default="", validation_alias="TRAINYARD_POOLS")
    preempt_for: Literal["", "low", "normal", "high", "urgent"] = Field(
        default="", validation_alias="TRAINYARD_PREEMPT_FOR"
    )
    # Folders outside storage that jobs may read an absolute `dataset_path` from (os.pathsep- or
    # comma-separated). The storage root is always allowed; nothing else is.
    import_roots: str = Field(default="", validation_alias="TRAINYARD_IMPORT_ROOTS")
    # Job submissions per API key: "<count>/<seconds>s" (a fixed window in Redis).
    submit_rate: str = Field(default="30/60s", validation_alias="TRAINYARD_SUBMIT_RATE")
    # Request bodies: JSON and forms, and dataset uploads (ZIPs, images).
    max_body_mb: float = Field(default=10.0, validation_alias="TRAINYARD_MAX_BODY_MB")
    max_upload_mb: float = Field(default=20 * 1024.0, validation_alias="TRAINYARD_MAX_UPLOAD_MB")
    stream_token_seconds: int = Field(default=300, validation_alias="TRAINYARD_STREAM_TOKEN_TTL")
    # Origins (comma-separated) whose browser pages may call the API (CORS); none by default.
    cors_origins: str = Field(default="", validation_alias="TRAINYARD_CORS_ORIGINS")
    # How long a dashboard sign-in lasts (the session also ends when its API key is revoked).
    session_hours: float = Field(default=12.0, gt=0, validation_alias="TRAINYARD_SESSION_HOURS")

    # The folders below are resolved once (links followed): every request that names a path checks it
    # against them, and settings do not change while a process runs (get_settings is cached too).
    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_host(self) -> str:
        return self.host or socket.gethostname()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'trainyard.db'}"

    @property
    def bundled_redis_socket(self) -> Path:
        return self.resolved_data_dir / "redis" / "redis.sock"

    @property
    def resolved_redis_url(self) -> str:
        """REDIS_URL, or the socket of the bundled Redis that `trainyard serve` starts."""
        return self.redis_url or f"unix://{self.bundled_redis_socket}"

    @property
    def broker_url(self) -> str:
        """Kombu spells a Redis unix socket differently from redis-py."""
        url = self.resolved_redis_url
        if url.startswith("unix://"):
            return "redis+socket://" + url.removeprefix("unix://")
        return url

    @cached_property
    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.resolved_data_dir / "storage").expanduser().resolve()

    @cached_property
    def resolved_import_roots(self) -> list[Path]:
        parts = self.import_roots.replace(",", os.pathsep).split(os.pathsep)
        return [Path(p.strip()).expanduser().resolve() for p in parts if p.strip()]

    @property
    def resolved_cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def runs_dir(self) -> Path:
        """Worker-local scratch space where trainers write before results are copied to storage."""
        return self.resolved_data_dir / "runs"


@lru_cache
def get_settings() -> Settings:
    return Settings()
