"""End to end with the real pretrained all-MiniLM-L6-v2 text towers (bundled, no download)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import assert_same_embeddings, many_queries
from make_retrieval.cli import app
from make_retrieval.config import Config, ImageEncoderConfig, TextEncoderConfig
from make_retrieval.model.checkpoint import load_model
from make_retrieval.query_encoder import OnnxQueryEncoder, TorchQueryEncoder

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow


def test_minilm_train_embed_search_evaluate(data_dir: Path, tmp_path: Path) -> None:
    config = Config()
    config.model.query_encoder = TextEncoderConfig(max_length=8)
    config.model.title_encoder = TextEncoderConfig(max_length=16, freeze_layers=6)
    config.model.image_encoder = ImageEncoderConfig(
        backbone="vit", image_size=16, patch_size=8, hidden_size=32, num_layers=1, num_heads=2
    )
    config.model.fusion_layers = 1
    config.train.batch_size = 16
    config.train.max_steps = 3
    config.train.lr = 1e-5
    config.train.image_warmup_steps = 150
    config.save(tmp_path / "minilm.yaml")
    runner = CliRunner()
    run, index = tmp_path / "run", tmp_path / "index"
    args = ["train", "--data", str(data_dir), "--out", str(run), "--config", str(tmp_path / "minilm.yaml")]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, ["embed", "--run", str(run), "--data", str(data_dir), "--out", str(index)]).exit_code == 0
    result = runner.invoke(app, ["search", "--index", str(index), "red heels", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    titles = [r["title"] for r in found["results"]]
    # the warmed-up image tower has learnt the solid colours from the titles: red heels first, heels both
    assert "red heels" in titles[0] and all("heels" in t for t in titles), titles
    assert sum(found["query_weights"].values()) == pytest.approx(1.0)
    assert found["results"][0]["metadata"] == {"base_colour": "red"}
    # the real MiniLM query tower exported to ONNX gives the PyTorch embeddings
    assert runner.invoke(app, ["export-onnx", "--index", str(index)]).exit_code == 0
    onnx = OnnxQueryEncoder(index / "query_encoder")
    assert_same_embeddings(onnx, TorchQueryEncoder(load_model(run)[0]), many_queries(300))
    onnx_result = runner.invoke(app, ["search", "--index", str(index), "red heels", "-k", "2", "--json"])
    assert [r["product_id"] for r in json.loads(onnx_result.stdout)["results"]] == [
        r["product_id"] for r in found["results"]
    ]
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--data", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    # the pretrained towers already tie "heels in red" to "Brand0 red heels classic": far above chance
    assert scores["ndcg@10"] > 0.6 and scores["recall@10"] > 0.8, scores
    assert set(scores["per_category"]) == {"handbag", "heels"}
