"""A job's dataset as a local folder on the worker's host, whatever the storage backend.

Local storage (the embedded default): the worker shares the storage folder, so a version is converted
in place, once per (version manifest checksum, task), into
`projects/<p>/datasets/<d>/versions/v<N>/yolo/<task>-<sha256>-c<converter>/` (app.datasets.convert's
cache), and a `dataset_path` folder is read where it is. Nothing is copied.

S3 (a fleet): the host keeps a content-addressed cache (workers/dataset_cache.py). A version's entry is
keyed by its manifest checksum and task. The first host to need it downloads the version's images
(checked against the manifest's sha256), converts them, and stores the conversion back under that same
`yolo/...` key: its own files (labels, data.yaml) in one archive, and a `files.json` listing the storage
key and checksum of every image, the checksum of every file in the archive and of the archive itself.
Any other host then fetches that listing, the archive and the images straight into its cache: DICE to
YOLO runs once per version and task in the whole fleet. (One archive, not one object per label: a
request per small object is what a download of many small files costs.) A `dataset_path` that names
a storage folder is cached by the hash of its listing. A second job on the same data finds the entry and
downloads nothing.
"""

import hashlib
import json
import shutil
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.core.db import Database
from app.core.storage import TRANSFER_THREADS, LocalStorage, Storage
from app.datasets.convert import CONVERTER_VERSION, cache_dir, convert_cached, convert_to_yolo
from app.datasets.types import DiceDataset, TaskType
from app.models import DatasetVersion
from app.versions.manifest import dataset_from_manifest, under_dataset
from workers.dataset_cache import CacheCorrupt, FolderCache, Pinned, fetch_all, get_dataset_cache
from workers.weights_cache import file_sha256

FILES_LISTING = "files.json"  # written last: a stored conversion without it is unfinished
BUNDLE = "files.tar.gz"  # the conversion's own files (labels, data.yaml)


class VersionUnavailable(RuntimeError):
    pass


class DatasetMissing(RuntimeError):
    """The folder a job names is not there: on this host (a folder outside storage, or local storage),
    or in the bucket."""


@dataclass
class Materialized:
    """The local folder a trainer reads, held (not evictable) until `release`, and what it took."""

    path: Path
    origin: str  # "in place" (local storage), "cache" (nothing downloaded), "storage", "converted"
    files: int = 0  # downloaded
    bytes: int = 0
    seconds: float = 0.0
    pin: Pinned | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.pin is not None:
            self.pin.close()

    def describe(self) -> str:
        if self.origin == "in place":
            return "dataset read in place"
        if self.origin == "cache":
            return "dataset read from this host's cache: nothing downloaded"
        verb = "downloaded and converted" if self.origin == "converted" else "downloaded"
        return f"dataset {verb}: {self.files} files, {self.bytes / 2**20:.1f} MiB in {self.seconds:.1f} s"


@dataclass(frozen=True)
class _Version:
    id: int
    manifest_key: str
    manifest_sha256: str
    dataset_prefix: str  # the images' keys start here (`source/...` and `generated/...`)
    yolo_key: str  # where the conversion of this task lives in storage


def _version(db: Database, version_id: int, task: TaskType) -> _Version:
    with db.session() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None or version.manifest_key is None or version.manifest_sha256 is None:
            raise VersionUnavailable(f"dataset version {version_id} has no manifest")
        yolo = cache_dir(Path(version.storage_prefix) / "yolo", task, version.manifest_sha256)
        return _Version(
            version.id,
            version.manifest_key,
            version.manifest_sha256,
            version.dataset.storage_prefix,
            yolo.as_posix(),
        )


def _checked_manifest(storage: Storage, version: _Version) -> dict[str, Any]:
    data = storage.get_bytes(version.manifest_key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != version.manifest_sha256:
        raise VersionUnavailable(
            f"the manifest of version {version.id} has sha256 {actual}, recorded {version.manifest_sha256}: "
            "it changed after freezing"
        )
    manifest: dict[str, Any] = json.loads(data)
    return manifest


def materialize_version(
    db: Database, version_id: int, task_type: str, storage: Storage, cache: FolderCache | None = None
) -> Materialized:
    """The folder (with data.yaml, or the ImageFolder layout) to train `task_type` from the version."""
    task = TaskType(task_type)
    version = _version(db, version_id, task)
    if isinstance(storage, LocalStorage):

        def load() -> DiceDataset:
            manifest = _checked_manifest(storage, version)
            return dataset_from_manifest(manifest, storage.path(f"{version.dataset_prefix}/source"))

        folder = convert_cached(load, task, storage.path(version.yolo_key).parent, version.manifest_sha256)
        return Materialized(folder, "in place")
    key = f"version-{version.manifest_sha256}-{task.value}-c{CONVERTER_VERSION}"
    tally = _Tally()
    pin = (cache or get_dataset_cache()).open(
        key, lambda folder: _fill_version(storage, version, task, folder, tally)
    )
    return tally.result(pin)


def materialize_folder(raw: str, storage: Storage, cache: FolderCache | None = None) -> Materialized:
    """A `dataset_path`: an absolute folder (an import root on this host) is read in place, as is a
    storage key when storage is this host's folder; a key in S3 is cached by its listing's hash."""
    if Path(raw).is_absolute():
        # With S3 the API accepts such a folder without seeing it (app/training/dataset_check.py): it names
        # a folder of the workers' hosts, and this is the first host that looks.
        if not Path(raw).is_dir():
            raise DatasetMissing(
                f"dataset folder {raw!r} does not exist on this host (a dataset_path outside storage is "
                "read on the host of the worker that runs the job)"
            )
        return Materialized(Path(raw), "in place")
    if isinstance(storage, LocalStorage):
        return Materialized(storage.path(raw), "in place")
    listing = storage.listing(raw)
    if not listing:
        raise DatasetMissing(f"storage has no folder {raw!r}")
    digest = hashlib.sha256("\n".join(f"{i.key}\t{i.size}\t{i.tag}" for i in listing).encode()).hexdigest()
    start = len(raw.rstrip("/")) + 1
    # A key ending in `/` is an empty folder object (what an S3 console's "Create folder" makes), no file.
    folders = [item.key[start:] for item in listing if item.key.endswith("/")]
    items = [(item.key[start:], None) for item in listing if not item.key.endswith("/")]
    tally = _Tally()

    def fill(folder: Path) -> Mapping[str, str]:
        for rel in folders:
            (folder / rel).mkdir(parents=True, exist_ok=True)
        return tally.fetch(storage, folder, items, lambda rel: f"{raw.rstrip('/')}/{rel}")

    return tally.result((cache or get_dataset_cache()).open(f"folder-{digest}", fill))


class _Tally:
    """Downloads into a cache entry, counted for the job's log."""

    def __init__(self) -> None:
        self.origin = "cache"
        self.files = self.bytes = 0
        self.started = time.monotonic()

    def fetch(
        self,
        storage: Storage,
        folder: Path,
        items: Iterable[tuple[str, str | None]],
        key_of: Callable[[str], str],
    ) -> dict[str, str]:
        """Download what `folder` lacks of `items` (relative path, sha256 or None), in parallel, each
        checked against its sha256; the checksums of what was fetched."""
        return self.collect(
            folder, items, lambda rel, target: storage.get_file(key_of(rel), target), TRANSFER_THREADS
        )

    def collect(
        self,
        folder: Path,
        items: Iterable[tuple[str, str | None]],
        fetch_one: Callable[[str, Path], object],
        workers: int = 1,
    ) -> dict[str, str]:
        """As `fetch`, with `fetch_one(rel, target)` writing each file (`fetch_all`)."""
        fetched = fetch_all(folder, items, fetch_one, workers)
        self.files += len(fetched)
        self.bytes += sum((folder / rel).stat().st_size for rel in fetched)
        if self.origin == "cache":
            self.origin = "storage"
        return fetched

    def result(self, pin: Pinned) -> Materialized:
        if not pin.filled:
            return Materialized(pin.path, "cache", pin=pin)
        return Materialized(
            pin.path, self.origin, self.files, self.bytes, time.monotonic() - self.started, pin
        )


def _fill_version(
    storage: Storage, version: _Version, task: TaskType, folder: Path, tally: _Tally
) -> Mapping[str, str]:
    """Fill (or repair) a cache entry: from the stored conversion when one exists, else convert here."""
    try:
        stored = json.loads(storage.get_bytes(f"{version.yolo_key}/{FILES_LISTING}"))
    except Exception:
        stored = None
    if stored is None or "bundle" not in stored:  # none yet, or stored before conversions had an archive
        _convert_here(storage, version, task, folder, tally)
        tally.origin = "converted"
        return {}
    for rel in stored.get("folders", []):  # a classification class may have no image in a split
        (folder / rel).mkdir(parents=True, exist_ok=True)
    images: dict[str, dict[str, str]] = stored["images"]
    items = [(rel, entry["sha256"]) for rel, entry in images.items()]
    fetched = tally.fetch(storage, folder, items, lambda rel: images[rel]["key"])
    return fetched | _unbundle(storage, version, folder, stored["files"], stored["bundle"], tally)


def _unbundle(
    storage: Storage, version: _Version, folder: Path, files: dict[str, str], sha256: str, tally: _Tally
) -> dict[str, str]:
    """The conversion's own files that `folder` lacks, from its archive (checked against `sha256`), each
    checked against its own sha256 in `files`. Paths come from the listing, never from the archive."""
    scratch = folder / ".bundle"
    try:
        archive = storage.get_file(f"{version.yolo_key}/{BUNDLE}", scratch / BUNDLE)
        actual = file_sha256(archive)
        if actual != sha256:
            raise CacheCorrupt(f"the stored conversion's {BUNDLE} has sha256 {actual}, expected {sha256}")
        unpacked: dict[str, Path] = {}
        with tarfile.open(archive, "r:gz") as tar:
            for number, member in enumerate(tar):
                source = tar.extractfile(member) if member.name in files else None
                if source is not None:
                    with source, (scratch / str(number)).open("wb") as out:
                        shutil.copyfileobj(source, out)
                    unpacked[member.name] = scratch / str(number)

        def take(rel: str, target: Path) -> None:
            if rel not in unpacked:
                raise CacheCorrupt(f"{rel} is not in the stored conversion's {BUNDLE}")
            unpacked[rel].replace(target)

        return tally.collect(folder, files.items(), take)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _convert_here(storage: Storage, version: _Version, task: TaskType, folder: Path, tally: _Tally) -> None:
    """Download the version's images, convert them into `folder`, store the conversion back."""
    manifest = _checked_manifest(storage, version)
    for child in folder.iterdir():  # a repair converts again from scratch
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    dice = folder / ".dice"
    wanted = {i["path"] for i in manifest["tasks"][task.value]["images"]}
    items = [(under_dataset(i), i["sha256"]) for i in manifest["images"] if i["path"] in wanted]
    try:
        tally.fetch(storage, dice, items, lambda rel: f"{version.dataset_prefix}/{rel}")
        built = folder / ".build"
        # The converter hard-links the images from `dice`: same file system, no second copy.
        convert_to_yolo(dataset_from_manifest(manifest, dice / "source"), task, built)
        for child in built.iterdir():
            child.rename(folder / child.name)
        built.rmdir()
    finally:
        shutil.rmtree(dice, ignore_errors=True)
    _store_back(storage, version, manifest, task, folder)


def _store_back(
    storage: Storage, version: _Version, manifest: dict[str, Any], task: TaskType, folder: Path
) -> None:
    """Labels and data.yaml (without this host's `path:`) in one archive under the version's yolo key; the
    images are named by their own keys in `files.json`, written last."""
    data = yaml.safe_load((folder / "data.yaml").read_text(encoding="utf-8"))
    data.pop("path", None)  # the data.yaml's folder, wherever a host puts it (app/training/data_yaml.py)
    (folder / "data.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    by_name = {}
    for image in manifest["images"]:
        key = f"{version.dataset_prefix}/{under_dataset(image)}"
        by_name[(image["split"], image["file_name"])] = (key, image["sha256"])
    images, files, folders = {}, {}, []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        located = _image_key(rel, task, by_name)
        if path.is_dir():
            folders.append(rel)
        elif located is not None:
            images[rel] = {"key": located[0], "sha256": located[1]}
        else:
            files[rel] = file_sha256(path)
    bundle = folder / f".{BUNDLE}"
    try:
        with tarfile.open(bundle, "w:gz") as tar:
            for rel in files:
                tar.add(folder / rel, arcname=rel, recursive=False)
        storage.put_file(f"{version.yolo_key}/{BUNDLE}", bundle)
        listing = {
            "converter_version": CONVERTER_VERSION,
            "images": images,
            "files": files,
            "bundle": file_sha256(bundle),
            "folders": folders,
        }
    finally:
        bundle.unlink(missing_ok=True)
    storage.put_bytes(f"{version.yolo_key}/{FILES_LISTING}", json.dumps(listing, sort_keys=True).encode())


def _image_key(
    rel: str, task: TaskType, by_name: dict[tuple[str, str], tuple[str, str]]
) -> tuple[str, str] | None:
    """The storage key and sha256 of the image at `rel` in the YOLO layout, or None for a label/yaml.
    A file name may have folders of its own (`cam0/frame_1.jpg`); a class name has none (dice_parse)."""
    parts = rel.split("/")
    if len(parts) < 3:
        return None
    if task is TaskType.CLASSIFICATION:  # <split>/<class>/<file name>
        return by_name.get((parts[0], "/".join(parts[2:])))
    if parts[0] == "images":  # images/<split>/<file name>
        return by_name.get((parts[1], "/".join(parts[2:])))
    return None
