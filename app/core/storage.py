"""Storage by key (docs/architecture.md): a local folder by default, an S3 bucket in production.

Both backends take the same keys and answer the same calls; a reader sees the old object or the
new one, never a torn one. `TRAINYARD_STORAGE=local|s3` picks the backend.
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from app.core.settings import get_settings

MiB = 1024 * 1024


class UnsafeKey(ValueError):
    pass


# S3 keys are at most 1024 bytes; a local file name at most 255 (NAME_MAX), past which the OS refuses it.
MAX_KEY_BYTES = 1024
MAX_PART_BYTES = 255


def check_key(key: str) -> str:
    """A relative, normalized key: no `..`, no `.`, no leading `/`, no backslash, no NUL, no part longer
    than a file name may be. UnsafeKey's message says which rule the key broke."""
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in {"..", "."} for p in key.split("/"))
    ):
        raise UnsafeKey("must be a path relative to storage, without '..' or '\\'")
    if len(key.encode(errors="surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafeKey(f"longer than {MAX_KEY_BYTES} bytes")
    if any(len(p.encode(errors="surrogatepass")) > MAX_PART_BYTES for p in key.split("/")):
        raise UnsafeKey(f"a folder or file name is longer than {MAX_PART_BYTES} bytes")
    return key


@dataclass(frozen=True)
class Listed:
    """An object found under a prefix: its key, size, and a tag that changes when its content does
    (S3's ETag; size and modification time in a local folder)."""

    key: str
    size: int
    tag: str


class Storage(Protocol):
    """What callers may rely on whatever the backend: no local paths (see get_local_storage)."""

    def put_file(self, key: str, source: Path) -> int: ...
    def put_bytes(self, key: str, data: bytes) -> int: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def get_file(self, key: str, target: Path) -> Path: ...
    def get_bytes(self, key: str) -> bytes: ...
    def listing(self, prefix: str) -> list[Listed]: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file behind a key; a key can never point outside the root."""
        return self.root / check_key(key)

    def put_file(self, key: str, source: Path) -> int:
        """Copy `source` under `key`; readers see the old file or the new one, never a torn one."""
        with source.open("rb") as src:
            return self._write(key, lambda out: shutil.copyfileobj(src, out, MiB))

    def put_bytes(self, key: str, data: bytes) -> int:
        return self._write(key, lambda out: out.write(data))

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except OSError:  # a name too long for the file system names no object
            return False

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def get_file(self, key: str, target: Path) -> Path:
        """Make the object available as a local file (a plain copy for local storage)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(key), target)
        return target

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def listing(self, prefix: str) -> list[Listed]:
        """Every file under the folder `prefix` (hidden temp files of unfinished writes left out)."""
        folder = self.path(prefix)
        found = []
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                found.append(Listed(key, stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}"))
        return found

    def delete(self, key: str) -> None:
        """Remove the object; a key that names none is already deleted."""
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)


class S3Storage:
    """The same keys in a bucket (boto3). Large files go up in parts, several at a time.

    An S3 PUT, and the completion of a multipart upload, replace an object in one step, so readers
    never see a partial object; a failed upload leaves the previous object in place.
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        *,
        client: Any = None,
        multipart_threshold: int = 64 * MiB,
        multipart_chunksize: int = 16 * MiB,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        # S3-compatible stores (MinIO, moto) behind a custom endpoint want path-style addressing.
        # A connection per transfer thread: with fewer, urllib3 drops and reopens connections under load.
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            max_pool_connections=TRANSFER_THREADS,
        )
        self.client = client or boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )

    def put_file(self, key: str, source: Path) -> int:
        size = source.stat().st_size
        if size <= self.transfer.multipart_threshold:  # one PUT, without a transfer manager's set-up
            with source.open("rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=body)
        else:
            self.client.upload_file(str(source), self.bucket, check_key(key), Config=self.transfer)
        return size

    def put_bytes(self, key: str, data: bytes) -> int:
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)
        return len(data)

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return head

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"no object at storage key {key!r}")
        return int(head["ContentLength"])

    def get_file(self, key: str, target: Path) -> Path:
        """Download to `target` through a temp file beside it: a failed download leaves no torn file."""
        check_key(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            # One GET for an object below the multipart threshold: download_file would first HEAD it and
            # set up a transfer manager, which for a small image costs more than the transfer itself.
            with os.fdopen(fd, "wb") as out:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                if response["ContentLength"] <= self.transfer.multipart_threshold:
                    shutil.copyfileobj(response["Body"], out, MiB)
                    large = False
                else:
                    response["Body"].close()
                    large = True
            if large:  # in parts, several at a time
                self.client.download_file(self.bucket, key, tmp, Config=self.transfer)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def get_bytes(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()
        return body

    def listing(self, prefix: str) -> list[Listed]:
        """Every object under the folder `prefix` (a `/` is added: `a/b` does not list `a/bc`)."""
        folder = check_key(prefix).rstrip("/") + "/"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            for item in page.get("Contents", []):
                found.append(Listed(item["Key"], int(item["Size"]), str(item["ETag"]).strip('"')))
        return found

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = [item.key for item in self.listing(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def presigned_url(self, key: str, expires: int = 3600) -> str:
        """A GET URL that works without credentials for `expires` seconds (weights, artifacts)."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=expires
        )
        return url


def get_local_storage() -> LocalStorage:
    """The local storage folder, for code that needs real paths (it does not follow TRAINYARD_STORAGE)."""
    return LocalStorage(get_settings().resolved_storage_root)


# Parallel transfers: S3 latency, not bandwidth, bounds a folder of small images.
TRANSFER_THREADS = 16


def publish(local: LocalStorage, keys: Iterable[str], storage: Storage | None = None) -> None:
    """Make the configured backend hold what the API's local folder holds at `keys` (copied, or deleted
    where the local file is gone), in parallel; nothing to do when the backend is that folder. The API
    builds datasets, versions and extracted releases locally; workers on other hosts read the backend."""
    target = storage or get_storage()
    if isinstance(target, LocalStorage) and target.root == local.root:
        return

    def one(key: str) -> None:
        path = local.path(key)
        if path.is_file():
            target.put_file(key, path)
        else:
            target.delete(key)

    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(one, keys))


def publish_tree(local: LocalStorage, prefix: str, storage: Storage | None = None) -> None:
    """`publish` every file under the folder `prefix`."""
    publish(local, [item.key for item in local.listing(prefix)], storage)


def unpublish_tree(local: LocalStorage, prefix: str, storage: Storage | None = None) -> None:
    """Remove `prefix` from the backend when it is not the local folder itself (which callers clear)."""
    target = storage or get_storage()
    if not (isinstance(target, LocalStorage) and target.root == local.root):
        target.delete_prefix(prefix)


@lru_cache
def get_storage() -> Storage:
    """The configured backend: `TRAINYARD_STORAGE=local` (default) or `s3`."""
    settings = get_settings()
    if settings.storage == "s3":
        if not settings.s3_bucket:
            raise RuntimeError("TRAINYARD_STORAGE=s3 needs TRAINYARD_S3_BUCKET")
        return S3Storage(settings.s3_bucket, settings.s3_endpoint_url)
    return LocalStorage(settings.resolved_storage_root)
