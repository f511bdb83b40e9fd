"""The lexical channel: BM25 (bm25s) over each product's title and chosen metadata columns, with the
tokenizer of Keyword Enhancement. It finds what an embedding blurs (brand names, model numbers,
"128gb"); ``retrieval.py`` fuses it with the vector store.

An index folder keeps it in ``lexical/``: bm25s's sparse score matrix (one float32 and one int32 per
distinct term of each product, about 8 bytes x 20 terms = 160 bytes a product; opened memory-mapped,
so the pages a query touches are what it holds in RAM), the row -> product id and category table, and
``lexical.json`` (which fields, how many products). It is rebuilt whole from the catalog by ``embed``
and ``sync``: BM25's term statistics change with every product added, so there is nothing to patch.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from make_retrieval.data.keywords import tokenize
from make_retrieval.errors import ConfigError
from make_retrieval.index.store import Hit

if TYPE_CHECKING:  # data.catalog loads torch (datasets), which searching an exported index never needs
    from make_retrieval.data.catalog import Catalog

FOLDER = "lexical"
INFO = "lexical.json"
TABLE = "products.parquet"


def parse_fields(fields: str | Sequence[str]) -> list[str]:
    """Metadata columns named as "brand,model" (config and CLI) or as a list."""
    names = fields.split(",") if isinstance(fields, str) else list(fields)
    return [name.strip() for name in names if name.strip()]


def lexical_text(title: str, metadata: dict[str, Any], fields: Sequence[str]) -> str:
    """What BM25 reads for a product: its title, then the values of ``fields`` it has."""
    values = [str(metadata[f]) for f in fields if metadata.get(f) not in (None, "")]
    return " ".join([title, *values])


class LexicalIndex:
    """BM25 over the products' texts, searched by query string, optionally within one category (a
    ``Retriever``: the BM25 baseline of ``evaluate`` and ``benchmark`` is this over the catalog)."""

    name = "BM25"

    def __init__(self, bm25: Any, product_ids: list[str], categories: list[str | None], fields: list[str]):
        self.bm25, self.product_ids, self.fields = bm25, product_ids, fields
        self.categories = categories
        #: Each product's category as an integer code: a category filter is one integer comparison.
        self.codes = {c: i for i, c in enumerate(dict.fromkeys(categories))}
        self.category_codes = np.array([self.codes[c] for c in categories], dtype=np.int32)
        self.rows = {pid: r for r, pid in enumerate(product_ids)}
        self.vocabulary = set(bm25.vocab_dict)

    @classmethod
    def build(
        cls, product_ids: Sequence[str], texts: Sequence[str], categories: Sequence[str | None], fields: Sequence[str]
    ) -> LexicalIndex:
        """Index ``texts`` (one per product id)."""
        import bm25s  # imported here: opening an index without its lexical channel needs none of it

        if not product_ids:
            raise ConfigError("the lexical channel needs at least one product")

        bm25 = bm25s.BM25()
        bm25.index([tokenize(t) for t in texts], show_progress=False)
        return cls(bm25, list(product_ids), list(categories), list(fields))

    @classmethod
    def from_catalog(cls, catalog: Catalog, fields: str | Sequence[str] = ()) -> LexicalIndex:
        """Index every catalog product's title and ``fields`` (metadata columns, "brand,model" or a list)."""
        fields = parse_fields(fields)
        texts = [lexical_text(t, m, fields) for t, m in zip(catalog.titles, catalog.metadata, strict=True)]
        return cls.build(catalog.product_ids, texts, catalog.categories, fields)

    def __len__(self) -> int:
        return len(self.product_ids)

    def terms(self, query: str) -> list[str]:
        """The query's terms that some product holds (the others cannot score)."""
        return [t for t in tokenize(query) if t in self.vocabulary]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every product (row order) for ``query``; all 0 when none of its terms occur."""
        terms = self.terms(query)
        if not terms:
            return np.zeros(len(self.product_ids), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(terms), dtype=np.float32)

    def score_ids(self, scores: np.ndarray, product_ids: Sequence[str]) -> np.ndarray:
        """The entries of ``scores`` (one per row, as the ``scores`` method gives them) for
        ``product_ids`` (0 for an id not indexed)."""
        rows = np.array([self.rows.get(pid, -1) for pid in product_ids], dtype=np.int64)
        return np.where(rows >= 0, scores[np.maximum(rows, 0)], 0.0).astype(np.float32)

    def search(self, queries: Sequence[str], k: int, category: str | None = None) -> list[list[Hit]]:
        """Top-k products per query by BM25 (only those holding a query term; only ``category``'s if
        given): a query with no known term finds nothing rather than arbitrary products."""
        return [self.top(self.scores(query), k, category) for query in queries]

    def top(self, scores: np.ndarray, k: int, category: str | None = None) -> list[Hit]:
        """The best ``k`` positive ``scores`` (one per row) as hits, best first."""
        if category is not None:
            code = self.codes.get(category, -1)
            scores = np.where(self.category_codes == code, scores, 0.0)
        k = min(k, len(scores))
        if k == 0:
            return []
        rows = np.argpartition(-scores, k - 1)[:k]
        rows = rows[np.argsort(-scores[rows], kind="stable")]
        rows = rows[scores[rows] > 0]
        ids = self.product_ids
        return [Hit(ids[r], s) for r, s in zip(rows.tolist(), scores[rows].tolist(), strict=True)]

    def save(self, index_dir: Path) -> None:
        """Write ``index_dir/lexical``, replacing what was there as a whole: the new folder is written
        beside it and renamed into place, so a server that has the old files memory-mapped keeps
        reading them (unlinked, not overwritten) and a crash mid-write leaves the old channel."""
        folder, staging, old = (index_dir / name for name in (FOLDER, f".{FOLDER}.new", f".{FOLDER}.old"))
        for leftover in (staging, old):
            shutil.rmtree(leftover, ignore_errors=True)
        staging.mkdir(parents=True)
        self.bm25.save(str(staging), show_progress=False)
        pq.write_table(pa.table({"product_id": self.product_ids, "category": self.categories}), staging / TABLE)
        info = {"fields": self.fields, "products": len(self), "method": "bm25s lucene k1=1.5 b=0.75"}
        (staging / INFO).write_text(json.dumps(info, indent=2))
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, index_dir: Path) -> LexicalIndex | None:
        """The lexical channel of an index folder, None if it has none."""
        folder = index_dir / FOLDER
        if not (folder / INFO).is_file():
            return None
        import bm25s

        info = json.loads((folder / INFO).read_text())
        table = pq.read_table(folder / TABLE).to_pydict()
        bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        return cls(bm25, table["product_id"], table["category"], info["fields"])
