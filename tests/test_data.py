"""Readers of the three table formats and their error messages (one test per bad input)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import make_data_dir, write_table
from make_retrieval.data.pairs import load_data_dir
from make_retrieval.embed import relative_image
from make_retrieval.errors import DataError


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _rewrite(data: Path, name: str, rows: list[dict], ext: str = ".parquet") -> None:
    for old in data.glob(f"{name}.*"):
        old.unlink()
    write_table(data / f"{name}{ext}", rows)


@pytest.mark.parametrize("ext", [".parquet", ".jsonl", ".csv"])
def test_every_format_reads_the_same(tmp_path: Path, ext: str) -> None:
    loaded = load_data_dir(make_data_dir(tmp_path / ext.strip("."), ext))
    reference = load_data_dir(make_data_dir(tmp_path / "reference"))
    assert loaded.catalog.product_ids == reference.catalog.product_ids
    assert loaded.catalog.titles == reference.catalog.titles
    assert loaded.catalog.metadata[0] == {"base_colour": "red"}
    assert loaded.train is not None and loaded.train.queries == reference.train.queries
    assert loaded.judgements == reference.judgements
    assert len(loaded.catalog) == 32 and loaded.catalog.has_image.all()


def test_first_extension_wins(data_dir: Path) -> None:
    write_table(data_dir / "test.csv", [{"query": "other", "product_id": "p000", "relevance": 1}])
    assert "other" not in load_data_dir(data_dir).judgements["test"]


def test_csv_keeps_leading_zeros(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "d", ".csv")
    _rewrite(data, "products", [{"product_id": "00123", "title": "red shirt", "image": ""}], ".csv")
    _rewrite(data, "train", [{"query": "shirt", "product_id": "00123"}], ".csv")
    loaded = load_data_dir(data, ("train",))
    assert loaded.catalog.product_ids == ["00123"]
    assert loaded.catalog.images == [None]
    assert loaded.train is not None and loaded.train.weights == [1.0]


def test_missing_column(data_dir: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "title"} for r in _rows(data_dir / "products.parquet")]
    _rewrite(data_dir, "products", rows)
    with pytest.raises(DataError, match=r"products\.parquet, field 'title': missing column\(s\) \['title'\]") as info:
        load_data_dir(data_dir)
    assert info.value.field == "title"


def test_duplicate_product_id(data_dir: Path) -> None:
    rows = _rows(data_dir / "products.parquet")
    rows[5]["product_id"] = rows[2]["product_id"]
    _rewrite(data_dir, "products", rows)
    with pytest.raises(
        DataError, match=r"products\.parquet, row 6, field 'product_id': duplicate .* \(first at row 3\)"
    ):
        load_data_dir(data_dir)


@pytest.mark.parametrize(
    ("table", "row", "field", "value", "message"),
    [
        ("train", 9, "product_id", "nope", "unknown product_id 'nope'"),
        ("products", 0, "title", "   ", "must be a non-empty string"),
        ("train", 0, "weight", -1.0, "must be a positive number"),
        ("products", 3, "image", "../../etc/passwd", "image path '../../etc/passwd' points to /.*etc/passwd, outside"),
    ],
)
def test_bad_field(data_dir: Path, table: str, row: int, field: str, value: object, message: str) -> None:
    rows = _rows(data_dir / f"{table}.parquet")
    rows[row][field] = value
    _rewrite(data_dir, table, rows)
    with pytest.raises(DataError, match=rf"{table}\.parquet, row {row + 1}, field '{field}': {message}"):
        load_data_dir(data_dir)


@pytest.mark.parametrize("value", ["high", "2.5", -1, None])
def test_non_integer_relevance(tmp_path: Path, value: object) -> None:
    data = make_data_dir(tmp_path / "d", ".jsonl")
    rows = [
        {"query": "q", "product_id": "p000", "relevance": 2},
        {"query": "q", "product_id": "p001", "relevance": value},
    ]
    _rewrite(data, "test", rows, ".jsonl")
    with pytest.raises(DataError, match=r"test\.jsonl, row 2, field 'relevance': must be an integer >= 0"):
        load_data_dir(data)


def test_relevance_0_is_judged_not_relevant(tmp_path: Path) -> None:
    """TREC- and ESCI-style label files list judged, irrelevant products with 0."""
    data = make_data_dir(tmp_path / "d", ".jsonl")
    rows = [
        {"query": "q", "product_id": "p000", "relevance": 2},
        {"query": "q", "product_id": "p001", "relevance": 0},
        {"query": "nothing fits", "product_id": "p010", "relevance": 0},
    ]
    _rewrite(data, "test", rows, ".jsonl")
    assert load_data_dir(data).judgements["test"] == {"q": {"p000": 2}}
    _rewrite(data, "test", rows[1:], ".jsonl")
    with pytest.raises(DataError, match=r"test\.jsonl: no query with a relevant product"):
        load_data_dir(data)


def test_an_images_folder_linked_to_another_disk_is_read_through(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "d")
    elsewhere = tmp_path / "other-disk" / "images"
    elsewhere.parent.mkdir()
    (data / "images").rename(elsewhere)
    (data / "images").symlink_to(elsewhere, target_is_directory=True)
    catalog = load_data_dir(data).catalog
    assert catalog.images[0] == data.resolve() / "images" / "p000.jpg" and catalog.images[0].is_file()
    assert relative_image(catalog, 0) == "images/p000.jpg"


def test_relevance_as_text_in_csv_is_accepted(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "d", ".csv")
    assert load_data_dir(data).judgements["valid"]["shirt in red"] == {"p000": 2, "p001": 2}


def test_unreadable_file(data_dir: Path) -> None:
    (data_dir / "products.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"products\.parquet: cannot read file"):
        load_data_dir(data_dir)


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "d", ".jsonl")
    with (data / "train.jsonl").open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(DataError, match=r"train\.jsonl, row 65: invalid JSON"):
        load_data_dir(data)


def test_missing_table(data_dir: Path) -> None:
    (data_dir / "train.parquet").unlink()
    with pytest.raises(DataError, match="no train table found"):
        load_data_dir(data_dir)


def test_corrupt_and_missing_images_become_text_only(data_dir: Path) -> None:
    (data_dir / "images" / "p000.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    (data_dir / "images" / "p001.jpg").unlink()
    loaded = load_data_dir(data_dir)
    assert len(loaded.catalog) == 32, "products with bad images are kept"
    assert loaded.catalog.images[0] is None and loaded.catalog.images[1] is None
    assert loaded.catalog.has_image.sum() == 30
    assert dict(loaded.report.text_only) == {"corrupt": 1, "missing": 1}
    assert "1 product(s) kept text-only: image corrupt" in loaded.report.lines()
    listed = [(p.product_id, p.row, p.image, p.reason) for p in loaded.report.text_only_products]
    assert listed == [("p000", 1, "images/p000.jpg", "corrupt"), ("p001", 2, "images/p001.jpg", "missing")]


def test_skip_bad_rows_counts_and_keeps_the_rest(data_dir: Path) -> None:
    rows = _rows(data_dir / "train.parquet")
    rows[0]["product_id"] = "nope"
    rows[1]["query"] = ""
    _rewrite(data_dir, "train", rows)
    loaded = load_data_dir(data_dir, skip_bad_rows=True)
    assert loaded.train is not None and len(loaded.train) == len(rows) - 2
    assert loaded.report.skipped_rows["train.parquet"] == 2
    assert any("unknown product_id 'nope'" in line for line in loaded.report.lines())


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data directory not found"):
        load_data_dir(tmp_path / "absent")


def test_valid_and_test_are_optional(data_dir: Path) -> None:
    (data_dir / "valid.parquet").unlink()
    shutil.rmtree(data_dir / "images")
    loaded = load_data_dir(data_dir)
    assert "valid" not in loaded.judgements and "test" in loaded.judgements
    assert loaded.report.text_only["missing"] == 32


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "d", ".csv")
    path = data / "products.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_data_dir(data).catalog) == 32


def test_integral_float_ids_match_integer_ids(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "d", ".jsonl")
    # a float column, as pandas writes integer ids once a value is missing
    _rewrite(
        data, "products", [{"product_id": 123.0, "title": "red shirt"}, {"product_id": 7, "title": "tee"}], ".jsonl"
    )
    _rewrite(data, "train", [{"query": "shirt", "product_id": "123"}, {"query": "tee", "product_id": 7.0}], ".jsonl")
    loaded = load_data_dir(data, ("train",))
    assert loaded.catalog.product_ids == ["123", "7"]
    assert loaded.train is not None and loaded.train.products == [0, 1]


def test_duplicate_judgement(data_dir: Path) -> None:
    rows = _rows(data_dir / "test.parquet")
    rows.append({**rows[0], "relevance": 1})
    _rewrite(data_dir, "test", rows)
    with pytest.raises(DataError, match=rf"test\.parquet, row {len(rows)}, field 'product_id': .* already \(row 1\)"):
        load_data_dir(data_dir)
