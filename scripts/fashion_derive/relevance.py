"""Relevance of a product for an intent: the definition (grade) and the index of the chosen
products that computes it by set algebra (ProductIndex)."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from .vocabulary import GENDER_MATCHES, Intent


def grade(intent: Intent, colour: str, gender: str | None, usage: str) -> int:
    """2 = matches every attribute, 1 = type plus some (not all) others, 0 = not relevant.
    The caller only passes products of the intent's article type."""
    checks = []
    if intent.colour:
        checks.append(colour == intent.colour)
    if intent.gender:
        checks.append(gender is not None and gender in GENDER_MATCHES[intent.gender])
    if intent.usage:
        checks.append(usage == intent.usage)
    hit = sum(checks)
    if hit == len(checks):
        return 2
    return 1 if hit >= 1 else 0


class ProductIndex:
    """The chosen products by (article type, attribute, value): relevance by set algebra, not by scans."""

    def __init__(self, products: pd.DataFrame) -> None:
        self.ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.attrs: dict[str, tuple[str, str | None, str]] = {}  # product_id -> (colour, gender, usage)
        columns = ("product_id", "article_type", "base_colour", "gender", "usage")
        for pid, t, c, g, u in zip(*(products[col] for col in columns), strict=True):
            self.ids[(t, "type", "")].add(pid)
            self.ids[(t, "colour", c)].add(pid)
            for q, m in GENDER_MATCHES.items():
                if g in m:
                    self.ids[(t, "gender", q)].add(pid)
            self.ids[(t, "usage", u)].add(pid)
            self.attrs[pid] = (c, g, u)

    def relevant(self, it: Intent) -> list[tuple[str, int]]:
        """(product_id, grade) sorted by product_id; see grade() for the definition."""
        t = it.article_type
        sets = [self.ids.get((t, a, getattr(it, a)), set()) for a in ("colour", "gender", "usage") if getattr(it, a)]
        if not sets:
            return [(pid, 2) for pid in sorted(self.ids[(t, "type", "")])]
        rel2 = set.intersection(*sets)
        rel1 = set.union(*sets) - rel2
        return sorted([(pid, 2) for pid in rel2] + [(pid, 1) for pid in rel1])

    def graded(self, it: Intent) -> list[tuple[str, int]]:
        """relevant() computed by grade() on every product of the type: the definition, to cross-check."""
        ids = self.ids[(it.article_type, "type", "")]
        return sorted((pid, r) for pid in ids if (r := grade(it, *self.attrs[pid])))
