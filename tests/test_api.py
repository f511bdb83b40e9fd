"""The public Python API: the README's example as written, a saved model folder and an index that
load and search after being copied elsewhere with every original deleted, and encode_products on
PIL images against what ``embed`` indexes."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_data_dir, save_tiny_bert, tiny_model_config, trained_tiny
from make_retrieval import MAKE, Index
from make_retrieval.config import Config, ImageEncoderConfig
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.embed import embed_products
from make_retrieval.index.store import read_manifest
from make_retrieval.model.make import MAKEModel
from make_retrieval.pipeline import build_index, export_query_encoder

README = Path(__file__).resolve().parent.parent / "README.md"
QUERIES = ["red shirt", "blue heels", "black watch", "green handbag", "shirt"]


def readme_example() -> str:
    """The python block of the README's "Python API" section."""
    section = README.read_text().split("## Python API", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's Python API section has no python block"
    return found.group(1)


def test_the_readme_example_runs_as_written(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = make_data_dir(tmp_path / "data")
    trained_tiny(tiny_bert, data_dir, tmp_path / "runs" / "demo")
    build_index(tmp_path / "runs" / "demo", data_dir).save(tmp_path / "runs" / "demo" / "index")
    Image.open(data_dir / "images" / "p010.jpg").save(tmp_path / "shoe.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    saved, run = MAKE.load("my-model"), MAKE.load("runs/demo")
    np.testing.assert_array_equal(saved.encode_queries(QUERIES).vectors, run.encode_queries(QUERIES).vectors)
    result = Index.open("runs/demo/index").search(["red shirt"], k=3)[0]
    assert len(result.hits) == 3 and set(result.weights) == {"title", "image", "fused"}


def test_a_saved_model_and_its_index_search_after_a_move(tmp_path: Path) -> None:
    """Model folder, index and catalog copied to another directory; the run, the pretrained text
    folder and the originals deleted: the copy loads and searches with the same results."""
    data_dir = make_data_dir(tmp_path / "data")
    trained_tiny(save_tiny_bert(tmp_path / "bert"), data_dir, tmp_path / "run")
    MAKE.load(tmp_path / "run").save(tmp_path / "model")
    build_index(tmp_path / "model", data_dir).save(tmp_path / "index")
    export_query_encoder(tmp_path / "index")
    before = {e: Index.open(tmp_path / "index", encoder=e).search(QUERIES, k=5) for e in ("torch", "onnx")}
    vectors = MAKE.load(tmp_path / "model").encode_products(["Brand0 red shirt classic"], [None]).vectors

    moved = tmp_path / "elsewhere"
    for name in ("model", "index", "data"):
        shutil.copytree(tmp_path / name, moved / name)
    for name in ("model", "index", "data", "run", "bert"):
        shutil.rmtree(tmp_path / name)
    assert not any(str(tmp_path / "bert") in p.read_text() for p in (moved / "model").rglob("*.json"))
    assert read_manifest(moved / "index")["data"] == str((moved / "data").resolve())
    for encoder, results in before.items():
        assert Index.open(moved / "index", encoder=encoder).search(QUERIES, k=5) == results
    loaded = MAKE.load(moved / "model")
    np.testing.assert_array_equal(loaded.encode_products(["Brand0 red shirt classic"], [None]).vectors, vectors)


def test_encode_products_on_pil_images_gives_what_embed_indexes(tiny_bert: Path, data_dir: Path) -> None:
    """A frozen pretrained image tower: embed reads cached features; PIL images, file paths and
    the catalog's own path give the same vectors."""
    image = ImageEncoderConfig(backbone="efficientnet-lite0", image_size=32)
    config = Config(model=dataclasses.replace(tiny_model_config(tiny_bert), image_encoder=image))
    torch.manual_seed(0)
    model = MAKE(MAKEModel(config.model), config)
    catalog = load_data_dir(data_dir, splits=()).catalog
    vectors, weights = embed_products(model.model, catalog, batch_size=7, progress=False)
    pictures = [Image.open(path) for path in catalog.images]
    from_pil = model.encode_products(catalog.titles, pictures, batch_size=5)
    from_files = model.encode_products(catalog.titles, [str(path) for path in catalog.images], batch_size=32)
    for encoded in (from_pil, from_files):
        np.testing.assert_allclose(encoded.vectors, vectors, atol=1e-5)
        np.testing.assert_allclose(encoded.weights, weights, atol=1e-5)
    text_only = model.encode_products(catalog.titles[:2])
    assert text_only.weights[:, model.modalities.index("image")].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="2 titles but 1 images"):
        model.encode_products(catalog.titles[:2], [None])
    with pytest.raises(TypeError, match=r"\['red shirt'\]"):
        model.encode_queries("red shirt")


def test_the_package_exports_its_api_without_importing_torch() -> None:
    code = "import sys, make_retrieval as m; print(m.__version__, m.__all__, 'torch' in sys.modules); m.Index"
    env = {**os.environ, "PYTHONPATH": ""}
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    version, names, torch_loaded = shown.stdout.rsplit(" ", 1)[0], shown.stdout, shown.stdout.split()[-1]
    assert version.startswith("0.") and "'MAKE'" in names and "'Index'" in names
    assert torch_loaded == "False"
