"""The model as a Python user holds it (``make_retrieval.MAKE``), in the manner of sentence-transformers:
load a run or a saved folder, encode queries and products, save a self-contained folder.

    model = MAKE.load("runs/demo")                      # or a folder written by model.save(...)
    queries = model.encode_queries(["black heels"])     # .vectors (N, D) float32, .weights (N, M)
    products = model.encode_products(["Nike Men Black Running Shoes"], [PIL.Image.open("shoe.jpg")])
    scores = queries.vectors @ products.vectors.T       # the score an index ranks by
    model.save("my-model")                              # config, safetensors, tokenizers: no outside path

Images are PIL images, file paths or None (a text-only product). A frozen image tower reads
features that ``embed`` caches on disk per image file; here a file path goes through the same cache
and an in-memory picture through the backbone with the same float16 rounding, so both give the
vectors that ``embed`` indexes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from make_retrieval.config import Config
from make_retrieval.data.catalog import image_tensor, load_image
from make_retrieval.embed import stack_outputs
from make_retrieval.model.checkpoint import load_model, save_model
from make_retrieval.model.image import ImageEncoder
from make_retrieval.model.image_cache import CachedFeatures, FeatureCache
from make_retrieval.model.make import Embedded, MAKEModel

#: What ``encode_products`` takes for a product's picture.
ImageLike = Image.Image | str | Path | None
#: Batches from which ``progress=None`` shows a progress bar.
PROGRESS_FROM = 10


@dataclass
class Embeddings:
    """Index vectors and Modal Adaptation weights of N queries or products; unpacks as
    ``vectors, weights = model.encode_queries(...)``."""

    #: (N, D) float32, unit norm: the inner product of a query's and a product's is their score.
    vectors: np.ndarray
    #: (N, M) float32, rows sum to 1: how much each of ``modalities`` counts (a(q) or b(p)).
    weights: np.ndarray
    modalities: tuple[str, ...]

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.vectors
        yield self.weights

    def __len__(self) -> int:
        return len(self.vectors)

    def weights_of(self, i: int) -> dict[str, float]:
        """Row ``i``'s weights by modality name."""
        return dict(zip(self.modalities, self.weights[i].tolist(), strict=True))


class MAKE:
    """A trained MAKE model: query tower, product towers, fusion and Modal Adaptation."""

    def __init__(self, model: MAKEModel, config: Config, source: Path | None = None):
        self.model, self.config, self.source = model.eval(), config, source
        self._feature_cache: FeatureCache | None = None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> MAKE:
        """A run folder (``train``'s output: its best checkpoint) or a folder written by ``save``."""
        model, config, _ = load_model(path)
        loaded = cls(model, config, Path(path))
        return loaded.to(device) if device is not None else loaded

    def save(self, folder: str | Path) -> Path:
        """Write a self-contained folder: config, safetensors weights, both tokenizers (and the run's
        mined keywords); ``MAKE.load`` reads it wherever it is copied, without the pretrained folders."""
        keywords = self.source / "keywords.json" if self.source is not None else None
        return save_model(self.model, self.config, Path(folder), keywords)

    def to(self, device: str | torch.device) -> MAKE:
        """Move the model to ``device`` (e.g. ``"cuda"``); returns self."""
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def modalities(self) -> tuple[str, ...]:
        """The product modalities of the index vector, in order (e.g. title, image, fused)."""
        return self.model.modalities

    @property
    def dim(self) -> int:
        """Dimension of the index vectors."""
        return self.model.dim

    @torch.no_grad()
    def encode_queries(
        self, queries: Sequence[str], batch_size: int = 256, progress: bool | None = None
    ) -> Embeddings:
        """Query vectors and their modality weights a(q); only the query tower runs."""
        queries = _listed(queries, "queries")
        starts = range(0, len(queries), batch_size)
        return self._stacked(self.model.encode_queries(queries[s : s + batch_size]) for s in _bar(starts, progress))

    @torch.no_grad()
    def encode_products(
        self,
        titles: Sequence[str],
        images: Sequence[ImageLike] | None = None,
        batch_size: int = 64,
        progress: bool | None = None,
    ) -> Embeddings:
        """Product vectors and their modality weights b(p); ``images`` has one entry per title (a PIL
        image, a file path or None for a text-only product), or is None for text-only products."""
        titles = _listed(titles, "titles")
        pictures = list(images) if images is not None else [None] * len(titles)
        if len(pictures) != len(titles):
            raise ValueError(f"encode_products: {len(titles)} titles but {len(pictures)} images")
        starts = range(0, len(titles), batch_size)
        return self._stacked(
            self._products(titles[s : s + batch_size], pictures[s : s + batch_size]) for s in _bar(starts, progress)
        )

    def _products(self, titles: list[str], pictures: list[ImageLike]) -> Embedded:
        """One batch through the product towers."""
        has_image = torch.tensor([p is not None for p in pictures], device=self.device)
        return self.model.encode_products(titles, self._image_inputs(pictures).to(self.device), has_image)

    def _image_inputs(self, pictures: list[ImageLike]) -> torch.Tensor:
        """What the image tower reads: pixels, or a frozen tower's trunk features (zeros for None)."""
        encoder, size = self.model.image_encoder, self.model.image_size
        if encoder is None or not encoder.frozen:
            return torch.stack([_pixels(p, size) for p in pictures])
        cache = self._cache(encoder)
        features = torch.zeros(len(pictures), *cache.shape)
        files = [i for i, p in enumerate(pictures) if isinstance(p, (str, Path))]
        if files:  # decoded only if the cache has not seen the file, as embed does
            cached = CachedFeatures(cache, cache.rows([Path(pictures[i]) for i in files], encoder, progress=False))  # type: ignore[arg-type]
            features[files] = torch.stack([cached(row) for row in range(len(files))])
        shown = [i for i, p in enumerate(pictures) if isinstance(p, Image.Image)]
        if shown:
            batch = torch.stack([_pixels(pictures[i], size) for i in shown]).to(self.device)
            # rounded as the cache stores them, so an in-memory picture and its file agree
            features[shown] = encoder.trunk(batch).half().float().cpu()
        return features

    def _cache(self, encoder: ImageEncoder) -> FeatureCache:
        """The frozen tower's feature cache, found once (its key hashes every backbone weight)."""
        if self._feature_cache is None:
            self._feature_cache = FeatureCache.for_encoder(encoder)
        return self._feature_cache

    def _stacked(self, outputs: Iterator[Embedded]) -> Embeddings:
        """The batches' outputs as one ``Embeddings`` (empty input, empty arrays)."""
        batches = list(outputs)
        if not batches:
            empty = np.zeros((0, self.dim), np.float32), np.zeros((0, len(self.modalities)), np.float32)
            return Embeddings(*empty, self.modalities)
        return Embeddings(*stack_outputs(batches), self.modalities)


def _pixels(picture: ImageLike, size: int) -> torch.Tensor:
    """A picture (PIL image or file) as the tower's pixels; zeros for None."""
    if picture is None:
        return torch.zeros(3, size, size)
    return image_tensor(picture, size) if isinstance(picture, Image.Image) else load_image(Path(picture), size)


def _listed(texts: Sequence[str], name: str) -> list[str]:
    """``texts`` as a list; a bare string is refused (it would be read as a list of characters)."""
    if isinstance(texts, str):
        raise TypeError(f"{name}: pass a list of strings, e.g. [{texts!r}]")
    return list(texts)


def _bar(starts: range, progress: bool | None) -> Iterator[int]:
    """The batch starts, behind a progress bar when asked (None: when there are many batches)."""
    shown = len(starts) >= PROGRESS_FROM if progress is None else progress
    return iter(tqdm(starts, unit="batch", disable=not shown))

