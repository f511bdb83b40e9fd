"""Hybrid retrieval set up: build an index folder's lexical channel and decide, on the validation
split, how hybrid search fuses it with the dense one (``embed``, ``sync``, ``evaluate --hybrid`` and
the benchmark's ``make+bm25`` rows all come here, so they fuse alike)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from make_retrieval.config import IndexConfig
from make_retrieval.data.catalog import Catalog
from make_retrieval.data.pairs import DataDir, Judgements
from make_retrieval.errors import ConfigError
from make_retrieval.evaluate import EvaluationResult, ExactRetriever, evaluate_retriever, score_hits
from make_retrieval.index.fusion import FUSIONS, Fusion, fuse
from make_retrieval.index.lexical import FOLDER, LexicalIndex
from make_retrieval.index.store import read_manifest, write_manifest
from make_retrieval.model.make import MAKEModel
from make_retrieval.retrieval import DenseChannel, HybridRetriever

#: Lexical weights tried on valid: spaced by factors, since a cosine and a normalised BM25 score
#: live on different scales and the useful weight is not known to within 10x beforehand.
LEXICAL_WEIGHTS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: The cut-off of the recall that the choice maximises: what the retrieval phase hands a ranker.
RECALL_AT = 100


def choose_fusion(hybrid: HybridRetriever, judgements: Judgements, methods: tuple[str, ...] = FUSIONS) -> Fusion:
    """The fusion (of ``methods``) that retrieves most on ``judgements`` without ranking worse than
    the dense channel alone: the highest Recall@100 among the settings whose NDCG@10 is at least the
    dense channel's (ties: higher NDCG@10, then the first tried, i.e. less lexical weight). Recall
    is the retrieval phase's job (a ranker reorders what it finds) and the NDCG floor keeps the top of
    the list; weight 0, the dense ranking itself, always qualifies. Each channel proposes
    ``max(100, depth)`` candidates: what a served search for k <= 100 gets at the default depth."""
    queries = sorted(judgements)
    depth = hybrid.fusion.depth
    candidates, _ = hybrid.candidates(queries, RECALL_AT)
    weights = LEXICAL_WEIGHTS if "weighted" in methods else LEXICAL_WEIGHTS[:1]  # 0: the dense floor
    settings = [Fusion("weighted", w, depth=depth) for w in weights]
    settings += [Fusion("rrf", depth=depth)] if "rrf" in methods else []
    tried = []
    for setting in settings:
        per_query = score_hits(queries, [fuse(c, setting, RECALL_AT) for c in candidates], judgements)
        figures = {m: round(float(np.mean(per_query[m])), 4) for m in ("ndcg@10", f"recall@{RECALL_AT}")}
        tried.append({"method": setting.method, "lexical_weight": setting.lexical_weight, **figures})
    floor = tried[0]["ndcg@10"]
    eligible = [i for i, t in enumerate(tried) if t["ndcg@10"] >= floor]
    best = max(eligible, key=lambda i: (tried[i][f"recall@{RECALL_AT}"], tried[i]["ndcg@10"], -i))
    return Fusion(**{**settings[best].to_dict(), "chosen_on": "valid", "tried": tried})


def check_fusion(settings: IndexConfig, has_valid: bool) -> None:
    """Refuse fusion settings that cannot be met, before any product is embedded."""
    if settings.fusion not in ("auto", *FUSIONS):
        raise ConfigError(f"unknown fusion '{settings.fusion}'; choose auto, {', '.join(FUSIONS)}")
    if settings.lexical_weight is not None and settings.fusion == "rrf":
        raise ConfigError("a lexical weight is for weighted fusion; rrf has none")
    if settings.fusion == "weighted" and settings.lexical_weight is None and not has_valid:
        raise ConfigError("weighted fusion chooses its weight on the valid split: add one or set lexical_weight")


def fusion_setting(settings: IndexConfig, hybrid: HybridRetriever, valid: Judgements | None) -> Fusion:
    """The fusion ``settings`` ask for: a weight or rrf set by option, else chosen on ``valid``; with
    no valid split, rrf (it has no weight to choose)."""
    check_fusion(settings, bool(valid))
    depth = settings.hybrid_depth
    if settings.lexical_weight is not None:
        return Fusion("weighted", settings.lexical_weight, depth=depth, chosen_on="option")
    if settings.fusion == "rrf":
        return Fusion("rrf", depth=depth, chosen_on="option")
    if not valid:
        return Fusion("rrf", depth=depth, chosen_on="default")
    methods = FUSIONS if settings.fusion == "auto" else (settings.fusion,)
    hybrid.fusion = Fusion(depth=depth)
    return choose_fusion(hybrid, valid, methods)


def add_lexical_channel(
    index_dir: Path, catalog: Catalog, dense: DenseChannel, settings: IndexConfig, valid: Judgements | None
) -> dict[str, Any]:
    """Write ``index_dir/lexical`` from ``catalog`` and record the fusion in the manifest (under
    ``hybrid``); with ``settings.lexical`` off, remove any lexical channel left there. The folder's
    manifest, as written."""
    manifest = read_manifest(index_dir)
    if settings.lexical:
        lexical = LexicalIndex.from_catalog(catalog, settings.lexical_fields)
        fusion = fusion_setting(settings, HybridRetriever(dense, lexical, Fusion()), valid)
        lexical.save(index_dir)
        manifest["hybrid"] = fusion.to_dict()
    else:
        shutil.rmtree(index_dir / FOLDER, ignore_errors=True)
        manifest.pop("hybrid", None)
    write_manifest(index_dir, manifest)
    return manifest


def rebuild_lexical_channel(index_dir: Path, catalog: Catalog, changed: bool) -> bool:
    """``sync``'s part: rebuild the lexical channel from the synced catalog with the fields it was
    built with (the fusion stays as chosen) when products ``changed``, or when its products are not
    the catalog's (a sync stopped between the store and this). Whether it was rebuilt."""
    lexical = LexicalIndex.load(index_dir)
    if lexical is None or not (changed or lexical.product_ids != catalog.product_ids):
        return False
    LexicalIndex.from_catalog(catalog, lexical.fields).save(index_dir)
    return True


def evaluate_hybrid(
    model: MAKEModel, data: DataDir, split: str, settings: IndexConfig
) -> tuple[EvaluationResult, Fusion]:
    """A model's embedding of the catalog (searched exactly) fused with BM25 over it, the fusion
    set as ``embed`` sets it (chosen on ``data``'s valid split), evaluated on ``split``."""
    lexical = LexicalIndex.from_catalog(data.catalog, settings.lexical_fields)
    hybrid = HybridRetriever(ExactRetriever(model, data.catalog), lexical, Fusion())
    hybrid.fusion = fusion_setting(settings, hybrid, data.judgements.get("valid"))
    return evaluate_retriever(hybrid, data.judgements[split], data.catalog, split), hybrid.fusion
