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
from make_retrieval.errors import ConfigError
from make_retrieval.hybrid import LEXICAL_WEIGHTS, choose_fusion, fusion_setting
from make_retrieval.index.fusion import Candidates, Fusion, fuse
from make_retrieval.index.lexical import LexicalIndex, lexical_text
from make_retrieval.index.store import Hit, read_manifest, write_manifest
from make_retrieval.pipeline import sync_index
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
    assert lexical.score_ids(lexical.scores("128gb"), ["p1", "missing"]).tolist() == [0.0, 0.0]
    lexical.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded is not None and loaded.fields == ["brand"] and len(loaded) == 4
    for query in ("128gb phone", "acme black", "strada shoe"):
        assert loaded.search([query], 4) == lexical.search([query], 4)
    assert LexicalIndex.load(tmp_path / "nothing") is None
    # rebuilt under a reader that has the old files memory-mapped (sync under serve): it keeps reading them
    LexicalIndex.build(["n0"], ["strada boot"], ["shoe"], []).save(tmp_path)
    assert loaded.search(["strada"], 5) == lexical.search(["strada"], 5)
    reopened = LexicalIndex.load(tmp_path)
    assert reopened is not None and reopened.product_ids == ["n0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lexical"], "no staging folder is left"


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


def _ranked(ids: list[str], placed: dict[str, int]) -> np.ndarray:
    """Dense scores putting each id of ``placed`` at its rank and the others in the free ranks:
    1 - 0.00101 (rank - 1), a step that no lexical weight tried moves a product by a whole rank."""
    free = iter(r for r in range(1, len(ids) + 1) if r not in placed.values())
    ranks = [placed.get(pid) or next(free) for pid in ids]
    return 1.0 - 0.00101 * (np.array(ranks, dtype=np.float32) - 1)


def test_the_choice_gains_recall_only_above_the_ndcg_floor() -> None:
    """300 products. "kappa" wants p000 (grade 3, dense 1st) and p001 (grade 1, dense 130th; BM25
    finds it with 12 unwanted "kappa" products). "omega" wants p014 (grade 3, dense 1st) and p013
    (grade 1, dense 250th; the one "omega" product). Weights 0.05 and 0.1 lift p001 into the top 100
    and keep p000 first; from 0.2 p013 enters too, but p001 and the 12 outrank p000, whose NDCG@10
    falls below the dense channel's: among weights the rule must stop at 0.05. RRF, which the dense
    channel's 130th place does not reach (not proposed), puts p001 and p013 second: it wins."""
    ids = [f"p{i:03d}" for i in range(300)]
    kappa = _ranked(ids, {"p000": 1, "p001": 130, **{f"p{i:03d}": 133 + i for i in range(2, 14)}})
    omega = _ranked(ids, {"p014": 1, "p013": 250})
    dense = FixedDense(ids, np.stack([kappa, omega], 1), {"kappa": np.eye(2)[0], "omega": np.eye(2)[1]})
    texts = ["kappa item" if 1 <= i <= 12 else "omega item" if i == 13 else "plain item" for i in range(300)]
    lexical = LexicalIndex.build(ids, texts, [None] * 300, [])
    valid = {"kappa": {"p000": 3, "p001": 1}, "omega": {"p014": 3, "p013": 1}}
    hybrid = HybridRetriever(dense, lexical, Fusion())
    chosen = choose_fusion(hybrid, valid, ("weighted",))
    tried = {t["lexical_weight"]: t for t in chosen.tried}
    floor = tried[0.0]["ndcg@10"]
    assert tried[0.0]["recall@100"] == tried[0.02]["recall@100"] == 0.5
    assert tried[0.05]["recall@100"] == tried[0.1]["recall@100"] == 0.75 and tried[0.05]["ndcg@10"] == floor
    for weight in (0.2, 0.5, 2.0):
        assert tried[weight]["recall@100"] == 1.0 and tried[weight]["ndcg@10"] < floor
    assert (chosen.method, chosen.lexical_weight, chosen.chosen_on) == ("weighted", 0.05, "valid")
    with_rrf = choose_fusion(hybrid, valid)
    assert with_rrf.method == "rrf" and with_rrf.tried[-1] == {**with_rrf.tried[-1], "ndcg@10": 1.0, "recall@100": 1.0}
    # with only "omega" judged, p013's climb costs no NDCG@10: the highest recall, 0.2, is taken
    only_omega = choose_fusion(hybrid, {"omega": valid["omega"]}, ("weighted",))
    assert (only_omega.method, only_omega.lexical_weight) == ("weighted", 0.2)


def test_the_fusion_setting_follows_the_options() -> None:
    dense = FixedDense(["p0", "p1", "p2", "p3"], np.eye(4, 2, dtype=np.float32), {"acme 128gb": np.eye(2)[0]})
    hybrid = HybridRetriever(dense, _lexical(), Fusion())
    valid = {"acme 128gb": {"p0": 2}}
    assert fusion_setting(IndexConfig(lexical_weight=0.3), hybrid, valid) == Fusion("weighted", 0.3, chosen_on="option")
    assert fusion_setting(IndexConfig(fusion="rrf"), hybrid, valid).method == "rrf"
    assert fusion_setting(IndexConfig(), hybrid, None).chosen_on == "default"  # rrf: no weight to choose
    assert fusion_setting(IndexConfig(fusion="weighted"), hybrid, valid).method == "weighted"
    for bad in (IndexConfig(fusion="weighted"), IndexConfig(fusion="max"), IndexConfig(fusion="rrf", lexical_weight=1)):
        with pytest.raises(ConfigError, match=r"valid split|unknown fusion|rrf has none"):
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


def test_sync_rebuilds_a_lexical_channel_that_is_not_the_catalogs(built: tuple[Path, Path]) -> None:
    """A sync stopped after the store was saved leaves BM25 behind; the next sync, with nothing to
    embed, still notices and rebuilds it."""
    data_dir, index_dir = built
    before = LexicalIndex.load(index_dir)
    assert before is not None
    LexicalIndex.build(before.product_ids[:5], ["stale"] * 5, before.categories[:5], before.fields).save(index_dir)
    report = sync_index(index_dir, data_dir)
    assert (report.added, report.updated, report.deleted, report.lexical) == (0, 0, 0, True)
    after = LexicalIndex.load(index_dir)
    assert after is not None and after.product_ids == before.product_ids
    assert after.search(["brand1 heels"], 4) == before.search(["brand1 heels"], 4)
    assert sync_index(index_dir, data_dir).lexical is False, "in line: not rebuilt again"


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
    on_valid = runner.invoke(
        app,
        ["evaluate", "--run", str(index_dir.parent / "run"), "--data", str(data_dir), "--hybrid", "--split", "valid"],
    )
    assert on_valid.exit_code == 2 and "evaluate it on test" in on_valid.output
    weighted = runner.invoke(
        app, [*args, "--fusion", "weighted", "--lexical-weight", "0.3", "--out", str(tmp_path / "w")]
    )
    assert weighted.exit_code == 0 and read_manifest(tmp_path / "w")["hybrid"]["lexical_weight"] == 0.3
    conflicting = runner.invoke(app, [*args, "--fusion", "rrf", "--lexical-weight", "1", "--out", str(tmp_path / "x")])
    assert conflicting.exit_code == 2 and "rrf has none" in conflicting.output
    assert not (tmp_path / "x").exists(), "refused before anything is embedded or written"
