"""Training (reproducible, logged, checkpointed) and every CLI command on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from helpers import write_table
from make_retrieval.cli import app
from make_retrieval.config import Config
from make_retrieval.errors import ConfigError
from make_retrieval.train.loop import train

runner = CliRunner()


def _losses(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records if "loss" in r]


def test_training_is_reproducible_and_leaves_a_complete_run(
    tiny_config: Config, data_dir: Path, tmp_path: Path
) -> None:
    first = train(tiny_config, data_dir, tmp_path / "a", progress=False)
    train(tiny_config, data_dir, tmp_path / "b", progress=False)
    assert first.steps == 4 and first.best is not None
    for name in ("config.yaml", "keywords.json", "metrics.jsonl", "data_report.json", "last.pt", "best.pt"):
        assert (tmp_path / "a" / name).is_file(), name
    losses = _losses(tmp_path / "a")
    assert len(losses) == 4 and {"query_product", "keyword_product", "lr", "temperature"} <= set(losses[0])
    assert losses == _losses(tmp_path / "b"), "same seed, same data: same metrics log"
    tiny_config.train.seed = 1
    train(tiny_config, data_dir, tmp_path / "c", progress=False)
    assert _losses(tmp_path / "c") != losses
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    epoch_end = [r for r in records if r.get("event") != "title_lean"][-1]
    assert epoch_end["event"] == "epoch_end" and "ndcg@10" in epoch_end["valid"]


def test_cli_train_embed_search_evaluate(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.save(tmp_path / "tiny.yaml")
    run, index = tmp_path / "run", tmp_path / "index"
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data_dir),
            "--out",
            str(run),
            "--config",
            str(tmp_path / "tiny.yaml"),
            "--max-steps",
            "2",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output
    assert Config.load(run / "config.yaml").train.seed == 3

    (data_dir / "images" / "p011.jpg").unlink()  # kept, text-only, and listed
    result = runner.invoke(app, ["embed", "--run", str(run), "--data", str(data_dir), "--out", str(index)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["count"] == 32 and manifest["dimension"] == 24 and manifest["model"]["checkpoint"] == "best.pt"
    table = pq.read_table(index / "products.parquet")
    assert {"weight_title", "weight_image", "weight_fused"} <= set(table.column_names)
    assert manifest["index"]["kind"] == "flat", "the run config's index section (default flat)"
    assert "1 product(s) indexed by their title alone" in result.output
    listed = (index / "text_only.csv").read_text().splitlines()
    assert listed == ["product_id,row,image,reason", "p011,4,images/p011.jpg,missing"]
    # the index settings: a YAML's index section, then the command-line options over it
    (tmp_path / "index.yaml").write_text("index: {kind: hnsw, hnsw_m: 8, hnsw_ef_construction: 40}\n")
    args = ["embed", "--run", str(run), "--data", str(data_dir), "--out", str(tmp_path / "hnsw")]
    result = runner.invoke(app, [*args, "--config", str(tmp_path / "index.yaml"), "--ef-search", "24"])
    assert result.exit_code == 0, result.output
    hnsw = json.loads((tmp_path / "hnsw" / "manifest.json").read_text())["index"]
    assert (hnsw["kind"], hnsw["hnsw_m"], hnsw["hnsw_ef_construction"], hnsw["hnsw_ef_search"]) == ("hnsw", 8, 40, 24)

    result = runner.invoke(app, ["search", "--index", str(index), "red heels", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count("Brand") == 3 and "fused" in result.output

    result = runner.invoke(app, ["explain", "--index", str(index), "--product", "p010", "--json"])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert explained["title"] == "Brand0 red heels classic" and explained["metadata"] == {"base_colour": "red"}
    assert sum(explained["weights"].values()) == pytest.approx(1.0)
    result = runner.invoke(app, ["explain", "--index", str(index), "--json"])
    by_category = json.loads(result.stdout)
    assert set(by_category) == {"shirt", "heels", "watch", "handbag"} and by_category["heels"]["products"] == 8
    result = runner.invoke(app, ["explain", "--index", str(index)])
    assert result.exit_code == 0 and "handbag" in result.output
    result = runner.invoke(app, ["explain", "--index", str(index), "--product", "nope"])
    assert result.exit_code == 2 and "product 'nope' is not in" in result.output

    result = runner.invoke(app, ["evaluate", "--run", str(run), "--data", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["model"] == "MAKE" and scores["queries"] == 8
    assert {"ndcg@10", "recall@50", "recall@1000", "mrr@10", "precision@10"} <= set(scores)

    result = runner.invoke(
        app, ["evaluate", "--baseline", "bm25", "--data", str(data_dir), "--split", "valid", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["recall@10"] == pytest.approx(1.0)


def test_cli_reports_bad_data_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "test.parquet").unlink()
    write_table(data_dir / "test.csv", [{"query": "q", "product_id": "p000", "relevance": "very"}])
    result = runner.invoke(app, ["evaluate", "--baseline", "bm25", "--data", str(data_dir)])
    assert result.exit_code == 2
    assert "test.csv, row 1, field 'relevance': must be an integer >= 0" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_usage_errors(data_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(data_dir)])
    assert result.exit_code == 2 and "exactly one of --run" in result.output
    result = runner.invoke(app, ["search", "--index", str(tmp_path), "x"])
    assert result.exit_code == 2 and "not an index folder" in result.output


def test_config_rejects_unknown_keys_wrong_types_and_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model:\n  fusoin: true\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['fusoin'\]"):
        Config.load(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: '3'\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:train:epochs: expected int or None, got '3'"):
        Config.load(tmp_path / "bad.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(tmp_path / "bad.yaml")


def test_nested_config_keys_keep_their_section_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  title_encoder: {freeze_layers: 4}\ntrain: {lr: 1}\n")
    config = Config.load(tmp_path / "c.yaml")
    assert config.model.title_encoder.freeze_layers == 4
    assert config.model.title_encoder.max_length == Config().model.title_encoder.max_length == 48
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)


def test_training_without_valid_keeps_last_checkpoint_only(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config, data_dir, run, progress=False)
    assert (run / "best.pt").is_file()
    (data_dir / "valid.parquet").unlink()
    tiny_config.train.valid_holdout = False  # else training queries are held out to validate on
    result = train(tiny_config, data_dir, run, progress=False)
    assert result.best is None and (run / "last.pt").is_file()
    assert not (run / "best.pt").exists(), "a stale best.pt from an earlier run would be used by embed"


def test_index_refuses_a_run_retrained_after_embedding(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    run, index = tmp_path / "run", tmp_path / "index"
    train(tiny_config, data_dir, run, progress=False)
    assert runner.invoke(app, ["embed", "--run", str(run), "--data", str(data_dir), "--out", str(index)]).exit_code == 0
    tiny_config.train.seed = 7
    train(tiny_config, data_dir, run, progress=False)
    result = runner.invoke(app, ["search", "--index", str(index), "red"])
    assert result.exit_code == 2 and "was built by another checkpoint" in result.output


def test_cli_trains_a_baseline_variant(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.save(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    args = ["train", "--data", str(data_dir), "--out", str(run), "--config", str(tmp_path / "tiny.yaml")]
    result = runner.invoke(app, [*args, "--model", "text-dual", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    saved = Config.load(run / "config.yaml").model
    assert saved.share_text_encoder and not saved.image_modality and not saved.keyword_enhancement
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--data", str(data_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["queries"] == 8
    result = runner.invoke(app, [*args, "--model", "albef"])
    assert result.exit_code == 2 and "unknown model 'albef'" in result.output


def test_demo_trains_indexes_exports_and_evaluates(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    """The demo chain on a tiny config: what 'serve' needs is left in OUT/index, ONNX encoder included."""
    tiny_config.train.tensorboard = False
    tiny_config.save(tmp_path / "tiny.yaml")
    out = tmp_path / "demo"
    args = ["demo", "--data", str(data_dir), "--out", str(out), "--config", str(tmp_path / "tiny.yaml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [r["retriever"] for r in results] == ["BM25", "MAKE", "MAKE+BM25"] and results[1]["queries"] == 8
    assert (out / "index" / "query_encoder" / "model.onnx").is_file() and (out / "index" / "lexical").is_dir()
    assert "hybrid search fuses" in result.output and "--mode hybrid" in result.output
    assert "make-retrieval serve --index" in result.output
