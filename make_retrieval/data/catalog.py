"""The product catalog: ids, titles, images and metadata, validated row by row.

A product whose image is missing or cannot be decoded is kept as text-only (counted in the report):
dropping it would hide it from search, and the model handles products without images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from make_retrieval.data.tables import LoadReport, TextOnly, find_table, parse_rows, text_field
from make_retrieval.errors import DataError
from make_retrieval.files import inside

#: Columns with a meaning of their own; every other column is metadata returned by search.
CORE_COLUMNS = ("product_id", "title", "image", "category")


@dataclass
class Catalog:
    """Products in file order; ``index[product_id]`` gives the row position."""

    product_ids: list[str]
    titles: list[str]
    images: list[Path | None]
    categories: list[str | None]
    metadata: list[dict[str, Any]]
    #: The data folder that image paths are relative to (what the index stores and serves from);
    #: made absolute once here, so that per-product path arithmetic never resolves it again.
    root: Path | None = None
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.root is not None:
            self.root = self.root.resolve()
        self.index = {pid: i for i, pid in enumerate(self.product_ids)}

    def __len__(self) -> int:
        return len(self.product_ids)

    @property
    def has_image(self) -> np.ndarray:
        """Boolean mask of the products that have a usable image."""
        return np.array([p is not None for p in self.images], dtype=bool)


def load_catalog(data_dir: Path, report: LoadReport, skip_bad_rows: bool = False, check_images: bool = True) -> Catalog:
    """Read and validate ``products.*``; ``check_images`` decodes every image once up front."""
    path = find_table(data_dir, "products")
    root = data_dir.resolve()
    first_row: dict[str, int] = {}

    def parse(number: int, row: dict[str, Any]) -> tuple[str, str, Path | None, str | None, dict[str, Any]]:
        pid = text_field(path, number, row, "product_id")
        if pid in first_row:
            raise DataError(path, f"duplicate product_id '{pid}' (first at row {first_row[pid]})", number, "product_id")
        title = text_field(path, number, row, "title")
        image = _image_path(path, number, row, root)
        first_row[pid] = number
        category = row.get("category")
        metadata = {k: v for k, v in row.items() if k not in CORE_COLUMNS}
        return pid, title, image, None if category is None else str(category), metadata

    rows = list(parse_rows(path, ("product_id", "title"), parse, report, skip_bad_rows))
    if not rows:
        raise DataError(path, "no products")
    ids, titles, images, categories, metadata = (list(column) for column in zip(*rows, strict=True))
    if check_images:
        for i, image in enumerate(images):
            problem = "none given" if image is None else image_problem(image)
            if problem:
                given = "" if image is None else image.relative_to(root).as_posix()
                report.text_only_products.append(TextOnly(ids[i], first_row[ids[i]], given, problem))
                images[i] = None
    return Catalog(ids, titles, images, categories, metadata, root)


def _image_path(path: Path, number: int, row: dict[str, Any], root: Path) -> Path | None:
    """The image path under the data directory. It is normalised as written, not resolved: a path
    that climbs out (``..``, or absolute) is refused, while a link inside the directory (an
    ``images/`` folder linked to another disk) is read through, as the user who made it meant."""
    value = row.get("image")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise DataError(path, f"must be a relative path string, got {value!r}", number, "image")
    located = inside(root, value.strip())
    if located is None:
        where = os.path.normpath(root / value.strip())
        message = f"image path '{value}' points to {where}, outside the data directory {root}"
        raise DataError(path, message, number, "image")
    return located


def image_problem(path: Path) -> str | None:
    """``None`` if the image decodes, else 'missing' or 'corrupt'."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return "corrupt"
    return None


def load_image(path: Path, size: int) -> torch.Tensor:
    """Decode to a ``3 x size x size`` float tensor in [-1, 1] (``image_tensor``)."""
    with Image.open(path) as img:
        return image_tensor(img, size)


def image_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """A picture as a ``3 x size x size`` float tensor in [-1, 1] (aspect ratio is not kept: the
    demo photos are 60x80 and a square input keeps patch grids simple)."""
    rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
