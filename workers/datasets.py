"""The YOLO folder of a frozen dataset version, materialized on the worker when a job is claimed.

Converted once per (version manifest checksum, task) into
`projects/<p>/datasets/<d>/versions/v<N>/yolo/<task>-<sha256>-c<converter>/` (app.datasets.convert's
cache), so a second job on the same version does no work. The manifest is checked against the
checksum recorded at freeze time before it is trusted.
"""

import hashlib
import json
from pathlib import Path

from app.core.db import Database
from app.datasets.convert import convert_cached
from app.datasets.types import DiceDataset, TaskType
from app.models import DatasetVersion
from app.versions.manifest import dataset_from_manifest


class VersionUnavailable(RuntimeError):
    pass


def materialize_version(db: Database, version_id: int, task_type: str, storage_root: Path) -> Path:
    """The folder (with data.yaml, or the ImageFolder layout) to train `task_type` from the version."""
    with db.session() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None or version.manifest_key is None or version.manifest_sha256 is None:
            raise VersionUnavailable(f"dataset version {version_id} has no manifest")
        manifest_file = storage_root / version.manifest_key
        source = storage_root / version.dataset.source_key
        cache_root = storage_root / version.storage_prefix / "yolo"
        expected = version.manifest_sha256

    def load() -> DiceDataset:
        data = manifest_file.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise VersionUnavailable(
                f"{manifest_file.name} of version {version_id} has sha256 {actual}, "
                f"recorded {expected}: the manifest changed after freezing"
            )
        return dataset_from_manifest(json.loads(data), source)

    return convert_cached(load, TaskType(task_type), cache_root, expected)
