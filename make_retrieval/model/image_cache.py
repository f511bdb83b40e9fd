"""A frozen image tower's trunk features, computed once per picture and kept on disk.

One folder per (backbone weights, input size), under ``$MAKE_RETRIEVAL_CACHE`` (default
``~/.cache/make-retrieval/image-features``), holding three files:

- ``keys.u64``: one 64-bit BLAKE2b digest of an image file's bytes per row. Content-addressed, so a
  changed picture gets a new row and a renamed one is still a hit. Two different pictures share a
  digest with odds of about n^2 / 2^65, 3e-8 at a million images.
- ``features.f16``: the rows, float16, in the same order.
- ``meta.json``: the backbone's name and the row shape.

Rows are only ever appended, under a file lock, and a key already stored (another process computed
the same picture meanwhile) is not appended twice. Features are written before their keys, and each
append first cuts both files back to the last whole key, so a crash or a short write leaves no key
without its row. Readers memory-map the features file, so memory stays flat whatever the catalog's
size; the lookup holds 8 bytes a key. A process remembers each file's digest with its size and
modification time, so repeated embeddings (each validation) re-read only changed files. Rows of
pictures no longer used are not reclaimed: delete the folder to start afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from make_retrieval.data.batches import ImageInputs, Pixels
from make_retrieval.data.catalog import Catalog, load_image
from make_retrieval.files import replacing
from make_retrieval.model.image import ImageEncoder
from make_retrieval.model.make import MAKEModel

CACHE_ENV = "MAKE_RETRIEVAL_CACHE"


def cache_root() -> Path:
    """Where feature caches live: ``$MAKE_RETRIEVAL_CACHE`` or ``~/.cache/make-retrieval``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "make-retrieval") / "image-features"


#: path -> (size, modification time, digest): files already read by this process.
_DIGESTS: dict[str, tuple[int, int, int]] = {}


def content_key(path: Path) -> int:
    """The cache key of an image file: a 64-bit digest of its bytes (re-read only if the file's size
    or modification time changed since this process last read it)."""
    stat = path.stat()
    known = _DIGESTS.get(str(path))
    if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
        return known[2]
    key = int.from_bytes(hashlib.blake2b(path.read_bytes(), digest_size=8).digest(), "little")
    _DIGESTS[str(path)] = (stat.st_size, stat.st_mtime_ns, key)
    return key


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the cache folder's lock (writers in other processes and ranks wait)."""
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def tower_key(encoder: ImageEncoder) -> str:
    """A folder name that changes with the backbone's weights and input size."""
    digest = hashlib.sha256(f"{encoder.image_size}".encode())
    for name, tensor in sorted(encoder.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in encoder.name)[-40:]
    return f"{safe}-{encoder.image_size}px-{digest.hexdigest()[:16]}"


@dataclass
class CacheCounts:
    """How a ``FeatureCache.rows`` call was served."""

    hits: int = 0
    computed: int = 0


class FeatureCache:
    """The content-addressed, append-only feature store of one frozen image tower."""

    def __init__(self, folder: Path, shape: tuple[int, ...]):
        self.folder, self.shape = folder, shape
        self.row_bytes = int(np.prod(shape)) * 2
        self.counts = CacheCounts()

    @classmethod
    def for_encoder(cls, encoder: ImageEncoder, root: Path | None = None) -> FeatureCache:
        """The cache of ``encoder`` (frozen), created with its row shape on first use."""
        folder = (root or cache_root()) / tower_key(encoder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / "meta.json"
        with _locked(folder):  # two processes starting on an empty cache write it once
            if not meta.is_file():
                device = next(encoder.parameters()).device
                probe = torch.zeros(1, 3, encoder.image_size, encoder.image_size, device=device)
                with torch.no_grad():
                    shape = list(encoder.trunk(probe).shape[1:])
                with replacing(meta) as temporary:
                    temporary.write_text(json.dumps({"backbone": encoder.name, "shape": shape}))
            return cls(folder, tuple(json.loads(meta.read_text())["shape"]))

    def keys(self) -> np.ndarray:
        """The digests of the stored rows, in row order."""
        path = self.folder / "keys.u64"
        return np.fromfile(path, dtype="<u8") if path.is_file() else np.zeros(0, dtype="<u8")

    def rows(
        self, paths: Sequence[Path | None], encoder: ImageEncoder, batch_size: int = 64, progress: bool = True
    ) -> np.ndarray:
        """The row of each image (-1 for None), computing and appending the pictures not stored yet."""
        keys = np.array([0 if p is None else content_key(p) for p in paths], dtype="<u8")
        pictured = np.array([p is not None for p in paths], dtype=bool)
        rows = self._lookup(keys, pictured)
        missing = np.flatnonzero(pictured & (rows < 0))
        # one computation per distinct picture, even when products share a file
        distinct = missing[np.unique(keys[missing], return_index=True)[1]] if len(missing) else missing
        self.counts.hits += int(pictured.sum()) - len(missing)
        self.counts.computed += len(distinct)
        starts = range(0, len(distinct), batch_size)
        for start in tqdm(starts, desc="image features", unit="batch", disable=not progress or not len(distinct)):
            chosen = distinct[start : start + batch_size]
            pixels = torch.stack([load_image(paths[i], encoder.image_size) for i in chosen])  # type: ignore[arg-type]
            device = next(encoder.parameters()).device
            with torch.no_grad():
                features = encoder.trunk(pixels.to(device)).float().cpu().numpy().astype(np.float16)
            self._append(keys[chosen], features)
        return self._lookup(keys, pictured) if len(distinct) else rows

    def _lookup(self, keys: np.ndarray, pictured: np.ndarray) -> np.ndarray:
        """The stored row of each key (-1 where absent or not ``pictured``), by binary search."""
        stored = self.keys()
        rows = np.full(len(keys), -1, dtype=np.int64)
        if not len(stored):
            return rows
        order = np.argsort(stored, kind="stable")
        found = np.searchsorted(stored, keys, sorter=order).clip(max=len(stored) - 1)
        hit = pictured & (stored[order[found]] == keys)
        rows[hit] = order[found[hit]]
        return rows

    def _append(self, keys: np.ndarray, features: np.ndarray) -> None:
        """Rows then keys, under the folder's lock, leaving out keys stored meanwhile; both files are
        first cut back to the last whole key that has its row (a crash's or short write's tail)."""
        with _locked(self.folder):
            keys_path, rows_path = self.folder / "keys.u64", self.folder / "features.f16"
            rows_path.touch()
            count = min(len(self.keys()), rows_path.stat().st_size // self.row_bytes)
            new = ~np.isin(keys, self.keys()[:count])
            with rows_path.open("r+b") as handle:
                handle.truncate(count * self.row_bytes)
                handle.seek(0, os.SEEK_END)
                handle.write(np.ascontiguousarray(features[new], dtype="<f2").tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            with keys_path.open("ab") as handle:
                handle.truncate(count * 8)
                handle.write(keys[new].astype("<u8").tobytes())


class CachedFeatures:
    """``ImageInputs`` of a frozen tower: product i's row of the memory-mapped features (zeros for
    a text-only product). Pickles without its map, so DataLoader workers open their own."""

    def __init__(self, cache: FeatureCache, rows: np.ndarray):
        self.path, self.shape, self.rows = cache.folder / "features.f16", cache.shape, rows
        self.counts = cache.counts
        self._map: np.memmap | None = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_map": None}

    def __call__(self, product: int) -> torch.Tensor:
        row = int(self.rows[product])
        if row < 0:
            return torch.zeros(self.shape)
        if self._map is None or row >= len(self._map):
            self._map = np.memmap(self.path, dtype="<f2", mode="r").reshape(-1, *self.shape)
        return torch.from_numpy(self._map[row].astype(np.float32))


def image_inputs(
    model: MAKEModel, catalog: Catalog, positions: Sequence[int] | None = None, progress: bool = True
) -> ImageInputs:
    """What ``model``'s image tower reads for each product: cached features when the tower is
    frozen (computing those of ``positions``, default all, that are missing), else pixels."""
    encoder = model.image_encoder
    if encoder is None or not encoder.frozen:
        return Pixels(catalog, model.image_size)
    cache = FeatureCache.for_encoder(encoder)
    wanted = range(len(catalog)) if positions is None else positions
    rows = np.full(len(catalog), -1, dtype=np.int64)
    rows[list(wanted)] = cache.rows([catalog.images[i] for i in wanted], encoder, progress=progress)
    return CachedFeatures(cache, rows)
