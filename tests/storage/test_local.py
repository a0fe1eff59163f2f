from pathlib import Path

import pytest

from app.core.storage import LocalStorage, UnsafeKey


def test_put_file_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    source = tmp_path / "w.pt"
    source.write_bytes(b"x" * 10_000)
    assert storage.put_file("projects/p/model/training/r/weights/best.pt", source) == 10_000
    folder = storage.path("projects/p/model/training/r/weights")
    assert [p.name for p in folder.iterdir()] == ["best.pt"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("a/b.txt", b"old")
    with pytest.raises(FileNotFoundError):
        storage.put_file("a/b.txt", tmp_path / "missing")
    assert storage.path("a/b.txt").read_bytes() == b"old"
    assert [p.name for p in storage.path("a").iterdir()] == ["b.txt"]


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a/./b", "", "a\\b"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeKey):
        LocalStorage(tmp_path).path(key)
