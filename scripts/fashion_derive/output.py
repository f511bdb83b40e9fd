"""The data files of the output directory: the photos (OUT/images) and the parquet tables
(products, train, valid, test)."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .catalog import copy_images
from .titles import Titles

# The value columns of train/valid/test.parquet, after query and product_id.
PAIR_VALUE_COLUMNS: dict[str, tuple[str, pa.DataType]] = {
    "train": ("weight", pa.float64()),
    "valid": ("relevance", pa.int64()),
    "test": ("relevance", pa.int64()),
}


def write_table(path: str, columns: dict[str, list], schema: pa.Schema) -> None:
    """Write one parquet table, zstd-compressed and without statistics, so that reruns are byte-identical."""
    table = pa.Table.from_pydict(columns, schema=schema)
    pq.write_table(table, path, compression="zstd", write_statistics=False)


def copy_photos(images_tar: str, products: pd.DataFrame, out: str, photos: bool = True) -> int:
    """Create `out` and replace OUT/images with the products' photos (none with `photos` off, for a
    text-only catalog); returns how many were copied."""
    os.makedirs(out, exist_ok=True)
    img_dir = os.path.join(out, "images")
    if os.path.isdir(img_dir):
        shutil.rmtree(img_dir)
    return copy_images(images_tar, set(products["product_id"]), img_dir) if photos else 0


def write_tables(
    out: str, products: pd.DataFrame, titles: Titles, rows: dict[str, list[tuple]], photos: bool = True
) -> None:
    """Write products.parquet (no base_colour with --strip-colour; a null image for every product without
    `photos`, which make_retrieval reads as text-only) and train/valid/test.parquet."""
    s = pa.string()
    columns = {
        "product_id": list(products["product_id"]),
        "title": titles.titles,
        "image": [f"images/{pid}.jpg" if photos else None for pid in products["product_id"]],
        "category": list(products["article_type"]),
        "master_category": list(products["master_category"]),
        "sub_category": list(products["sub_category"]),
        "article_type": list(products["article_type"]),
        "base_colour": list(products["base_colour"]),
        "usage": [u or None for u in products["usage"]],
        "gender": list(products["gender"]),
    }
    if titles.stripped:
        del columns["base_colour"]
    write_table(os.path.join(out, "products.parquet"), columns, pa.schema([(c, s) for c in columns]))
    for split, (name, dtype) in PAIR_VALUE_COLUMNS.items():
        write_table(
            os.path.join(out, f"{split}.parquet"),
            {
                "query": [r[0] for r in rows[split]],
                "product_id": [r[1] for r in rows[split]],
                name: [r[2] for r in rows[split]],
            },
            pa.schema([("query", s), ("product_id", s), (name, dtype)]),
        )
