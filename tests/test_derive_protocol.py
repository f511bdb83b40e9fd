"""scripts/derive_protocol.py: the development splits of issue 21 (small-log, text-only,
colour-from-photo, compositional, category-held-out) hold their size limits and split properties,
checked on the files they write, and are byte-identical across runs.

Runs the script's main() on a tiny synthetic source folder (no /work/shared), with the protocol's
size limits scaled down so that the product and click caps really cut."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_derive_colour import load_script, write_source

pytest.importorskip("pandas")  # the script's only dependency outside the project's

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "derive_protocol.py"
# (article type, type word in titles, master category, sub category): Tshirts' "t shirt" names
# Shirts, Kurta Sets' "kurta set" Kurtas, Sports Sandals' "sports sandals" Sandals
TYPES = [
    ("Shirts", "Shirt", "Apparel", "Topwear"),
    ("Tshirts", "Tshirt", "Apparel", "Topwear"),
    ("Kurtas", "Kurta", "Apparel", "Topwear"),
    ("Kurta Sets", "Kurta Set", "Apparel", "Apparel Set"),
    ("Tops", "Top", "Apparel", "Topwear"),
    ("Dresses", "Dress", "Apparel", "Dress"),
    ("Jeans", "Jeans", "Apparel", "Bottomwear"),
    ("Watches", "Watch", "Accessories", "Watches"),
    ("Handbags", "Handbag", "Accessories", "Bags"),
    ("Heels", "Heels", "Footwear", "Shoes"),
    ("Sandals", "Sandals", "Footwear", "Sandal"),
    ("Sports Sandals", "Sports Sandals", "Footwear", "Sandal"),
]
COLOURS = ["Red", "Green", "Blue", "Black", "Navy Blue"]
GENDERS = ["Men", "Women"]
USAGES = ["Casual", "Formal", "Ethnic"]
# rare colours, each of one type only (3 women's casual products): a small log may miss them
RARE = [(1, "Mauve"), (2, "Peach"), (4, "Gold"), (5, "Silver"), (6, "Tan"), (7, "Grey"), (8, "Beige"), (9, "Pink")]
SMALL = {"products": 300, "max_clicks": 150}  # the limits of the small splits in this test
LARGE = {"products": 400, "max_clicks": 250}  # of colour-from-photo
SPLITS = ("train", "valid", "test")
NAMES = ("small-log", "text-only", "colour-from-photo", "compositional", "category-held-out")


def make_source(root: Path) -> Path:
    """About 500 products: 2 per (type, colour, gender, usage) for 2 of every 3 such combinations, and
    the RARE colours."""
    combos = [
        (TYPES[t], colour, gender, usage, 2)
        for t in range(len(TYPES))
        for c, colour in enumerate(COLOURS)
        for g, gender in enumerate(GENDERS)
        for u, usage in enumerate(USAGES)
        if (t + c + g + u) % 3
    ]
    combos += [(TYPES[t], colour, "Women", "Casual", 3) for t, colour in RARE]
    rows = []
    for (atype, word, master, sub), colour, gender, usage, k in combos:
        for j in range(k):
            pid = str(10000 + len(rows))
            rows.append(
                {
                    "product_id": pid,
                    "title": f"Brand{j} {gender} {colour} {word}",
                    "image": f"images/{pid}.jpg",
                    "master_category": master,
                    "sub_category": sub,
                    "article_type": atype,
                    "base_colour": colour,
                    "usage": usage,
                }
            )
    return write_source(root, rows)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The protocol built twice from one source, each run into `protocol` under its own folder."""
    mod = load_script(SCRIPT)
    protocol = importlib.import_module("fashion_derive.protocol")
    tmp = tmp_path_factory.mktemp("protocol")
    src = make_source(tmp / "src")
    scaled = [dataclasses.replace(s, **(LARGE if s.name == "colour-from-photo" else SMALL)) for s in protocol.PROTOCOL]
    runs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protocol, "PROTOCOL", scaled)
        for run in ("a", "b"):
            (tmp / run).mkdir()
            mp.chdir(tmp / run)  # the same --out in both runs: READMEs name it
            assert mod.main(["--source", str(src), "--out", "protocol", "--seed", "5"]) == 0
            runs.append(tmp / run / "protocol")
    return src, runs


def table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def intents(out: Path) -> dict[str, dict[str, dict[str, str]]]:
    """split -> query -> {article_type, colour, gender, usage} as stats.json records them."""
    recorded = json.loads((out / "stats.json").read_text())["protocol"]["query_intents"]
    keys = ("article_type", "colour", "gender", "usage")
    return {s: {q: dict(zip(keys, k.split("|"), strict=True)) for q, k in recorded[s].items()} for s in SPLITS}


def grade(intent: dict[str, str], product: dict) -> int:
    """The relevance definition of the README, written again: 2 all attributes, 1 type and some."""
    if product["article_type"] != intent["article_type"]:
        return 0
    genders = {"Men": {"Men", "Unisex"}, "Women": {"Women", "Unisex"}}.get(intent["gender"], {intent["gender"]})
    allowed = {"colour": ("base_colour", {intent["colour"]}), "gender": ("gender", genders)}
    allowed["usage"] = ("usage", {intent["usage"]})
    checks = [product[col] in ok for attr, (col, ok) in allowed.items() if intent[attr]]
    return 2 if all(checks) else 1 if any(checks) else 0


def test_caps_and_recorded_intents_match_the_files(built):
    src, (out, _) = built
    source = {r["product_id"]: r for r in table(src / "products.parquet")}
    for name in NAMES:
        d = out / name
        limits = LARGE if name == "colour-from-photo" else SMALL
        stats = json.loads((d / "stats.json").read_text())
        products = {r["product_id"]: {**source[r["product_id"]], **r} for r in table(d / "products.parquet")}
        rows = {s: table(d / f"{s}.parquet") for s in SPLITS}
        assert len(products) == limits["products"], name
        assert 0 < len(rows["train"]) <= limits["max_clicks"], name
        assert stats["protocol"]["train_queries_before_log_cut"] > stats["queries"]["train"], name  # the cap cut
        recorded = intents(d)
        queries = {s: {r["query"] for r in rows[s]} for s in SPLITS}
        assert all(queries[s] == set(recorded[s]) and queries[s] for s in SPLITS), name
        assert not (queries["train"] & queries["valid"] or queries["train"] & queries["test"])
        assert not queries["valid"] & queries["test"], name
        for r in rows["train"]:  # every click is a fully matching product of its query's intent
            assert grade(recorded["train"][r["query"]], products[r["product_id"]]) == 2, (name, r)
        for s in ("valid", "test"):  # the judgements are every relevant product, graded
            got = {(r["query"], r["product_id"]): r["relevance"] for r in rows[s]}
            want = {(q, pid): g for q, it in recorded[s].items() for pid, p in products.items() if (g := grade(it, p))}
            assert got == want, (name, s)


def test_text_only_is_small_log_without_photos(built):
    _, (out, _) = built
    small, text = out / "small-log", out / "text-only"
    for s in SPLITS:
        assert (small / f"{s}.parquet").read_bytes() == (text / f"{s}.parquet").read_bytes(), s
    assert not (text / "images").exists()
    assert len(list((small / "images").iterdir())) == SMALL["products"]
    a, b = table(small / "products.parquet"), table(text / "products.parquet")
    assert all(r["image"] is None for r in b)
    assert [{**r, "image": None} for r in a] == b
    # make_retrieval reads it as a catalog of text-only products
    from make_retrieval.data.pairs import load_data_dir

    data = load_data_dir(text)
    assert len(data.catalog) == SMALL["products"] and not data.catalog.has_image.any()
    assert data.report.text_only == {"none given": SMALL["products"]}


def test_colour_from_photo_has_no_colour_in_titles(built):
    _, (out, _) = built
    products = table(out / "colour-from-photo" / "products.parquet")
    assert "base_colour" not in products[0]
    colour_words = {w.lower() for c in COLOURS + [c for _, c in RARE] for w in c.split()}
    assert not any(set(r["title"].lower().split()) & colour_words for r in products)
    assert len(list((out / "colour-from-photo" / "images").iterdir())) == LARGE["products"]


def values(it: dict[str, str]) -> set[tuple[str, str]]:
    return {(k, v) for k, v in it.items() if v}


def test_compositional_tests_unseen_combinations_of_seen_values(built):
    _, (out, _) = built
    recorded = intents(out / "compositional")
    train = {tuple(it.values()) for it in recorded["train"].values()}
    seen = set().union(*(values(it) for it in recorded["train"].values()))
    assert {k for k, _ in seen} == {"article_type", "colour", "gender", "usage"}
    for s in ("valid", "test"):
        assert recorded[s], s
        for q, it in recorded[s].items():
            assert tuple(it.values()) not in train, (s, q)  # the combination is new
            assert len(values(it)) >= 2 and values(it) <= seen, (s, q)  # of values each trained
    valid = {tuple(it.values()) for it in recorded["valid"].values()}
    assert not valid & {tuple(it.values()) for it in recorded["test"].values()}
    # not true of any split: small-log's random small log leaves values of its eval intents untrained
    small = intents(out / "small-log")
    seen_small = set().union(*(values(it) for it in small["train"].values()))
    assert any(not values(it) <= seen_small for s in ("valid", "test") for it in small[s].values())


def test_category_held_out_types_never_named_in_training(built):
    _, (out, _) = built
    d = out / "category-held-out"
    held = json.loads((d / "stats.json").read_text())["protocol"]["held_out_types"]
    recorded = intents(d)
    types = {s: {it["article_type"] for it in recorded[s].values()} for s in SPLITS}
    assert types["test"] and types["valid"] and types["test"] <= set(held["test"])
    assert types["valid"] <= set(held["valid"]) and not set(held["test"]) & set(held["valid"])
    assert not (types["train"] & (types["valid"] | types["test"]))
    # no training query holds a word of a held-out type ("sandals" in "sports sandals" counts)
    type_words = importlib.import_module("fashion_derive.vocabulary").type_words
    for s, named_by in (("valid", ["train"]), ("test", ["train", "valid"])):
        words = {w for t in held[s] for w in type_words(t)}
        for q in (q for n in named_by for q in recorded[n]):
            assert not any(f" {w} " in f" {q} " for w in words), (s, q)
    grouped = [{"Shirts", "Tshirts"}, {"Kurtas", "Kurta Sets"}, {"Sandals", "Sports Sandals"}]
    held_any = set(held["test"]) | set(held["valid"])
    assert all(len(g & held_any) in (0, 2) for g in grouped)


def test_deterministic_and_described(built):
    _, (a, b) = built
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for p in files:
        assert (a / p).read_bytes() == (b / p).read_bytes(), p
    for name in NAMES:
        readme = (a / name / "README.md").read_text()
        assert f"split `{name}`" in readme and "scripts/derive_protocol.py --source" in readme
        stats = json.loads((a / name / "stats.json").read_text())
        assert f"queries: {stats['queries']['train']} train, {stats['queries']['valid']} valid" in readme
