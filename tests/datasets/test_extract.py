"""Release ZIPs: real archives, including hostile ones, each refused with nothing left on disk."""

import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from app.core.errors import AppError
from app.datasets.extract import ExtractLimits, check_extracted, extract_release, release_slug


def make_zip(path: Path, entries: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
    return path


def refused(zip_path: Path, dest: Path, limits: ExtractLimits = ExtractLimits()) -> AppError:
    before = sorted(dest.parent.iterdir()) if dest.parent.exists() else []
    with pytest.raises(AppError) as caught:
        extract_release(zip_path, dest, limits)
    assert not dest.exists()
    after = sorted(dest.parent.iterdir()) if dest.parent.exists() else []
    assert after == before, "a refused archive must leave nothing behind"
    return caught.value


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "projects/p1/training_data/release-1"


def test_a_release_is_extracted_and_recorded(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(
        tmp_path / "release.zip", {"images/train/a.jpg": b"\xff\xd8jpeg", "annotations_detection.json": b"{}"}
    )
    assert not check_extracted(zip_path, dest).extracted

    assert extract_release(zip_path, dest) == dest
    assert (dest / "images/train/a.jpg").read_bytes() == b"\xff\xd8jpeg"
    status = check_extracted(zip_path, dest)
    assert (status.extracted, status.up_to_date, status.files, status.bytes) == (True, True, 2, 8)
    assert [p.name for p in dest.parent.iterdir()] == ["release-1"]  # no temp folder left

    make_zip(zip_path, {"other.txt": b"a newer release under the same name"})
    os.utime(zip_path, ns=(1, 1))
    assert check_extracted(zip_path, dest).up_to_date is False


def test_extracting_twice_is_a_conflict(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {"a.txt": b"a"})
    extract_release(zip_path, dest)

    with pytest.raises(AppError) as caught:
        extract_release(zip_path, dest)
    assert caught.value.status == 409


def test_zip_slip_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {"ok.txt": b"fine", "images/../../evil.txt": b"pwned"})

    error = refused(zip_path, dest)
    assert (error.status, error.errors[0].field, error.errors[0].reason) == (
        422,
        "zip:images/../../evil.txt",
        "'..' path component",
    )
    assert not list(tmp_path.rglob("evil.txt"))


def test_an_absolute_path_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {zipfile.ZipInfo("/tmp/evil.txt"): b"pwned"})
    assert zipfile.ZipFile(zip_path).namelist() == ["/tmp/evil.txt"]

    error = refused(zip_path, dest)
    assert (error.errors[0].field, error.errors[0].reason) == ("zip:/tmp/evil.txt", "absolute path")


def test_a_symlink_entry_is_refused(tmp_path: Path, dest: Path) -> None:
    link = zipfile.ZipInfo("images/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zip_path = make_zip(tmp_path / "r.zip", {"a.txt": b"a", link: b"/etc/passwd"})

    error = refused(zip_path, dest)
    assert (error.errors[0].field, error.errors[0].reason) == ("zip:images/link.jpg", "symbolic link")


def test_duplicate_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {"a.txt": b"a", zipfile.ZipInfo("./a.txt"): b"b"})

    assert refused(zip_path, dest).errors[0].reason == "duplicate entry"


def test_too_many_entries_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {f"f{i}.txt": b"x" for i in range(11)})

    error = refused(zip_path, dest, ExtractLimits(max_entries=10))
    assert (error.status, error.errors[0].reason) == (413, "11 entries; the limit is 10")


def test_too_many_bytes_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {"a.bin": os.urandom(600), "b.bin": os.urandom(600)})

    error = refused(zip_path, dest, ExtractLimits(max_total_bytes=1000))
    assert error.status == 413


def test_a_zip_bomb_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "bomb.zip", {"annotations_detection.json": b"\0" * (20 * 1024**2)})
    assert zip_path.stat().st_size < 100_000

    error = refused(zip_path, dest)
    assert error.errors[0].field == "zip:annotations_detection.json"
    assert "(zip bomb?)" in error.errors[0].reason


def lie_about_size(zip_path: Path, size: int) -> None:
    """Rewrite the uncompressed size in the local and central headers of a one-entry archive."""
    data = bytearray(zip_path.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    zip_path.write_bytes(bytes(data))


def test_a_bomb_with_a_lying_header_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "bomb.zip", {"big.bin": b"\0" * (20 * 1024**2)})
    compressed = zipfile.ZipFile(zip_path).infolist()[0].compress_size
    lie_about_size(zip_path, compressed * 2)  # a harmless-looking 2:1 entry
    assert zipfile.ZipFile(zip_path).infolist()[0].file_size == compressed * 2

    error = refused(zip_path, dest)
    assert error.errors[0].field == "zip:big.bin"
    assert error.errors[0].reason.startswith("corrupt entry")


def test_entries_that_collide_are_refused(tmp_path: Path, dest: Path) -> None:
    zip_path = make_zip(tmp_path / "r.zip", {"a": b"file", "a/b.txt": b"under a file"})

    assert refused(zip_path, dest).errors[0].reason == "collides with another entry of the archive"


def test_not_a_zip_and_no_zip(tmp_path: Path, dest: Path) -> None:
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")

    assert refused(tmp_path / "fake.zip", dest).status == 422
    assert refused(tmp_path / "missing.zip", dest).status == 404


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("My Release v2.zip", "my-release-v2"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\Release.ZIP", "release"),
        (".hidden..zip", "hidden"),
        ("데이터 셋 2025.zip", "데이터-셋-2025"),
        ("a" * 200, "a" * 80),
    ],
)
def test_release_slug_is_a_plain_folder_name(name: str, slug: str) -> None:
    assert release_slug(name) == slug


@pytest.mark.parametrize("name", ["..", "/", ".zip", "---", ""])
def test_release_slug_refuses_names_without_content(name: str) -> None:
    with pytest.raises(AppError) as caught:
        release_slug(name)
    assert caught.value.status == 422


def test_device_and_fifo_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    fifo = zipfile.ZipInfo("pipe")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    zip_path = make_zip(tmp_path / "r.zip", {fifo: b""})

    assert refused(zip_path, dest).errors[0].reason == "not a regular file or folder"
