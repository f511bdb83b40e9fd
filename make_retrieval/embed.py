"""Encoding the catalog and queries into index vectors, in batches with a progress bar."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from make_retrieval.data.batches import load_pixels
from make_retrieval.data.catalog import Catalog
from make_retrieval.model.make import Embedded, MAKEModel


class _Products(torch.utils.data.Dataset):
    """Product i as (title, pixels, has_image): lets DataLoader workers decode images."""

    def __init__(self, catalog: Catalog, image_size: int):
        self.catalog, self.image_size = catalog, image_size

    def __len__(self) -> int:
        return len(self.catalog)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, bool]:
        pixels = load_pixels(self.catalog, i, self.image_size)
        return self.catalog.titles[i], pixels, self.catalog.images[i] is not None


def _collate(items: list[tuple[str, torch.Tensor, bool]]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    return [t for t, _, _ in items], torch.stack([p for _, p, _ in items]), torch.tensor([h for _, _, h in items])


def _stack(outputs: Iterable[Embedded]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate batch outputs into (vectors float32, weights float32) arrays."""
    vectors, weights = [], []
    for out in outputs:
        vectors.append(out.vectors.float().numpy())
        weights.append(out.weights.float().numpy())
    return np.concatenate(vectors), np.concatenate(weights)


@torch.no_grad()
def embed_products(
    model: MAKEModel, catalog: Catalog, batch_size: int = 128, num_workers: int = 0, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Index vectors (N, D) float32 and modality weights (N, M) of every product, in catalog order."""
    model.eval()
    loader = DataLoader(
        _Products(catalog, model.image_size),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    batches = tqdm(loader, desc="embed products", disable=not progress, unit="batch")
    return _stack(model.encode_products(titles, pixels, has_image) for titles, pixels, has_image in batches)


@torch.no_grad()
def embed_queries(model: MAKEModel, queries: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Query vectors (Q, D) float32 and per-query modality weights a(q) (Q, M)."""
    model.eval()
    starts = range(0, len(queries), batch_size)
    return _stack(model.encode_queries(list(queries[s : s + batch_size])) for s in starts)
