"""Preparing an attempt's inputs, one explicit step before its trainer starts: the dataset
materialized as a local folder (workers/datasets.py), the weights to start from and the checkpoint to
resume downloaded, a large config written to a file. The result is the attempt's TrainerContext
(trainyard_sdk/context.py; docs/trainer-contract.md), which the trainer reads back from its environment.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.db import Database
from app.core.security import job_token
from app.core.settings import Settings
from app.core.storage import Storage
from app.models import BaseWeights, TrainingJob
from app.training.frameworks import framework
from trainyard_sdk.context import TrainerContext
from workers.datasets import Materialized, materialize_folder, materialize_version
from workers.weights_cache import get_weights_cache


@dataclass(frozen=True)
class JobSpec:
    """What the trainer needs, read once at claim time (the row may change under us later)."""

    job_id: int
    attempt: int
    framework: str
    task_type: str
    model_name: str
    dataset_path: str | None
    dataset_id: int | None
    config: dict[str, Any]
    storage_prefix: str
    last_checkpoint: str | None
    dataset_version_id: int | None  # converted to a YOLO folder here (workers/datasets.py)
    checkpoint_path: str | None  # weights to start from instead of the model YAML

    @classmethod
    def of(cls, job: TrainingJob) -> "JobSpec":
        return cls(
            job.id,
            job.attempt,
            job.framework,
            job.task_type,
            job.model_name,
            job.dataset_path,
            job.dataset_id,
            dict(job.config),
            job.storage_prefix,
            job.last_checkpoint,
            job.dataset_version_id,
            job.checkpoint_path,
        )


def _starting_weights(key: str, target: Path, storage: Storage) -> Path:
    """Base weights come from this worker's content-addressed cache (fetched once per worker, linked into
    the run so an eviction cannot pull them away); other checkpoints straight from storage."""
    sha256 = BaseWeights.sha256_of(key)
    if sha256 is None:
        return storage.get_file(key, target)
    cached = get_weights_cache().fetch(storage, key, sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(cached, target)
    except OSError:  # another file system
        shutil.copyfile(cached, target)
    return target


def materialize_dataset(spec: JobSpec, db: Database, storage: Storage) -> Materialized | None:
    """The job's dataset as a folder on this host (workers/datasets.py), held until released."""
    if spec.dataset_version_id is not None:
        return materialize_version(db, spec.dataset_version_id, spec.task_type, storage)
    if spec.dataset_path is not None:
        return materialize_folder(spec.dataset_path, storage)
    return None


def prepare(
    spec: JobSpec,
    run_dir: Path,
    device: str,
    dataset: Path | None,
    storage: Storage,
    settings: Settings,
) -> TrainerContext:
    """Fetch every other input the attempt needs into `run_dir`; its context, ready to hand over."""
    model_source = framework(spec.framework).model_source(spec.model_name, spec.task_type)
    if spec.checkpoint_path is not None:
        # Fine-tuning: a fresh run (new optimizer, epoch 1) that starts from these weights.
        model_source = str(_starting_weights(spec.checkpoint_path, run_dir / "start" / "weights.pt", storage))
    resume_from = None
    if spec.attempt > 1 and spec.last_checkpoint and storage.exists(spec.last_checkpoint):
        resume_from = storage.get_file(spec.last_checkpoint, run_dir / "resume" / "last.pt")
    context = TrainerContext(
        job_id=spec.job_id,
        attempt=spec.attempt,
        framework=spec.framework,
        task_type=spec.task_type,
        model_name=spec.model_name,
        model_source=model_source,
        dataset_id=spec.dataset_id,
        dataset_path=dataset,
        device=device,
        run_dir=run_dir,
        resume_from=resume_from,
        config=spec.config,
        # For trainers that report over HTTP instead (the pipe wins when both are set).
        callback_url=f"{settings.api_url.rstrip('/')}/api/v1/training/jobs/{spec.job_id}/callback",
        token=job_token(spec.job_id, spec.attempt, settings),
    )
    if not context.config_fits_env():
        config_path = run_dir / "config.json"
        config_path.write_text(json.dumps(spec.config))
        context = context.model_copy(update={"config_path": config_path})
    return context
