"""Release ZIPs: where one extracts to, whether it did, extracting it, and deleting it with its folder.

`zip_path` is a storage key of the form `projects/<project slug>/releases/<name>.zip`; the target
folder derives from the project's slug and the release's slug, never from the raw string. Extraction
itself (refusing traversal, links, bombs; all or nothing) is app.datasets.extract.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.auth import Principal
from app.core.errors import invalid, not_found
from app.core.storage import LocalStorage, get_local_storage, get_storage, publish, unpublish_tree
from app.core.visibility import key_visible
from app.dataset_registry.files import storage_path
from app.datasets.extract import ExtractLimits, check_extracted, extract_release, release_slug
from app.models import Project
from app.releases import schemas

FIELD = "zip_path"
LIMITS = ExtractLimits()


@dataclass(frozen=True)
class Release:
    key: str
    zip_file: Path
    slug: str
    target_key: str
    target: Path


def resolve(session: Session, zip_path: str, principal: Principal | None = None) -> Release:
    """Check the key's shape and project (one the API key covers); 422/404 otherwise."""
    storage = get_local_storage()
    zip_file = storage_path(storage, zip_path, FIELD)
    parts = zip_path.split("/")
    if (
        len(parts) != 4
        or parts[0] != "projects"
        or parts[2] != "releases"
        or not parts[3].lower().endswith(".zip")
    ):
        raise invalid(FIELD, "must be projects/<project>/releases/<name>.zip")
    project = session.scalar(select(Project).where(Project.slug == parts[1]))
    if project is None or not key_visible(session, principal, zip_path):
        raise not_found("release ZIP", zip_path)  # the words of a missing ZIP: nothing said about it
    slug = release_slug(parts[3])
    target_key = f"projects/{project.slug}/training_data/{slug}"
    return Release(zip_path, zip_file, slug, target_key, storage.path(target_key))


def _fetch(release: Release) -> None:
    """With S3 storage, the ZIP is in the bucket: bring it (again, if it changed) to the local folder,
    where it is checked and extracted; nothing to do when the backend is that folder."""
    storage = get_storage()
    if isinstance(storage, LocalStorage) and storage.root == get_local_storage().root:
        return
    if not storage.exists(release.key):
        release.zip_file.unlink(missing_ok=True)
        return
    if not release.zip_file.is_file() or release.zip_file.stat().st_size != storage.size(release.key):
        storage.get_file(release.key, release.zip_file)


def status(session: Session, zip_path: str, principal: Principal | None = None) -> schemas.ExtractionRead:
    release = resolve(session, zip_path, principal)
    _fetch(release)
    if not release.zip_file.is_file():
        raise not_found("release ZIP", zip_path)
    found = check_extracted(release.zip_file, release.target)
    return _read(release, found.extracted, found.up_to_date, found.files, found.bytes)


def extract(session: Session, zip_path: str, principal: Principal | None = None) -> schemas.ExtractionRead:
    """Extract the release; an up-to-date extraction is left as is, a stale one is replaced."""
    release = resolve(session, zip_path, principal)
    _fetch(release)
    found = check_extracted(release.zip_file, release.target) if release.zip_file.is_file() else None
    if found is not None and found.extracted and found.up_to_date:
        return _read(release, True, True, found.files, found.bytes)
    if found is not None and found.extracted:
        # The ZIP changed since: extract the new one beside the old, then swap.
        fresh = release.target.with_name(f".{release.slug}.new")
        shutil.rmtree(fresh, ignore_errors=True)
        extract_release(release.zip_file, fresh, LIMITS)
        old = release.target.with_name(f".{release.slug}.old")
        release.target.rename(old)
        fresh.rename(release.target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        extract_release(release.zip_file, release.target, LIMITS)
    # Workers elsewhere read the extracted folder through the backend: stale objects go too.
    local = get_local_storage()
    keep = {item.key for item in local.listing(release.target_key)}
    stale = [item.key for item in get_storage().listing(release.target_key) if item.key not in keep]
    publish(local, [*keep, *stale])
    done = check_extracted(release.zip_file, release.target)
    return _read(release, True, done.up_to_date, done.files, done.bytes)


def delete(session: Session, zip_path: str, principal: Principal | None = None) -> None:
    """Delete the release ZIP and its extracted folder (training outputs are elsewhere and stay)."""
    release = resolve(session, zip_path, principal)
    _fetch(release)
    if not release.zip_file.is_file() and not release.target.exists():
        raise not_found("release ZIP", zip_path)
    shutil.rmtree(release.target, ignore_errors=True)
    release.zip_file.unlink(missing_ok=True)
    local = get_local_storage()
    unpublish_tree(local, release.target_key)
    publish(local, [release.key])  # gone locally: gone from the backend


def _read(
    release: Release, extracted: bool, up_to_date: bool, files: int, size: int
) -> schemas.ExtractionRead:
    return schemas.ExtractionRead(
        zip_path=release.key,
        release_slug=release.slug,
        extracted=extracted,
        up_to_date=up_to_date,
        target_dir=release.target_key,
        files=files,
        bytes=size,
    )
