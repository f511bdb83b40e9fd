"""File helpers shared by checkpoints and indexes: atomic writes, digests, and stamps that check a
file is the one a digest was taken of without reading it again."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Files smaller than this are always hashed (milliseconds); larger ones are checked by their stamp.
HASH_BELOW = 32 << 20


def file_stamp(path: Path) -> dict[str, int]:
    """Size, inode and modification time (ns) of a file: what ``same_file`` compares before hashing."""
    stat = path.stat()
    return {"size": stat.st_size, "inode": stat.st_ino, "mtime_ns": stat.st_mtime_ns}


def same_file(path: Path, sha256: str | None, stamp: dict[str, int] | None) -> bool:
    """Whether ``path`` is the file whose digest was ``sha256``. A large file (a 200 MB checkpoint,
    the vectors of a big catalog) with the recorded size, inode and modification time is taken as
    unchanged without being read: every writer here replaces files (a new inode and time). An edit
    in place that keeps the size within the clock's tick would go unnoticed; small files, or no
    stamp recorded, are always hashed."""
    if stamp is not None and stamp.get("size", 0) >= HASH_BELOW and file_stamp(path) == stamp:
        return True
    return file_sha256(path) == sha256


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix: numpy appends ``.npy`` otherwise) to write in
    the block; renamed over ``path`` when the block succeeds, removed when it fails."""
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` normalised without following links, or None when it is not under ``root``
    (what a catalog may name, and what the service may serve)."""
    located = Path(os.path.normpath(root / relative))
    return located if located.is_relative_to(root) else None
