"""scripts/derive_fashion_queries.py --strip-colour: titles lose their colour and pattern words and
products.parquet its base_colour column, while products, queries, grades and splits stay identical.

Runs the script's main() on a tiny synthetic source folder (no /work/shared)."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

pytest.importorskip("pandas")  # the script's only dependency outside the project's

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "derive_fashion_queries.py"


def load_script(script: Path = SCRIPT):
    """The script as a module (tests/test_derive_protocol.py loads derive_protocol.py with it)."""
    name = f"{script.stem}_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, script)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_titles():
    """The script's module of title cleaning, fashion_derive.titles (loading the script puts it on sys.path)."""
    load_script()
    return importlib.import_module("fashion_derive.titles")


# (brand, gender, type word, article type, master, sub, usage) x colour/pattern decorations
TYPES = [
    ("Titan", "Women", "Watch", "Watches", "Accessories", "Watches", "Casual"),
    ("Acme", "Men", "Shirt", "Shirts", "Apparel", "Topwear", "Formal"),
    ("Zara", "Women", "Dress", "Dresses", "Apparel", "Dress", "Casual"),
    ("Olay", "Women", "Night Cream", "Face Moisturisers", "Personal Care", "Skin Care", "Casual"),
]
COLOURS = ["Red", "Navy Blue", "Silver", "Off White", "Grey Melange", "Gold"]
DECOR = ["{c}", "{c} Printed", "Solid {c}", "{c} & White Striped", "{c} Check", "Polka Dots {c}"]
# every colour/pattern word these titles can hold; none may survive --strip-colour
STRIPPED = {
    "red",
    "navy",
    "blue",
    "silver",
    "off",
    "white",
    "grey",
    "melange",
    "gold",
    "printed",
    "solid",
    "striped",
    "check",
    "polka",
    "dots",
    "&",
}


def write_source(root: Path, rows: list[dict]) -> Path:
    """A source folder like the real one: products.parquet of `rows` and images.tar.gz with a tiny JPEG
    per row (tests/test_derive_protocol.py builds its source with it)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tf:
        for n, row in enumerate(rows):
            buf = io.BytesIO()
            Image.new("RGB", (4, 4), (n % 256, 20 * (n % 13), 30)).save(buf, format="JPEG")
            info = tarfile.TarInfo(f"images/{row['product_id']}.jpg")
            info.size = buf.tell()
            info.mtime = 0
            buf.seek(0)
            tf.addfile(info, buf)
    root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "products.parquet")
    (root / "images.tar.gz").write_bytes(tar_bytes.getvalue())
    return root


def make_source(root: Path) -> Path:
    rows = []
    for brand, gender, word, atype, master, sub, usage in TYPES:
        for i, colour in enumerate(COLOURS):
            for j in range(2):  # two products per (type, colour): every intent has >= 2 matches
                decor = DECOR[(i + j) % len(DECOR)].format(c=colour)
                pid = f"{1000 + len(rows)}"
                rows.append(
                    {
                        "product_id": pid,
                        "title": f"{brand} {gender} {decor} {word}",
                        "image": f"images/{pid}.jpg",
                        "master_category": master,
                        "sub_category": sub,
                        "article_type": atype,
                        "base_colour": colour,
                        "usage": usage if j == 0 else "Sports",
                    }
                )
    return write_source(root, rows)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    mod = load_script()
    tmp = tmp_path_factory.mktemp("derive")
    src = make_source(tmp / "src")
    outs = {}
    for name, extra in (("plain", []), ("strip", ["--strip-colour"]), ("strip2", ["--strip-colour"])):
        outs[name] = tmp / name
        args = ["--source", str(src), "--out", str(outs[name]), "--products", "0", "--seed", "3"]
        assert mod.main(args + extra) == 0
    return src, outs


def words(title: str) -> list[str]:
    return [w.lower() for w in re.split(r"[\s\-/]+", title) if w]


def test_titles_lose_colour_and_pattern_words_only(built):
    src, outs = built
    source = pq.read_table(src / "products.parquet").to_pandas().set_index("product_id")
    plain = pq.read_table(outs["plain"] / "products.parquet").to_pandas()
    strip = pq.read_table(outs["strip"] / "products.parquet").to_pandas()
    assert "base_colour" in plain.columns
    assert "base_colour" not in strip.columns
    assert list(strip.columns) == [c for c in plain.columns if c != "base_colour"]
    assert list(plain["title"]) == list(source.loc[plain["product_id"], "title"])
    # every metadata column but the title is unchanged
    others = [c for c in strip.columns if c != "title"]
    assert strip[others].equals(plain[others])
    for pid, atype, before, after in zip(
        plain["product_id"], plain["article_type"], plain["title"], strip["title"], strict=True
    ):
        kept_nouns = {"cream"} if atype == "Face Moisturisers" else set()
        left = set(words(after))
        assert not (left & (STRIPPED - kept_nouns)), (pid, before, after)
        # the other words all remain, in order
        assert words(after) == [w for w in words(before) if w not in STRIPPED - kept_nouns], (before, after)
        assert "  " not in after and after == after.strip()
    titles = set(strip["title"])
    assert "Titan Women Watch" in titles
    assert "Acme Men Shirt" in titles
    assert "Olay Women Night Cream" in titles  # skin care: "Cream" names the product, stays


def test_queries_splits_and_images_identical(built):
    _, outs = built
    for name in ("train", "valid", "test"):
        a = (outs["plain"] / f"{name}.parquet").read_bytes()
        assert a == (outs["strip"] / f"{name}.parquet").read_bytes(), name
    assert pq.read_table(outs["plain"] / "test.parquet").num_rows > 0
    assert pq.read_table(outs["plain"] / "train.parquet").num_rows > 0
    imgs = sorted(p.name for p in (outs["plain"] / "images").iterdir())
    assert imgs == sorted(p.name for p in (outs["strip"] / "images").iterdir())
    # colour queries exist, so the stripped catalog answers them only from the photo
    queries = set(pq.read_table(outs["plain"] / "test.parquet").column("query").to_pylist())
    queries |= set(pq.read_table(outs["plain"] / "train.parquet").column("query").to_pylist())
    assert any(re.search(r"\b(red|navy|silver|gold)\b", q) for q in queries)


def test_stats_readme_and_determinism(built):
    _, outs = built
    plain = json.loads((outs["plain"] / "stats.json").read_text())
    strip = json.loads((outs["strip"] / "stats.json").read_text())
    assert "strip_colour" not in plain
    assert strip["strip_colour"] is True
    cs = strip.pop("colour_strip")
    del strip["strip_colour"]
    assert strip == plain
    assert cs["titles_with_colour_or_pattern_word_after"] == 0
    assert cs["titles_with_query_colour_word_after"] == 0
    assert cs["titles_with_query_colour_word_before"] > 0
    assert cs["title_words_mean_after"] < cs["title_words_mean_before"]
    assert "--strip-colour" in (outs["strip"] / "README.md").read_text()
    assert "--strip-colour" not in (outs["plain"] / "README.md").read_text()
    for p in sorted(outs["strip"].rglob("*")):
        if p.is_file() and p.name != "README.md":  # the README names its --out folder
            assert p.read_bytes() == (outs["strip2"] / p.relative_to(outs["strip"])).read_bytes(), p


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Titan Women Silver Watch", "Titan Women Watch"),
        ("Puma Men Navy Blue & White Striped Polo T-shirt", "Puma Men Polo T-shirt"),
        ("Tonga Off-White & Black Animal Print Dress", "Tonga Dress"),
        ("Tommy Hilfiger Women Silver-Toned Dial  Watch TH1780453-D", "Tommy Hilfiger Women Dial Watch TH1780453-D"),
        ("Catwalk Women Multi Coloured Flats", "Catwalk Women Flats"),
        ("Casio Edifice Men Multi-Dial Watch", "Casio Edifice Men Multi-Dial Watch"),
        ("Indigo Nation Men Stripes Light Blue Shirt", "Indigo Nation Men Shirt"),
        ("Reid & Taylor Men Grey Melange Tie", "Reid & Taylor Men Tie"),
        ("Gliders Women Black &Purple Shoes", "Gliders Women Shoes"),
        ("Fabindia Off White Chanderi Dupatta", "Fabindia Chanderi Dupatta"),
    ],
)
def test_strip_colour_examples(title, expected):
    titles = load_titles()
    colours = ["Black", "Navy Blue", "White", "Silver", "Off White", "Grey Melange", "Purple", "Multi"]
    vocab = titles.colour_vocabulary(colours)
    assert titles.strip_colour(title, vocab) == expected


def test_clear_message_without_pandas():
    # pandas is only a dev extra: without it the script stops with how to install it, not a traceback
    code = (
        "import runpy, sys; sys.modules['pandas'] = None; sys.argv = ['derive', '--help']; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "needs pandas: pip install -e '.[dev]'" in proc.stderr
    assert "Traceback" not in proc.stderr
