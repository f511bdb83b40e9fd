"""Hybrid retrieval: the lexical channel (BM25 in the index folder), the two fusions, the choice of
fusion on the valid split, and the fusion an index keeps being the one search uses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import build_tiny_index
from make_retrieval.cli import app
from make_retrieval.config import IndexConfig
from make_retrieval.hybrid import LEXICAL_WEIGHTS, choose_fusion, fusion_setting
from make_retrieval.index.fusion import Candidates, Fusion, fuse
from make_retrieval.index.lexical import LexicalIndex, lexical_text
from make_retrieval.index.store import Hit, read_manifest, write_manifest
from make_retrieval.retrieval import HybridRetriever, Index


def _hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(pid, score) for pid, score in pairs]


def _candidates() -> Candidates:
    """a: dense 1st and lexical 2nd; b: dense only; c: lexical 1st only."""
    found = Candidates.union(_hits(("a", 0.9), ("b", 0.8)), _hits(("c", 6.0), ("a", 3.0)))
    found.dense = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    found.lexical = np.array([3.0, 0.0, 6.0], dtype=np.float32)
    return found


def test_candidates_keep_each_channels_rank() -> None:
    found = _candidates()
    assert found.product_ids == ["a", "b", "c"]
    assert found.dense_rank.tolist() == [1, 2, 0] and found.lexical_rank.tolist() == [2, 0, 1]


def test_weighted_fusion_normalises_bm25_by_the_best_and_weight_zero_is_the_dense_ranking() -> None:
    found = _candidates()
    assert [h.product_id for h in fuse(found, Fusion("weighted", 0.0), 3)] == ["a", "b", "c"]
    hits = fuse(found, Fusion("weighted", 1.0), 3)  # a 0.9 + 0.5, b 0.8 + 0, c 0.7 + 1
    assert [(h.product_id, round(h.score, 4)) for h in hits] == [("c", 1.7), ("a", 1.4), ("b", 0.8)]
    assert [h.channels for h in hits] == [{"lexical": 1}, {"dense": 1, "lexical": 2}, {"dense": 2}]
    doubled = found.lexical * 2  # BM25's scale does not move the fused ranking
    found.lexical = doubled
    assert [h.product_id for h in fuse(found, Fusion("weighted", 1.0), 3)] == ["c", "a", "b"]


def test_reciprocal_rank_fusion_reads_only_ranks() -> None:
    hits = fuse(_candidates(), Fusion("rrf", rrf_k=60), 2)
    assert [h.product_id for h in hits] == ["a", "c"]  # 1/61 + 1/62 > 1/61 > 1/62
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 62) and hits[1].score == pytest.approx(1 / 61)


def _lexical() -> LexicalIndex:
    titles = ["Acme phone 128gb black", "Acme phone 64gb black", "Zenith phone 128gb blue", "black leather shoe"]
    metadata = [{"brand": "acme"}, {"brand": "acme"}, {"brand": "zenith"}, {"brand": "strada"}]
    texts = [lexical_text(t, m, ["brand"]) for t, m in zip(titles, metadata, strict=True)]
    return LexicalIndex.build(["p0", "p1", "p2", "p3"], texts, ["phone", "phone", "phone", "shoe"], ["brand"])


def test_the_lexical_channel_searches_reads_metadata_and_reloads(tmp_path: Path) -> None:
    lexical = _lexical()
    assert {h.product_id for h in lexical.search(["128gb phone"], 2)[0]} == {"p0", "p2"}
    assert {h.product_id for h in lexical.search(["strada"], 5)[0]} == {"p3"}, "a metadata field is read"
    assert lexical.search(["unheard of words"], 5) == [[]], "no known term: nothing, not arbitrary products"
    assert {h.product_id for h in lexical.search(["black"], 5, category="shoe")[0]} == {"p3"}
    assert lexical.score_ids("128gb", ["p1", "missing"]).tolist() == [0.0, 0.0]
    lexical.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded is not None and loaded.fields == ["brand"] and len(loaded) == 4
    for query in ("128gb phone", "acme black", "strada shoe"):
        assert loaded.search([query], 4) == lexical.search([query], 4)
    assert LexicalIndex.load(tmp_path / "nothing") is None


class FixedDense:
    """A dense channel with given query and product vectors (``retrieval.DenseChannel``)."""

    def __init__(self, ids: list[str], products: np.ndarray, queries: dict[str, np.ndarray]):
        self.ids, self.products, self.queries = ids, products, queries

    def encode(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([self.queries[q] for q in queries]), np.ones((len(queries), 1))

    def search_vectors(self, vectors: np.ndarray, k: int, category: str | None = None) -> list[list[Hit]]:
        scores = vectors @ self.products.T
        return [[Hit(self.ids[i], float(row[i])) for i in np.argsort(-row)[:k]] for row in scores]

    def vectors_of(self, product_ids: Sequence[str]) -> np.ndarray:
        return self.products[[self.ids.index(pid) for pid in product_ids]]


def _dense(order: list[str]) -> FixedDense:
    """Products on a line: the query's inner product falls by 0.1 per place of ``order``."""
    ids = ["p0", "p1", "p2", "p3"]
    products = np.zeros((4, 2), dtype=np.float32)
    for place, pid in enumerate(order):
        products[ids.index(pid)] = [1.0 - 0.1 * place, 0.0]
    vectors = {q: np.array([1.0, 0.0], dtype=np.float32) for q in ("acme 128gb", "shoe for a phone")}
    return FixedDense(ids, products, vectors)


def test_the_choice_takes_the_lexical_channel_where_it_helps_and_not_where_it_misleads() -> None:
    # "acme 128gb" wants p0; the dense channel puts it third, BM25 first (the only product with both terms)
    helps = HybridRetriever(_dense(["p1", "p2", "p0", "p3"]), _lexical(), Fusion())
    chosen = choose_fusion(helps, {"acme 128gb": {"p0": 2}})
    assert chosen.chosen_on == "valid" and len(chosen.tried) == len(LEXICAL_WEIGHTS) + 1
    assert (chosen.method, chosen.lexical_weight) != ("weighted", 0.0)
    assert chosen.tried[0]["ndcg@10"] < 1.0 and max(t["ndcg@10"] for t in chosen.tried) == 1.0
    # "shoe for a phone" wants p3, which the dense channel ranks first; BM25 prefers the phones
    misleads = HybridRetriever(_dense(["p3", "p0", "p1", "p2"]), _lexical(), Fusion())
    kept = choose_fusion(misleads, {"shoe for a phone": {"p3": 2}})
    assert (kept.method, kept.lexical_weight) == ("weighted", 0.0), kept.tried


def test_the_fusion_setting_follows_the_options() -> None:
    hybrid = HybridRetriever(_dense(["p1", "p2", "p0", "p3"]), _lexical(), Fusion())
    valid = {"acme 128gb": {"p0": 2}}
    assert fusion_setting(IndexConfig(lexical_weight=0.3), hybrid, valid) == Fusion("weighted", 0.3, chosen_on="option")
    assert fusion_setting(IndexConfig(fusion="rrf"), hybrid, valid).method == "rrf"
    assert fusion_setting(IndexConfig(), hybrid, None).chosen_on == "default"  # rrf: no weight to choose
    assert fusion_setting(IndexConfig(fusion="weighted"), hybrid, valid).method == "weighted"
    for bad in (IndexConfig(fusion="weighted"), IndexConfig(fusion="max"), IndexConfig(fusion="rrf", lexical_weight=1)):
        with pytest.raises(Exception, match=r"valid split|unknown fusion|rrf has none"):
            fusion_setting(bad, hybrid, None)


@pytest.fixture(scope="module")
def built(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny_index(tmp_path_factory.mktemp("hybrid"), tiny_bert)


def test_embed_keeps_the_fusion_chosen_on_valid_and_search_uses_the_one_kept(built: tuple[Path, Path]) -> None:
    _, index_dir = built
    manifest = read_manifest(index_dir)
    assert manifest["hybrid"]["chosen_on"] == "valid" and len(manifest["hybrid"]["tried"]) == len(LEXICAL_WEIGHTS) + 1

    def ranked(mode: str) -> list[str]:
        result = Index.open(index_dir, encoder="torch").search(["brand1 heels"], 8, mode=mode)[0]
        return [hit.product_id for hit in result.hits]

    dense, lexical = ranked("dense"), ranked("lexical")
    try:
        write_manifest(index_dir, {**manifest, "hybrid": Fusion("weighted", 0.0).to_dict()})
        assert ranked("hybrid") == dense
        write_manifest(index_dir, {**manifest, "hybrid": Fusion("weighted", 1000.0).to_dict()})
        brand1_heels = {"p011", "p111", "p211", "p311"}  # the only products holding both terms
        assert set(ranked("hybrid")[:4]) == set(lexical[:4]) == brand1_heels
        assert set(dense[:4]) != brand1_heels, dense
    finally:
        write_manifest(index_dir, manifest)


def test_search_and_evaluate_commands_in_every_mode(built: tuple[Path, Path], tmp_path: Path) -> None:
    data_dir, index_dir = built
    runner = CliRunner()
    found = runner.invoke(app, ["search", "--index", str(index_dir), "brand1 heels", "--hybrid", "--json", "-k", "5"])
    assert found.exit_code == 0, found.output
    answer = json.loads(found.stdout)
    assert answer["mode"] == "hybrid" and all(r["channels"] for r in answer["results"])
    table = runner.invoke(app, ["search", "--index", str(index_dir), "brand1 heels", "--mode", "lexical"])
    assert table.exit_code == 0 and "lexical #1" in table.output and "none: no model ran" in table.output
    evaluated = runner.invoke(
        app, ["evaluate", "--run", str(index_dir.parent / "run"), "--data", str(data_dir), "--hybrid", "--json"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["model"] == "MAKE+BM25"

    plain = tmp_path / "plain"
    args = ["embed", "--run", str(index_dir.parent / "run"), "--data", str(data_dir), "--out", str(plain)]
    assert runner.invoke(app, [*args, "--no-lexical"]).exit_code == 0
    assert not (plain / "lexical").exists() and "hybrid" not in read_manifest(plain)
    refused = runner.invoke(app, ["search", "--index", str(plain), "heels", "--hybrid"])
    assert refused.exit_code == 2 and "no lexical channel" in refused.output
