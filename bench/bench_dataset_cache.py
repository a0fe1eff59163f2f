"""Benchmark (issue 16): a job's dataset on a GPU host whose storage is S3, from job claim to first batch.

Run: .venv/bin/python bench/bench_dataset_cache.py [--images 10000] [--repeats 3] [--no-train]
                                                   [--dir DIR] [--keep]

Starts an S3 server (moto, on loopback) and points this process at it (TRAINYARD_STORAGE=s3, an embedded
SQLite database in a scratch folder). Builds a DICE detection dataset of 64x64 JPEGs, registers it and
freezes a version through the services, as the API does (both publish to the bucket). Then, in alternating
rounds, each into a fresh folder or cache:

- plain copy (the baseline): list the version's images and GET each into a folder, with as many threads
  as the worker uses (app.core.storage.TRANSFER_THREADS), as `aws s3 sync` does;
- first host: `materialize_version` with no stored conversion: download the images (sha256 checked),
  convert DICE → YOLO, store the conversion back;
- second host: the same on an empty cache with the conversion stored: download images and labels only;
- warm: the same again on the second host's cache (a hit: every file's stat checked against the listing).

Goals: cold ≤ 1.2x the plain copy, warm < 1 s. Optionally it also starts a real 1-epoch Ultralytics
training (in this process, CPU) from the warm folder and times it to its first batch. Not measured here:
the claim itself (Redis, the database), spawning the trainer process and importing torch there, fetching
base weights.
"""

import argparse
import contextlib
import io
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite import embedded_workdir, emit
from tests.support.s3 import CREDENTIALS, moto_server

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_convert import generate

BUCKET = "trainyard-bench"
GOAL_COLD_RATIO = 1.2
GOAL_WARM_SECONDS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--per-image", type=int, default=4, help="boxes per image")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the cold measurements")
    parser.add_argument("--no-train", action="store_true", help="skip the Ultralytics first-batch timing")
    parser.add_argument("--dir", type=Path, help="make the work folder in here (default: system temp)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with embedded_workdir("trainyard-dataset-cache-", args.dir, args.keep) as work, moto_server(work) as url:
        os.environ.update(CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(TRAINYARD_STORAGE="s3", TRAINYARD_S3_BUCKET=BUCKET, TRAINYARD_S3_ENDPOINT_URL=url)
        run(work, args)


@dataclass
class Frozen:
    version_id: int
    images_prefix: str  # the dataset's images in the bucket
    yolo_key: str  # where the stored conversion goes
    register_s: float  # registration, including publishing every source file
    freeze_s: float  # create_version, including publishing the manifest


def build_and_freeze(db: Any, storage_root: Path, images: int, per_image: int) -> Frozen:
    """A DICE folder in local storage, registered and frozen through the services (both publish)."""
    from app.dataset_registry import schemas as dataset_schemas
    from app.dataset_registry.service import register_from_folder
    from app.datasets.convert import cache_dir
    from app.datasets.types import TaskType
    from app.models import DatasetVersion
    from app.projects import schemas as project_schemas
    from app.projects.service import create_project
    from app.versions import schemas, service

    source = storage_root / "imports/bench"
    generate(source, images, per_image, size=(64, 64))
    write_jpegs(source / "images")
    with db.session() as session:
        project_id = create_project(session, project_schemas.ProjectCreate(name="bench")).id
    started = time.perf_counter()
    with db.session() as session:
        body = dataset_schemas.DatasetFromFolder(
            project_id=project_id, name="bench", source_path="imports/bench"
        )
        images_prefix = f"{register_from_folder(session, body).source_key}/images"
    register_s = time.perf_counter() - started
    started = time.perf_counter()
    version, _ = service.create_version(db, project_id, schemas.VersionCreate())
    freeze_s = time.perf_counter() - started
    with db.session() as session:
        row = session.get(DatasetVersion, version.id)
        assert row is not None and row.manifest_sha256 is not None
        yolo = cache_dir(Path(row.storage_prefix) / "yolo", TaskType.DETECTION, row.manifest_sha256)
    return Frozen(version.id, images_prefix, yolo.as_posix(), register_s, freeze_s)


def write_jpegs(folder: Path) -> None:
    """Each placeholder becomes a distinct 64x64 JPEG (coloured noise, ~2 KB)."""
    from PIL import Image

    rng = random.Random(1)
    for path in sorted(folder.rglob("*.jpg")):
        base = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
        noise = Image.frombytes("RGB", (64, 64), rng.randbytes(64 * 64 * 3))
        out = io.BytesIO()
        Image.blend(base, noise, 0.25).save(out, "JPEG", quality=85)
        path.write_bytes(out.getvalue())


def plain_copy(client: Any, prefix: str, target: Path, threads: int) -> tuple[int, int]:
    """The baseline: list the prefix, GET every object into `target`, `threads` at a time."""
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
        for item in page.get("Contents", [])
    ]

    def one(key: str) -> int:
        path = target / key[len(prefix) + 1 :]
        path.parent.mkdir(parents=True, exist_ok=True)
        data = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        path.write_bytes(data)
        return len(data)

    with ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(one, keys))
    return len(sizes), sum(sizes)


def run(work: Path, args: argparse.Namespace) -> None:
    import boto3
    from botocore.config import Config

    from app.core import migrate
    from app.core.db import Database
    from app.core.settings import get_settings
    from app.core.storage import TRANSFER_THREADS, S3Storage, get_storage
    from workers.dataset_cache import FolderCache
    from workers.datasets import materialize_version

    settings = get_settings()
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    storage.client.create_bucket(Bucket=BUCKET)
    migrate.upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    frozen = build_and_freeze(db, settings.resolved_storage_root, args.images, args.per_image)
    # The baseline's own client, its connection pool as large as its thread count.
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        config=Config(signature_version="s3v4", max_pool_connections=TRANSFER_THREADS),
    )
    caches = work / "caches"
    times: dict[str, list[float]] = {"plain": [], "first": [], "second": [], "warm": []}

    def materialized(kind: str, name: str, origin: str) -> Any:
        """Time one materialize (a `kind` of measure) into the cache `name`; it must come from `origin`."""
        started = time.perf_counter()
        result = materialize_version(
            db, frozen.version_id, "detection", storage, FolderCache(caches / name, 2**40)
        )
        seconds = time.perf_counter() - started
        result.release()
        assert result.origin == origin, (name, result.origin)
        times[kind].append(seconds)
        return result

    for round_ in range(args.repeats):
        started = time.perf_counter()
        copied = plain_copy(client, frozen.images_prefix, work / f"plain-{round_}", TRANSFER_THREADS)
        times["plain"].append(time.perf_counter() - started)
        storage.delete_prefix(frozen.yolo_key)  # no stored conversion: this host converts
        materialized("first", f"first-{round_}", "converted")
        second = materialized("second", f"second-{round_}", "storage")
        for _ in range(2):
            warm = materialized("warm", f"second-{round_}", "cache")
    train = None if args.no_train else first_batch(warm.path, work)
    report(frozen, copied, second.files, times, train, args)
    db.dispose()


def first_batch(folder: Path, work: Path) -> dict[str, float]:
    """A real 1-epoch Ultralytics training (YOLO11n from its yaml, CPU, imgsz 64) from `folder`, stopped at
    its first batch; seconds from `train()` to the end of its setup and to the first batch."""
    from workers.ultralytics.offline import prepare_offline

    prepare_offline(work / "ultralytics")
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from app.training.data_yaml import write_resolved

    LOGGER.setLevel(logging.WARNING)  # its progress bars would bury the table

    class FirstBatch(Exception):
        pass

    marks: dict[str, float] = {}
    started = time.perf_counter()

    def mark(name: str, stop: bool = False) -> Callable[[Any], None]:
        def callback(_trainer: Any) -> None:
            marks.setdefault(name, time.perf_counter() - started)
            if stop:
                raise FirstBatch

        return callback

    model = YOLO("yolo11n.yaml", task="detect")
    model.add_callback("on_train_start", mark("setup (datasets scanned, loaders built)"))
    model.add_callback("on_train_batch_end", mark("first batch", stop=True))
    data = write_resolved(folder, work / "train" / "data.yaml")
    started = time.perf_counter()
    with contextlib.suppress(FirstBatch):
        model.train(
            data=str(data), epochs=1, imgsz=64, batch=16, workers=2, device="cpu", plots=False,
            project=str(work / "train"), name="run", exist_ok=True, verbose=False,
        )  # fmt: skip
    return marks


def report(
    frozen: Frozen,
    copied: tuple[int, int],
    second_files: int,
    times: dict[str, list[float]],
    train: dict[str, float] | None,
    args: argparse.Namespace,
) -> None:
    from app.core.storage import TRANSFER_THREADS

    files, size = copied
    print(
        f"dataset: {args.images} JPEGs 64x64, {size / 2**20:.1f} MiB; {TRANSFER_THREADS} threads; "
        f"{args.repeats} rounds; cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"register (publishes {files} source files): {frozen.register_s:.2f} s")
    print(f"freeze (publishes the manifest): {frozen.freeze_s:.2f} s")
    print(f"second host: {second_files} files (the images one by one, the conversion's own in one archive)")
    plain = median(times["plain"])
    labels = {
        "plain": f"plain boto3 copy ({files} GETs)",
        "first": "cold, first host (download+convert+store back)",
        "second": "cold, second host (stored conversion: download only)",
        "warm": "warm (cache hit, verified)",
    }
    print(f"{'':54s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'x plain':>8s}")
    for name, values in times.items():
        print(
            f"{labels[name]:54s} {median(values):9.3f} {min(values):7.3f} {max(values):7.3f}"
            f" {median(values) / plain:7.2f}x"
        )
    for name in ("first", "second"):
        ratio = median(times[name]) / plain
        verdict = "met" if ratio <= GOAL_COLD_RATIO else "MISSED"
        print(f"goal cold <= {GOAL_COLD_RATIO}x plain, {labels[name]}: {ratio:.2f}x ({verdict})")
    warm = median(times["warm"])
    verdict = "met" if warm < GOAL_WARM_SECONDS else "MISSED"
    print(f"goal warm < {GOAL_WARM_SECONDS} s: {warm:.3f} s ({verdict})")
    if train is not None:
        for what, seconds in train.items():
            print(f"trainer from the warm folder, train() → {what}: {seconds:.2f} s")
    print(
        "claim → first batch = materialize (above) + the trainer's start; not measured: the claim itself, "
        "spawning the trainer process and importing torch there, fetching base weights"
    )
    rows = [
        {"measure": labels[name] + ", median", "value": median(times[name]), "baseline": plain, "unit": "s"}
        for name in ("first", "second", "warm")
    ]
    emit("dataset_cache", rows, baseline="plain boto3 parallel download of the same files")


if __name__ == "__main__":
    main()
