"""Safe extraction of a release ZIP into `projects/<p>/training_data/<release_slug>/`.

An archive is untrusted input: every entry name is checked before anything is written (no absolute
paths, no `..`, no symlinks or device files, no duplicates), sizes are counted from the bytes actually
decompressed rather than from the headers, and everything lands in a temporary folder that is renamed
into place only when the whole archive passed, so a refused archive leaves nothing behind.
"""

import json
import os
import re
import shutil
import stat
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from app.core.errors import AppError, ErrorCode, FieldError, invalid, invalid_fields, not_found

MARKER_FILE = ".trainyard-release.json"
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
NAME_MAX = 255  # what the file system takes for one name


@dataclass(frozen=True)
class ExtractLimits:
    max_entries: int = 200_000
    max_total_bytes: int = 50 * 1024**3
    # Ordinary images and JSON compress well under 100:1; a bomb's entries are around 1000:1.
    max_ratio: float = 200.0
    # Small files can have silly ratios (a 20 KB run of spaces) without being dangerous.
    ratio_min_bytes: int = 1024**2


@dataclass(frozen=True)
class ExtractionStatus:
    """Whether a release ZIP has been extracted, and whether the ZIP changed since."""

    extracted: bool
    up_to_date: bool
    path: Path
    files: int = 0
    bytes: int = 0


def release_slug(name: str) -> str:
    """A folder name derived from a release's (file) name: lower-case letters, digits, '.', '_', '-'."""
    base = PurePosixPath(name.replace("\\", "/")).name  # only the last component counts
    if base.lower().endswith(".zip"):
        base = base[:-4]
    slug = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFKC", base).lower())
    slug = re.sub(r"-{2,}", "-", slug).strip("-._")[:80].strip("-._")
    if not slug:
        raise invalid("name", f"{name!r} has no letters or digits to name a folder after")
    return slug


def check_extracted(zip_path: Path, dest_dir: Path) -> ExtractionStatus:
    """Is `zip_path` extracted at `dest_dir`? `up_to_date` is false when the ZIP changed since."""
    marker = dest_dir / MARKER_FILE
    if not marker.is_file():
        return ExtractionStatus(extracted=False, up_to_date=False, path=dest_dir)
    try:
        info = json.loads(marker.read_text())
        st = zip_path.stat()
        # Size and mtime, not a hash: this answers a GET, and hashing a multi-GB ZIP per request is too slow.
        same = (st.st_size, st.st_mtime_ns) == (info.get("zip_size"), info.get("zip_mtime_ns"))
    except (OSError, ValueError, AttributeError):
        info, same = {}, False
    return ExtractionStatus(True, same, dest_dir, int(info.get("files", 0)), int(info.get("bytes", 0)))


def extract_release(
    zip_path: Path, dest_dir: Path, limits: ExtractLimits = ExtractLimits(), field: str = "zip_path"
) -> Path:
    """Extract `zip_path` into `dest_dir` (which must not exist yet) or refuse it and leave nothing.
    Errors about the archive as a whole name `field` (what the caller sent), never a server path."""
    if not zip_path.is_file():
        raise not_found("release ZIP", zip_path.name)
    if dest_dir.exists():
        raise AppError(409, ErrorCode.CONFLICT, f"{dest_dir.name} is already extracted")
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:  # its message names no file
        raise invalid(field, f"not a readable ZIP archive ({exc})") from exc
    except OSError as exc:  # its message would name the (temporary) file
        raise invalid(field, "not a readable ZIP archive") from exc
    with archive:
        entries = _checked_entries(archive, limits, field)
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest_dir.parent / f".{dest_dir.name}.extract-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            files, total = _write_entries(archive, entries, tmp, limits)
            st = zip_path.stat()
            marker = {"zip": zip_path.name, "zip_size": st.st_size, "zip_mtime_ns": st.st_mtime_ns}
            (tmp / MARKER_FILE).write_text(json.dumps({**marker, "files": files, "bytes": total}))
            try:
                os.rename(tmp, dest_dir)
            except OSError as exc:
                raise AppError(409, ErrorCode.CONFLICT, f"{dest_dir.name} is already extracted") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest_dir


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "NUL byte in the name"
    if "\\" in name:
        return "backslash in the name (Windows path separators are not allowed)"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    if any(part == ".." for part in name.split("/")):
        return "'..' path component"
    if any(len(part.encode(errors="surrogatepass")) > NAME_MAX for part in name.split("/")):
        return f"a folder or file name longer than {NAME_MAX} bytes"
    # Unix mode bits live in the high 16 bits; many writers set only the permissions (file type 0).
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        return "symbolic link"
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "not a regular file or folder"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    return None


def _checked_entries(archive: zipfile.ZipFile, limits: ExtractLimits, field: str) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise invalid(field, f"{len(infos)} entries; the limit is {limits.max_entries}", status=413)
    errors: list[FieldError] = []
    seen: set[str] = set()
    declared = 0
    for info in infos:
        problem = _entry_problem(info)
        normalized = "/".join(p for p in info.filename.split("/") if p not in ("", "."))
        if problem is None and normalized in seen:
            problem = "duplicate entry"
        if (
            problem is None
            and info.file_size > limits.ratio_min_bytes
            and (info.file_size > limits.max_ratio * max(info.compress_size, 1))
        ):
            problem = f"compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 (zip bomb?)"
        if problem is not None:
            errors.append(FieldError(f"zip:{info.filename}", problem))
        seen.add(normalized)
        declared += info.file_size
    if errors:
        raise invalid_fields(errors[:100])
    if declared > limits.max_total_bytes:
        raise invalid(
            field, f"{declared} bytes uncompressed; the limit is {limits.max_total_bytes}", status=413
        )
    return infos


def _write_entries(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], tmp: Path, limits: ExtractLimits
) -> tuple[int, int]:
    root = tmp.resolve()
    total = files = 0
    for info in entries:
        target = (root / info.filename).resolve()
        if target != root and root not in target.parents:
            raise invalid(f"zip:{info.filename}", "resolves outside the release folder")
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written with default permissions: the archive's mode bits (setuid, world-writable) are ignored.
            with archive.open(info) as src, open(target, "xb") as dst:
                total += _copy_counted(src, dst, info, total, limits)
            files += 1
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise invalid(f"zip:{info.filename}", f"corrupt entry ({exc})") from exc
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise invalid(f"zip:{info.filename}", "collides with another entry of the archive") from exc
    return files, total


def _copy_counted(
    src: IO[bytes], dst: IO[bytes], info: zipfile.ZipInfo, before: int, limits: ExtractLimits
) -> int:
    """Copy one entry, counting what really comes out of the decompressor: headers can lie."""
    written = 0
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        if before + written > limits.max_total_bytes:
            raise invalid(
                f"zip:{info.filename}",
                f"more than {limits.max_total_bytes} bytes uncompressed in total",
                status=413,
            )
        if written > limits.ratio_min_bytes and written > limits.max_ratio * max(info.compress_size, 1):
            raise invalid(f"zip:{info.filename}", f"decompresses beyond {limits.max_ratio:.0f}:1 (zip bomb?)")
        dst.write(chunk)
    return written
