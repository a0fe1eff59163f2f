"""A version's conversion stored back to S3 (workers/datasets.py): the first host converts and stores it,
any other host fetches it into its own cache, checked file by file, and converts nothing."""

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.db import Database
from app.core.storage import S3Storage, get_storage
from app.dataset_registry.service import register_from_zip
from app.projects.schemas import ProjectCreate
from app.projects.service import create_project
from app.versions.schemas import VersionCreate
from app.versions.service import create_version
from tests.conftest import clear_caches
from tests.factories import dice_zip
from workers.dataset_cache import CacheCorrupt, FolderCache
from workers.datasets import BUNDLE, FILES_LISTING, Materialized, materialize_version

pytestmark = pytest.mark.integration


@pytest.fixture
def version_id(db: Database, s3_env: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A version frozen by the API with S3 storage (its images published to the bucket), the images in a
    folder of their split (`cam0/1.png`), as cameras' frames often are."""
    monkeypatch.setenv("TRAINYARD_STORAGE", "s3")
    monkeypatch.setenv("TRAINYARD_S3_BUCKET", s3_env)
    monkeypatch.setenv("TRAINYARD_S3_ENDPOINT_URL", s3_endpoint)
    clear_caches()
    with db.session() as session:
        project_id = create_project(session, ProjectCreate(name="demo")).id
        register_from_zip(session, project_id, "shapes", None, io.BytesIO(dice_zip(folder="cam0/")))
    version, _ = create_version(db, project_id, VersionCreate())
    yield version.id
    clear_caches()


def on_host(db: Database, version_id: int, cache: Path) -> Materialized:
    return materialize_version(db, version_id, "detection", get_storage(), FolderCache(cache, 2**30))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def stored() -> dict[str, str]:
    """{path inside it: key} of the stored conversion (the version's `yolo/...` folder in the bucket)."""
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    found = [item.key for item in storage.listing("projects") if "/yolo/" in item.key]
    return {key.split("/yolo/", 1)[1].split("/", 1)[1]: key for key in found}


def test_a_second_host_fetches_the_stored_conversion_and_converts_nothing(
    db: Database, version_id: int, tmp_path: Path
) -> None:
    first = on_host(db, version_id, tmp_path / "host-1")
    second = on_host(db, version_id, tmp_path / "host-2")
    assert (first.origin, second.origin) == ("converted", "storage")
    assert tree(second.path) == tree(first.path)
    # The labels, data.yaml and the converter's marker travel in one archive, not as an object each.
    assert sorted(stored()) == sorted([BUNDLE, FILES_LISTING])
    assert second.files == 16 + 16 + 2


def test_the_stored_conversion_names_each_image_by_its_own_key_and_holds_no_copy(
    db: Database, version_id: int, tmp_path: Path
) -> None:
    first = on_host(db, version_id, tmp_path / "host-1")
    images = sorted(p.relative_to(first.path).as_posix() for p in (first.path / "images").rglob("*.png"))
    assert len(images) == 16 and images[0] == "images/train/cam0/1.png"
    listing = json.loads(get_storage().get_bytes(stored()[FILES_LISTING]))
    assert sorted(listing["images"]) == images
    assert listing["images"][images[0]]["key"].endswith("/source/images/train/cam0/1.png")
    assert not [rel for rel in stored() if rel.endswith(".png")]


def test_a_label_missing_from_a_host_s_cache_is_restored_from_the_archive(
    db: Database, version_id: int, tmp_path: Path
) -> None:
    on_host(db, version_id, tmp_path / "host-1").release()
    second = on_host(db, version_id, tmp_path / "host-2")
    second.release()
    label = sorted((second.path / "labels").rglob("*.txt"))[0]
    text = label.read_bytes()
    label.unlink()
    repaired = on_host(db, version_id, tmp_path / "host-2")
    assert (repaired.origin, repaired.files) == ("storage", 1)
    assert label.read_bytes() == text


def test_an_archive_that_does_not_match_the_listing_is_refused(
    db: Database, version_id: int, tmp_path: Path
) -> None:
    on_host(db, version_id, tmp_path / "host-1")
    forged, data = io.BytesIO(), b"names: {}\n"
    with tarfile.open(fileobj=forged, mode="w:gz") as tar:
        info = tarfile.TarInfo("data.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    get_storage().put_bytes(stored()[BUNDLE], forged.getvalue())
    with pytest.raises(CacheCorrupt, match=BUNDLE):
        on_host(db, version_id, tmp_path / "host-2")
    assert not list((tmp_path / "host-2").glob("version-*"))  # nothing of it in the cache


def test_a_conversion_stored_without_an_archive_is_converted_again(
    db: Database, version_id: int, tmp_path: Path
) -> None:
    on_host(db, version_id, tmp_path / "host-1")
    storage = get_storage()
    storage.delete(stored()[BUNDLE])
    storage.put_bytes(stored()[FILES_LISTING], b'{"images": {}, "files": {}, "folders": []}')
    assert on_host(db, version_id, tmp_path / "host-2").origin == "converted"
    assert sorted(stored()) == sorted([BUNDLE, FILES_LISTING])
