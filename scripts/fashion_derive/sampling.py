"""Seeded sampling: every random choice of the script comes from rng_for and draws from sorted
items, so that reruns give byte-identical files; plus proportional allocation with a floor."""

from __future__ import annotations

import random


def rng_for(seed: int, *parts: str) -> random.Random:
    """The random generator of one purpose (`parts`) under --seed."""
    # String seeds are hashed with SHA-512 by random.seed (version 2): stable across processes.
    return random.Random("|".join([str(seed), *parts]))


def allocate(counts: dict[str, int], total: int, floor: int) -> dict[str, int]:
    """Proportional allocation of `total` over keys with a floor, capped at counts (largest
    remainder, ties broken by key)."""
    keys = sorted(counts)
    if total >= sum(counts.values()):
        return dict(counts)
    floor = min(floor, total // max(1, len(keys)))
    alloc = {k: min(counts[k], floor) for k in keys}
    while True:
        left = total - sum(alloc.values())
        open_keys = [k for k in keys if alloc[k] < counts[k]]
        if left <= 0 or not open_keys:
            return alloc
        weight = sum(counts[k] - alloc[k] for k in open_keys)
        shares = {k: left * (counts[k] - alloc[k]) / weight for k in open_keys}
        add = {k: min(int(shares[k]), counts[k] - alloc[k]) for k in open_keys}
        if sum(add.values()) == 0:
            order = sorted(open_keys, key=lambda k: (-(shares[k] - int(shares[k])), k))
            for k in order[:left]:
                alloc[k] += 1
            continue
        for k in open_keys:
            alloc[k] += add[k]


def sample_sorted(rng: random.Random, items: list, k: int) -> list:
    """`k` of `items` drawn by `rng`, sorted (all of them, sorted, if there are no more than `k`)."""
    items = sorted(items)
    if k >= len(items):
        return items
    return sorted(rng.sample(items, k))


def stratified_cap(items_by_kind: dict[str, list], cap: int, rng: random.Random) -> dict[str, list]:
    """At most `cap` items in all, drawn per kind in proportion to the kind's size (see allocate)."""
    counts = {k: len(v) for k, v in items_by_kind.items() if v}
    alloc = allocate(counts, cap, floor=0)
    return {k: sample_sorted(rng, items_by_kind[k], alloc.get(k, 0)) for k in sorted(items_by_kind)}
