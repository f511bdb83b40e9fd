"""Keyword Enhancement, part 1: keywords of each product, mined from the training clicks.

A product's keywords are its title terms ranked by (click-query frequency + ``prior``) x IDF: terms
that the queries which clicked it used come first, and a product nobody clicked falls back to IDF
alone (docs/METHOD.md, Ours). Nothing external is needed, and the tokenizer splits CJK text into
characters so that Chinese titles work too.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

# A CJK ideograph / kana / hangul character is a token on its own; other scripts split on non-word runs.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased terms of ``text``; used for keywords, query similarity and BM25 alike."""
    return _TOKEN.findall(text.lower())


class KeywordExtractor:
    """Fitted on catalog titles and training clicks; maps a product position to its keywords."""

    def __init__(self, keywords: list[list[str]]):
        self.keywords = keywords

    @classmethod
    def fit(
        cls,
        titles: Sequence[str],
        clicks: Iterable[tuple[str, int]],
        num_keywords: int,
        prior: float = 0.1,
    ) -> KeywordExtractor:
        """Rank each title's distinct terms by (click-query frequency + prior) x IDF over titles.
        ``clicks`` ((query, product position) pairs) is read once, so it may stream from shards."""
        title_terms = [list(dict.fromkeys(tokenize(t))) for t in titles]
        df = Counter(term for terms in title_terms for term in terms)
        n = len(titles)
        idf = {term: math.log(1 + n / count) for term, count in df.items()}
        clicked: list[Counter] = [Counter() for _ in titles]
        for query, product in clicks:
            clicked[product].update(set(tokenize(query)))
        keywords = []
        for terms, counts in zip(title_terms, clicked, strict=True):
            ranked = sorted(terms, key=lambda t: -(counts[t] + prior) * idf[t])
            chosen = set(ranked[:num_keywords])
            keywords.append([t for t in terms if t in chosen])  # keep title order: reads like a query
        return cls(keywords)

    def text(self, product: int) -> str:
        """The keyword string used as a pseudo-query for ``product``."""
        return " ".join(self.keywords[product])

    def save(self, path: Path, product_ids: Sequence[str]) -> None:
        """Write {product_id: [keywords]} as JSON, for inspection."""
        path.write_text(json.dumps(dict(zip(product_ids, self.keywords, strict=True)), ensure_ascii=False))
