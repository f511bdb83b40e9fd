"""File stamps: a large unchanged file is not hashed again; a replaced one is, and is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from make_retrieval import files
from make_retrieval.files import file_sha256, file_stamp, same_file


def test_a_large_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 4096)
    digest, stamp = file_sha256(path), file_stamp(path)
    monkeypatch.setattr(files, "HASH_BELOW", 1024)  # 4 KB counts as large here
    monkeypatch.setattr(files, "file_sha256", lambda _: pytest.fail("an unchanged large file was hashed"))
    assert same_file(path, digest, stamp)
    monkeypatch.undo()
    monkeypatch.setattr(files, "HASH_BELOW", 1024)
    replaced = tmp_path / "new.bin"
    replaced.write_bytes(b"y" * 4096)
    replaced.replace(path)  # what every writer here does: same size, new inode and time
    assert file_stamp(path) != stamp and not same_file(path, digest, stamp)
    assert same_file(path, file_sha256(path), None), "no stamp recorded (older manifests): the digest decides"


def test_small_files_are_always_hashed(tmp_path: Path) -> None:
    path = tmp_path / "small.npy"
    np.save(path, np.zeros(4))
    digest, stamp = file_sha256(path), file_stamp(path)
    with path.open("r+b") as handle:  # an edit in place that keeps size (and maybe the clock tick)
        handle.seek(-1, 2)
        handle.write(b"\x01")
    assert not same_file(path, digest, stamp)
