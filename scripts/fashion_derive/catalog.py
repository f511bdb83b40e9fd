"""The source folder (products.parquet, images.tar.gz): reading the catalog, choosing the products
of the output, and reading photos out of the archive."""

from __future__ import annotations

import os
import re
import tarfile
from collections import defaultdict
from typing import NamedTuple

import pandas as pd

from .cli import Options
from .sampling import allocate, rng_for, sample_sorted
from .vocabulary import parse_gender

SOURCE_COLUMNS = ["product_id", "title", "master_category", "sub_category", "article_type", "base_colour", "usage"]
# A photo's path in images.tar.gz; the group is its product_id.
_IMAGE_NAME = re.compile(r"(?:\./)?images/([^/]+)\.jpg")


class Catalog(NamedTuple):
    """The source catalog, cleaned: the products with a photo and the counts the report gives."""

    products: pd.DataFrame  # SOURCE_COLUMNS as stripped strings ("" if missing), one row per id, by id
    colours: list[str]  # every base_colour of the source, sorted: the --strip-colour vocabulary
    images_tar: str  # path of images.tar.gz
    n_source: int  # distinct products in the source
    n_with_image: int  # of which have a photo in images.tar.gz


def image_ids_in_tar(tar_path: str) -> set[str]:
    """The product ids with a non-empty photo in the archive."""
    ids = set()
    with tarfile.open(tar_path, "r:gz") as tf:
        for m in tf:
            if m.isfile() and m.size > 0:
                mt = _IMAGE_NAME.fullmatch(m.name)
                if mt:
                    ids.add(mt.group(1))
    return ids


def copy_images(tar_path: str, wanted: set[str], out_dir: str) -> int:
    """Write the photos of `wanted` from the archive to `out_dir`; stops if one is missing or not a JPEG."""
    os.makedirs(out_dir, exist_ok=True)
    done = set()
    with tarfile.open(tar_path, "r:gz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            mt = _IMAGE_NAME.fullmatch(m.name)
            if not mt or mt.group(1) not in wanted or mt.group(1) in done:
                continue
            data = tf.extractfile(m).read()
            if not data.startswith(b"\xff\xd8"):
                raise SystemExit(f"{m.name} in {tar_path} is not a JPEG")
            with open(os.path.join(out_dir, mt.group(1) + ".jpg"), "wb") as f:
                f.write(data)
            done.add(mt.group(1))
    missing = wanted - done
    if missing:
        raise SystemExit(f"{len(missing)} images missing from {tar_path}, e.g. {sorted(missing)[:3]}")
    return len(done)


def select_products(df: pd.DataFrame, n: int, seed: int, min_type: int, floor: int) -> pd.DataFrame:
    """`n` products (0: all) stratified over the article types with >= `min_type` products, `floor` per type."""
    if n == 0:
        return df
    by_type: dict[str, list[str]] = defaultdict(list)
    for pid, t in zip(df["product_id"], df["article_type"], strict=True):
        by_type[t].append(pid)
    counts = {t: len(v) for t, v in by_type.items() if len(v) >= min_type}
    avail = sum(counts.values())
    if n > avail:
        raise SystemExit(f"--products {n} exceeds the {avail} products of article types with >= {min_type} products")
    alloc = allocate(counts, n, floor)
    chosen: list[str] = []
    for t in sorted(alloc):
        chosen += sample_sorted(rng_for(seed, "select", t), by_type[t], alloc[t])
    return df[df["product_id"].isin(set(chosen))]


def read_catalog(source: str) -> Catalog:
    """Read the source products as clean strings and keep those with a photo: the pool to choose from."""
    src_parquet = os.path.join(source, "products.parquet")
    src_tar = os.path.join(source, "images.tar.gz")
    for p in (src_parquet, src_tar):
        if not os.path.isfile(p):
            raise SystemExit(f"missing {p}")
    df = pd.read_parquet(src_parquet)
    lacking = [c for c in SOURCE_COLUMNS if c not in df.columns]
    if lacking:
        raise SystemExit(f"{src_parquet} lacks columns {lacking}")
    df = df[SOURCE_COLUMNS].copy()
    for c in SOURCE_COLUMNS:
        df[c] = df[c].astype(object).where(df[c].notna(), "").map(str).str.strip()
    df = df.drop_duplicates("product_id").sort_values("product_id", kind="mergesort")
    colours = sorted(set(df["base_colour"]) - {""})
    with_image = df[df["product_id"].isin(image_ids_in_tar(src_tar))]
    return Catalog(with_image, colours, src_tar, n_source=len(df), n_with_image=len(with_image))


def choose_products(catalog: Catalog, opts: Options) -> pd.DataFrame:
    """The products of the output (all, or stratified over article types), with the title's gender."""
    sel = select_products(catalog.products, opts.products, opts.seed, opts.min_type_count, opts.type_floor)
    sel = sel.sort_values("product_id", kind="mergesort").reset_index(drop=True)
    sel["gender"] = pd.Series([parse_gender(t) for t in sel["title"]], dtype=object)
    return sel
