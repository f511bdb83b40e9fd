"""Test helpers shared by the test modules: a small real-format data directory (coloured product
photos and titles, every table format from the same rows), a tiny random BERT, tiny model configs,
batches, a tiny trained index, a count of the writes sent to Milvus, and checks used by more than one
module. Fixtures stay in conftest.py.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from transformers import AutoTokenizer, BertConfig, BertModel

from make_retrieval.config import Config, ImageEncoderConfig, ModelConfig, TextEncoderConfig
from make_retrieval.data.batches import Batch, BatchBuilder, ClickDataset, Pixels, SimilarQueries
from make_retrieval.data.keywords import KeywordExtractor
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.index.milvus_index import MilvusIndex
from make_retrieval.model.encoders import resolve_text_path
from make_retrieval.query_encoder import QueryEncoder

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "black": (10, 10, 10)}


TYPES = ["shirt", "heels", "watch", "handbag"]


def write_table(path: Path, rows: list[dict]) -> Path:
    """Write rows as Parquet, JSONL or CSV according to the suffix."""
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def make_data_dir(root: Path, ext: str = ".parquet") -> Path:
    """32 products (4 colours x 4 types x 2), colour-led queries; products 0/1 of each kind differ."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    products, train, valid, test = [], [], [], []
    for c, (colour, rgb) in enumerate(COLOURS.items()):
        for t, kind in enumerate(TYPES):
            for n in range(2):
                pid = f"p{c}{t}{n}"
                Image.new("RGB", (60, 80), rgb).save(root / "images" / f"{pid}.jpg")
                products.append(
                    {
                        "product_id": pid,
                        "title": f"Brand{n} {colour} {kind} classic",
                        "image": f"images/{pid}.jpg",
                        "category": kind,
                        "base_colour": colour,
                    }
                )
                train.append({"query": f"{colour} {kind}", "product_id": pid, "weight": 1.0})
                train.append({"query": kind, "product_id": pid, "weight": 1.0})
            judged = valid if t % 2 == 0 else test
            for n in range(2):
                judged.append({"query": f"{kind} in {colour}", "product_id": f"p{c}{t}{n}", "relevance": 2})
    write_table(root / f"products{ext}", products)
    write_table(root / f"train{ext}", train)
    write_table(root / f"valid{ext}", valid)
    write_table(root / f"test{ext}", test)
    return root


def shard_train(data_dir: Path, shards: int = 3, group_rows: int = 5) -> Path:
    """Replace ``train.parquet`` by ``train/`` shards with small row groups (streamed by data/stream.py)."""
    table = pq.read_table(data_dir / "train.parquet")
    (data_dir / "train").mkdir()
    size = -(-table.num_rows // shards)
    for n in range(shards):
        shard = data_dir / "train" / f"part-{n:05d}.parquet"
        pq.write_table(table.slice(n * size, size), shard, row_group_size=group_rows)
    (data_dir / "train.parquet").unlink()
    return data_dir


def make_batch(
    data_dir: Path,
    keywords: bool,
    size: int = 8,
    image_size: int = 16,
    hard_negatives: dict[str, list[int]] | None = None,
    rank: int = 0,
    world_size: int = 1,
    similar: SimilarQueries | None = None,
) -> Batch:
    """The first ``size`` click pairs of ``data_dir`` collated as in training (with KE masks and
    mined hard negatives if asked); with ``world_size`` > 1, rank ``rank``'s slice of them."""
    data = load_data_dir(data_dir, ("train",))
    assert data.train is not None
    extractor = None
    if keywords:
        clicks = zip(data.train.queries, data.train.products, strict=True)
        extractor = KeywordExtractor.fit(data.catalog.titles, clicks, 4)
    dataset = ClickDataset(data.train)
    images = Pixels(data.catalog, image_size)
    builder = BatchBuilder(data.catalog, extractor, similar or SimilarQueries(), images, rank, world_size)
    if hard_negatives:
        builder.set_hard_negatives(hard_negatives, seed=0)
    return builder([dataset[i] for i in range(size)])


def save_tiny_bert(folder: Path, dropout: float = 0.1) -> Path:
    """A 2-layer random BERT with the real MiniLM vocabulary, saved like any local HF folder."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_text_path("minilm"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)  # the same tiny BERT in every session: tests must not depend on the draw
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_model_config(bert: Path, **switches: Any) -> ModelConfig:
    """Every tower tiny; ``switches`` set fusion / modal_adaptation / keyword_enhancement / embed_dim..."""
    settings: dict[str, Any] = {"embed_dim": 8, "fusion_layers": 1, "adaptation_hidden": 8, **switches}
    return ModelConfig(
        query_encoder=TextEncoderConfig(path=str(bert), max_length=8),
        title_encoder=TextEncoderConfig(path=str(bert), max_length=16),
        image_encoder=ImageEncoderConfig(
            backbone="vit", image_size=16, patch_size=8, hidden_size=16, num_layers=1, num_heads=2),
        **settings,
    )


def trained_tiny(bert: Path, data_dir: Path, run: Path) -> None:
    """A tiny model trained on ``data_dir`` for 2 steps into ``run``."""
    from make_retrieval.train.loop import train

    config = Config(model=tiny_model_config(bert))
    config.train.batch_size, config.train.max_steps, config.train.tensorboard = 8, 2, False
    train(config, data_dir, run, progress=False)


def build_tiny_index(root: Path, bert: Path) -> tuple[Path, Path]:
    """(data dir, index dir) under ``root``: the 32-product data directory indexed by a tiny model
    trained for 2 steps (run in ``root/run``), as ``embed`` writes it (lexical channel and fusion
    chosen on valid included)."""
    from make_retrieval.pipeline import index_folder

    data_dir = make_data_dir(root / "data")
    trained_tiny(bert, data_dir, root / "run")
    index_folder(root / "run", data_dir, root / "index")
    return data_dir, root / "index"


def many_queries(count: int, seed: int = 0) -> list[str]:
    """Queries of 1 to 20 words (longer than max_length, so truncation is covered), some non-ASCII."""
    words = [*COLOURS, *TYPES, "summer", "dress", "for", "men", "women", "leather", "鞋", "größe", "x1", "-"]
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 20))) for _ in range(count)]


def assert_same_embeddings(onnx: QueryEncoder, torch_encoder: QueryEncoder, queries: list[str]) -> None:
    """Row-wise cosine > 0.999 between the two encoders' vectors; the same modality weights."""
    for start in range(0, len(queries), 50):  # mixed batch sizes and paddings
        batch = queries[start : start + 50 - start // 10]
        (a, weights_a), (b, weights_b) = onnx.encode(batch), torch_encoder.encode(batch)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.999, cosine.min()
        np.testing.assert_allclose(weights_a, weights_b, atol=1e-4)


@contextmanager
def milvus_writes() -> Iterator[dict[str, list[str]]]:
    """While open, every ``MilvusIndex.add`` and ``delete`` records the product ids it sends to Milvus
    under "upserted" and "deleted" of the yielded dict: what a sync really touches on the server."""
    sent: dict[str, list[str]] = {"upserted": [], "deleted": []}
    add, delete = MilvusIndex.add, MilvusIndex.delete

    def counting_add(self: MilvusIndex, products: list, vectors: object) -> None:
        sent["upserted"] += [p.product_id for p in products]
        add(self, products, vectors)

    def counting_delete(self: MilvusIndex, product_ids: list[str]) -> int:
        sent["deleted"] += list(product_ids)
        return delete(self, product_ids)

    MilvusIndex.add, MilvusIndex.delete = counting_add, counting_delete
    try:
        yield sent
    finally:
        MilvusIndex.add, MilvusIndex.delete = add, delete
