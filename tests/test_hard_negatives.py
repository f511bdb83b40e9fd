"""Hard-negative mining: candidates from the model's own index, never a clicked product, and the
extra negative columns flow through the masks and the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import make_batch, tiny_model_config
from make_retrieval.config import Config, LossConfig
from make_retrieval.data.batches import Batch, BatchBuilder
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.losses import MAKELoss
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.hard_negatives import mine_hard_negatives
from make_retrieval.train.loop import train


def test_mined_candidates_skip_clicked_products(tiny_bert: Path, data_dir: Path) -> None:
    data = load_data_dir(data_dir, ("train",))
    assert data.train is not None
    torch.manual_seed(0)
    candidates = mine_hard_negatives(MAKEModel(tiny_model_config(tiny_bert)), data.catalog, data.train, depth=5)
    assert set(candidates) == set(data.train.queries)
    for query, positions in candidates.items():
        clicked = {p for q, p in zip(data.train.queries, data.train.products, strict=True) if q == query}
        assert len(positions) == 5 and not clicked & set(positions)
    # 'shirt' was clicked for every shirt, so its hard negatives are other kinds of product
    assert all("shirt" not in data.catalog.titles[p] for p in candidates["shirt"])


def test_hard_negative_columns_extend_the_batch_and_the_loss(tiny_bert: Path, data_dir: Path) -> None:
    plain = make_batch(data_dir, keywords=True)
    hard = {"red shirt": [5], "shirt": [8], "red heels": [3]}  # p021 red watch, p100 blue shirt, p011
    batch = make_batch(data_dir, keywords=True, hard_negatives=hard)
    # items: (red shirt, p000) x2 queries, (.., p001), (red heels / heels, p010), (.., p011)
    assert len(batch.queries) == 8 and len(batch.titles) == 8 + 6  # 4 + 2 items have mined candidates
    assert batch.targets.positives.shape == (8, 14) and batch.targets.same_product.shape == (14, 14)
    assert batch.titles[8] == "Brand1 red watch classic" and batch.titles[9] == "Brand0 blue shirt classic"
    assert batch.targets.positives[:, 8:12].sum() == 0, "a mined product is no row's positive"
    # ... unless it is another row's clicked product: p011 mined for 'red heels' is rows 6-7's product
    assert batch.targets.positives[6, 12] == 1 and batch.targets.positives[7, 13] == 1
    assert batch.targets.excluded[1, 9], "'shirt' is covered by the blue shirt's keywords: not a negative"
    torch.testing.assert_close(batch.targets.positives[:, :8], plain.targets.positives)

    torch.manual_seed(0)
    model = MAKEModel(tiny_model_config(tiny_bert))
    criterion = MAKELoss.for_config(model.config, LossConfig())
    logged = []
    for b in (plain, batch):
        products = model.encode_products(b.titles, b.images, b.targets.has_image)
        loss, parts = criterion(
            model, model.encode_queries(b.queries), products, b.targets, model.encode_queries(b.keywords)
        )
        loss.backward()
        assert torch.isfinite(loss)
        logged.append(parts)
    assert logged[1]["query_product"] > logged[0]["query_product"], "more negatives, harder task"


def test_training_with_hard_negatives(
    tiny_config: Config, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mining runs before the epoch and every batch the step receives has one mined column per query."""
    collated: list[Batch] = []
    collate = BatchBuilder.__call__

    def recorded(builder: BatchBuilder, items: list) -> Batch:
        collated.append(collate(builder, items))
        return collated[-1]

    monkeypatch.setattr(BatchBuilder, "__call__", recorded)
    tiny_config.train.hard_negatives = True
    tiny_config.train.hard_negative_depth = 3
    train(tiny_config, data_dir, tmp_path / "run", progress=False)
    assert len(collated) == tiny_config.train.max_steps
    for batch in collated:
        layout = batch.layout
        assert layout.columns == 2 * layout.pairs and len(batch.titles) == layout.columns
        assert batch.targets.positives[:, layout.hard].sum() < layout.pairs, "mined products are mostly negatives"
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start"  # the untrained model's validation
    assert events[1] == {"step": 0, "epoch": 0, "event": "hard_negatives", "queries": 20}
    assert any("query_product" in e for e in events)
