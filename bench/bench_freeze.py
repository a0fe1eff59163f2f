"""Benchmark: freeze a dataset version of 10,000 images / 100,000 annotations, then convert it to YOLO.

Run: .venv/bin/python bench/bench_freeze.py [--images 10000] [--per-image 10] [--image-bytes 16384]
                                             [--dir DIR] [--keep]

Runs the real code paths on a throwaway SQLite database and storage folder: `create_version` (load +
validate the DICE files, filter, SHA-256 of every image, number under the project lock, manifest
render + write, status ready) and the worker's `materialize_version` (read + verify the manifest,
rebuild the dataset, convert with links; then the cache hit). Images are random bytes of
--image-bytes each (nothing opens them as pictures; their size is what hashing costs).
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite import embedded_workdir, emit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_convert import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--image-bytes", type=int, default=16 * 1024)
    parser.add_argument("--dir", type=Path, help="make the work folder in here (default: system temp)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with embedded_workdir("trainyard-freeze-", args.dir, args.keep) as work:
        run(work, args)


def run(work: Path, args: argparse.Namespace) -> None:
    from app.core import migrate
    from app.core.db import Database
    from app.core.settings import get_settings
    from app.core.storage import LocalStorage
    from app.datasets.dice import load_dice, summarize
    from app.models import Dataset, Project
    from app.versions import schemas, service
    from workers.datasets import materialize_version

    settings = get_settings()
    storage = settings.resolved_storage_root
    source = storage / "projects/bench/datasets/bench/source"
    total = generate(source, args.images, args.per_image)
    for path in (source / "images").rglob("*.jpg"):
        path.write_bytes(os.urandom(args.image_bytes))
    migrate.upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        project = Project(name="bench", slug="bench")
        summary = summarize(load_dice(source))
        session.add(Dataset(project=project, name="bench", slug="bench", total_annotations=total, **summary))
        session.flush()
        project_id = project.id
    print(
        f"dataset: {args.images} images of {args.image_bytes} bytes, {total} annotations; work folder {work}"
    )

    rows: list[tuple[str, float, float, float]] = []

    def timed(what: str, step: Callable[[], Any]) -> Any:
        wall, before = time.perf_counter(), os.times()
        result = step()
        after = os.times()
        rows.append(
            (what, time.perf_counter() - wall, after.user - before.user, after.system - before.system)
        )
        return result

    version, _ = timed(
        "freeze (create_version)", lambda: service.create_version(db, project_id, schemas.VersionCreate())
    )
    resplit, _ = timed(
        "freeze, re-split 80/15/5",
        lambda: service.create_version(
            db, project_id, schemas.VersionCreate(splits=schemas.Splits(train=0.8, val=0.15, test=0.05))
        ),
    )
    missed = timed(
        "convert (worker, miss)",
        lambda: materialize_version(db, version.id, "detection", LocalStorage(storage)),
    )
    hit = timed(
        "convert (worker, hit)",
        lambda: materialize_version(db, version.id, "detection", LocalStorage(storage)),
    )
    missed.release()
    hit.release()
    manifest_mb = (storage / version.manifest_key).stat().st_size / 1e6
    print(f"manifest: {manifest_mb:.1f} MB, sha256 {version.manifest_sha256[:16]}...")
    print(f"yolo folder {missed.path.name}: {missed.origin}, then {hit.origin}")
    print(f"{'step':28s} {'wall s':>8s} {'user s':>8s} {'kernel s':>8s} {'annotations/s (wall)':>22s}")
    for what, wall, user, system in rows:
        print(f"{what:28s} {wall:8.3f} {user:8.2f} {system:8.2f} {total / max(wall, 1e-9):22,.0f}")
    assert resplit.status == "ready"
    walls = {what: wall for what, wall, _, _ in rows}
    first = walls["freeze (create_version)"]
    emit(
        "freeze",
        [
            {"measure": f"{what}, wall", "value": wall, "baseline": first, "unit": "s"}
            for what, wall in walls.items()
        ][1:],
        baseline="first freeze (create_version)",
    )
    db.dispose()


if __name__ == "__main__":
    main()
