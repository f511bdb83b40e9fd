"""Image-tower warm-up: the random image tower learns to point at its product's title, and the
composed image projection carries that into the model's own embedding space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import tiny_model_config
from make_retrieval.config import Config
from make_retrieval.data.batches import Pixels
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.image_warmup import warm_up_image_tower
from make_retrieval.train.loop import train

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow


def _colour_agreement(model: MAKEModel, data_dir: Path) -> float:
    """Mean cosine of image part to title part for same-colour products minus other-colour ones."""
    catalog = load_data_dir(data_dir, ()).catalog
    pixels = torch.stack([Pixels(catalog, model.image_size)(i) for i in range(len(catalog))])
    model.eval()
    with torch.no_grad():
        parts = model.encode_products(catalog.titles, pixels, torch.ones(len(catalog), dtype=torch.bool)).parts
    similarity = parts["image"] @ parts["title"].T
    colours = [title.split()[1] for title in catalog.titles]
    same = torch.tensor([[a == b for b in colours] for a in colours])
    return float(similarity[same].mean() - similarity[~same].mean())


def test_warm_up_aligns_images_with_their_titles(tiny_bert: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    model = MAKEModel(tiny_model_config(tiny_bert))
    catalog = load_data_dir(data_dir, ()).catalog
    before = _colour_agreement(model, data_dir)
    generator = torch.Generator().manual_seed(0)
    pixels = Pixels(catalog, model.image_size)
    losses = warm_up_image_tower(model, catalog, pixels, 150, 16, 3e-3, generator, progress=False)
    assert len(losses) == 150
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    # solid-colour photos: after warm-up a product's image part is nearer same-colour titles. The
    # tiny random BERT barely tells colour words apart, so the margin is small (0.05-0.15 over six
    # BERT draws; the fixture's seeded draw gives about 0.1); without warm-up it is about 0.
    after = _colour_agreement(model, data_dir)
    assert after > before + 0.03


def test_models_without_an_image_tower_are_left_alone(tiny_bert: Path, data_dir: Path) -> None:
    model = MAKEModel(tiny_model_config(tiny_bert, image_modality=False, fusion=False))
    catalog = load_data_dir(data_dir, ()).catalog
    pixels = Pixels(catalog, model.image_size)
    assert warm_up_image_tower(model, catalog, pixels, 5, 8, 1e-3, torch.Generator(), progress=False) == []


def test_training_logs_the_warm_up(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.train.image_warmup_steps = 3
    train(tiny_config, data_dir, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "image_warmup" and records[0]["steps"] == 3
