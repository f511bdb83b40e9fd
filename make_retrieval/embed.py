"""Encoding the catalog and queries into index vectors, in batches with a progress bar; a large
catalog in shards, spread over ``torchrun`` ranks and resumable shard by shard; and the stored form
of each catalog product (``StoredProduct``) that goes into an index beside its vector."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from make_retrieval.config import SHARD_SIZE
from make_retrieval.data.batches import ImageInputs
from make_retrieval.data.catalog import Catalog
from make_retrieval.distributed import Distributed
from make_retrieval.files import replacing
from make_retrieval.index.store import StoredProduct, json_safe
from make_retrieval.model.image_cache import image_inputs
from make_retrieval.model.make import Embedded, MAKEModel


class _Products(torch.utils.data.Dataset):
    """Product i as (title, image input, has_image): lets DataLoader workers decode images."""

    def __init__(self, catalog: Catalog, images: ImageInputs):
        self.catalog, self.images = catalog, images

    def __len__(self) -> int:
        return len(self.catalog)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, bool]:
        return self.catalog.titles[i], self.images(i), self.catalog.images[i] is not None


def _collate(items: list[tuple[str, torch.Tensor, bool]]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    return [t for t, _, _ in items], torch.stack([p for _, p, _ in items]), torch.tensor([h for _, _, h in items])


def stack_outputs(outputs: Iterable[Embedded]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate batch outputs into (vectors float32, weights float32) arrays."""
    vectors, weights = [], []
    for out in outputs:
        vectors.append(out.vectors.float().cpu().numpy())
        weights.append(out.weights.float().cpu().numpy())
    return np.concatenate(vectors), np.concatenate(weights)


@torch.no_grad()
def embed_products(
    model: MAKEModel,
    catalog: Catalog,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = True,
    positions: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index vectors (N, D) float32 and modality weights (N, M) of every product (or of catalog
    ``positions``), in catalog order; images are decoded in ``num_workers`` processes. A frozen image
    tower reads its cached features: only pictures never seen are run through the backbone."""
    model.eval()
    device = next(model.parameters()).device
    products: torch.utils.data.Dataset = _Products(catalog, image_inputs(model, catalog, positions, progress))
    if positions is not None:
        products = Subset(products, positions)
    loader = DataLoader(products, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    batches = tqdm(loader, desc="embed products", disable=not progress, unit="batch")
    return stack_outputs(
        model.encode_products(titles, images.to(device), has_image.to(device)) for titles, images, has_image in batches
    )


@dataclass(frozen=True)
class ShardFile:
    """One shard of the catalog on disk: its file, the catalog positions it covers, and the key (model
    and products) it must have been made for."""

    path: Path
    positions: range
    key: str

    def read(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The shard's (vectors, weights) if its file exists, reads, and was made for ``key``."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path) as shard:
                return (shard["vectors"], shard["weights"]) if str(shard["key"]) == self.key else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # truncated or foreign: redo it
            return None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """``read``, for a shard that every rank has finished: a missing or stale file is an error."""
        part = self.read()
        if part is None:
            raise RuntimeError(f"{self.path}: shard missing or stale after every rank finished")
        return part


def embed_catalog(
    model: MAKEModel,
    catalog: Catalog,
    shard_dir: Path,
    model_key: str,
    context: Distributed,
    shard_size: int = SHARD_SIZE,
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = True,
    sink: Callable[[range, np.ndarray, np.ndarray], None] | None = None,
) -> list[ShardFile] | None:
    """``embed_products`` in shards of ``shard_size`` products: rank r of N embeds shards r, r+N, ...
    and writes each to ``shard_dir`` atomically. A shard file already there for the same model
    (``model_key``: checkpoint and config digests) and the same products is kept, so a killed job
    reruns only what is missing. Once every rank is done, rank 0 gets every shard in catalog order
    (read them one at a time with ``ShardFile.load``: nothing is merged in memory here); the other
    ranks get None. With ``sink``, every rank also hands each of its shards (positions, vectors,
    weights) to it as it finishes."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    count = -(-len(catalog) // shard_size)
    shards = [_shard(catalog, shard_dir, shard, shard_size, model_key) for shard in range(count)]
    for shard in shards[context.rank :: context.world_size]:
        part = shard.read()
        if part is None:
            shown = progress and context.is_main
            part = embed_products(model, catalog, batch_size, num_workers, shown, shard.positions)
            with replacing(shard.path) as temporary, temporary.open("wb") as handle:
                np.savez(handle, vectors=part[0], weights=part[1], key=np.array(shard.key))
        if sink is not None:
            sink(shard.positions, *part)
    context.barrier()
    return shards if context.is_main else None


def _shard(catalog: Catalog, shard_dir: Path, shard: int, size: int, model_key: str) -> ShardFile:
    """Shard ``shard``'s file, catalog positions and key: the model's key plus a digest of each
    product's id, title and image path (an image replaced under the same path is not noticed)."""
    positions = range(shard * size, min((shard + 1) * size, len(catalog)))
    digest = hashlib.sha256()
    for i in positions:
        digest.update(f"{catalog.product_ids[i]}\t{catalog.titles[i]}\t{catalog.images[i]}\n".encode())
    return ShardFile(shard_dir / f"shard-{shard:05d}.npz", positions, f"{model_key}:{digest.hexdigest()}")


def relative_image(catalog: Catalog, i: int) -> str | None:
    """Product ``i``'s image path relative to the catalog folder (what the index stores)."""
    image = catalog.images[i]
    if image is None:
        return None
    return image.relative_to(catalog.root).as_posix() if catalog.root is not None else image.as_posix()


def stored_fields(catalog: Catalog, i: int) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """Product ``i``'s stored fields as ``StoredProduct.fields`` gives them."""
    return catalog.titles[i], catalog.categories[i], relative_image(catalog, i), json_safe(catalog.metadata[i])


def stored_products(
    catalog: Catalog, weights: np.ndarray, modalities: Sequence[str], positions: Sequence[int] | None = None
) -> list[StoredProduct]:
    """Stored form of the catalog products at ``positions`` (default all); ``weights`` has one row
    per position."""
    positions = range(len(catalog)) if positions is None else positions
    return [
        StoredProduct(
            catalog.product_ids[i],
            catalog.titles[i],
            catalog.categories[i],
            relative_image(catalog, i),
            dict(zip(modalities, weights[row].tolist(), strict=True)),
            catalog.metadata[i],
        )
        for row, i in enumerate(positions)
    ]


@torch.no_grad()
def embed_queries(model: MAKEModel, queries: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Query vectors (Q, D) float32 and per-query modality weights a(q) (Q, M)."""
    model.eval()
    starts = range(0, len(queries), batch_size)
    return stack_outputs(model.encode_queries(list(queries[s : s + batch_size])) for s in starts)
