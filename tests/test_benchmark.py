"""The benchmark command: every (model, seed) trained and evaluated, one table with spreads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from make_retrieval.benchmark import RECORD, _finished
from make_retrieval.cli import app
from make_retrieval.config import Config
from make_retrieval.model.baselines import with_variant

#: Trains models, loads real weights or starts processes: deselect with -m 'not slow' for a quick run.
pytestmark = pytest.mark.slow


def test_benchmark_table(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    tiny_config.train.max_steps = 1
    tiny_config.save(tmp_path / "tiny.yaml")
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(data_dir), "--out", str(out), "--config", str(tmp_path / "tiny.yaml")]
    result = CliRunner().invoke(app, [*args, "--models", "bm25,clip,make", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    records = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in records] == [
        ("bm25", None),
        ("clip", 0),
        ("clip", 1),
        ("make", 0),
        ("make", 1),
    ]
    # each seed trains its own model (the metrics of two one-step tiny models may well coincide)
    weights = [torch.load(out / "clip" / f"seed{s}" / "last.pt", weights_only=True)["model"] for s in (0, 1)]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    report = (out / "results.md").read_text()
    assert "| make | 2 | " in report and "±" in report and "| bm25 | - | " in report
    assert "NDCG@10 per category" in report and "| heels | 4 |" in report
    assert "Mean Modality Adaptation weights per category, make" in report
    assert "weights per category, clip" not in report, "clip has no Modal Adaptation"
    # each run trains as its config says: validated (step 0, then the epoch), best.pt evaluated
    assert (out / "make" / "seed1" / "best.pt").is_file()
    assert (out / "make" / "seed1" / "validation.json").is_file()

    # a rerun (e.g. after the benchmark was killed) reuses finished runs made with the same config
    again = CliRunner().invoke(app, [*args, "--models", "clip,make", "--seeds", "2"])
    assert again.exit_code == 0 and again.output.count("finished earlier, reused") == 4, again.output
    assert json.loads((out / "results.json").read_text()) == records[1:]
    # a record written before a config key existed is read with that key's default, and reused
    record_path = out / "make" / "seed0" / RECORD
    payload = json.loads(record_path.read_text())
    del payload["config"]["train"]["keep_states"]
    record_path.write_text(json.dumps(payload))
    same = with_variant(tiny_config, "make")
    same.train.seed = 0
    assert _finished(out / "make" / "seed0", same) is not None
    changed = with_variant(tiny_config, "make")
    changed.train.seed, changed.train.max_steps = 0, 2
    assert _finished(out / "make" / "seed0", changed) is None, "a changed config is trained again"
    # a NAME+bm25 row fuses NAME's finished run with BM25 (no training) and is itself reused after
    make_seconds = records[3]["train_seconds"]
    fused = CliRunner().invoke(app, [*args, "--models", "make+bm25", "--seeds", "1"])
    assert fused.exit_code == 0, fused.output
    assert "benchmark: make+bm25, seed 0: fused " in fused.output and "benchmark: make, seed 0\n" not in fused.output
    [hybrid] = json.loads((out / "results.json").read_text())
    assert hybrid["model"] == "make+bm25" and hybrid["train_seconds"] == make_seconds
    assert hybrid["fusion"]["chosen_on"] == "valid" and len(hybrid["fusion"]["tried"]) == 10
    assert set(hybrid["metrics"]) == set(records[3]["metrics"])
    again = CliRunner().invoke(app, [*args, "--models", "make+bm25", "--seeds", "1"])
    assert again.exit_code == 0 and again.output.count("finished earlier, reused") == 1
    result = CliRunner().invoke(app, [*args, "--models", "bm25,albef,albef+bm25"])
    assert result.exit_code == 2 and "unknown model(s) ['albef', 'albef+bm25']" in result.output


def test_benchmark_first_seed(tiny_config: Config, data_dir: Path, tmp_path: Path) -> None:
    """--first-seed adds seeds 2, 3 to a benchmark whose seeds 0-1 ran elsewhere; those are not trained."""
    tiny_config.train.max_steps = 1
    tiny_config.save(tmp_path / "tiny.yaml")
    out = tmp_path / "bench"
    args = ["benchmark", "--data", str(data_dir), "--out", str(out), "--config", str(tmp_path / "tiny.yaml")]
    result = CliRunner().invoke(app, [*args, "--models", "clip", "--seeds", "2", "--first-seed", "2"])
    assert result.exit_code == 0, result.output
    records = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["seed"]) for r in records] == [("clip", 2), ("clip", 3)]
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["seed2", "seed3"]
