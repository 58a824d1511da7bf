"""The shard sink: handing it a task's records at once must write exactly what one-by-one adds write."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding_convert.output.shards import PARTS_DIR, ROW_GROUP, ShardSink
from grounding_convert.output.storage import Store

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("width", pa.int64()),
        ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
    ]
)


def record(i: int) -> dict:
    return {
        "id": f"grit/{i}/rec/0",
        "width": 100 + i % 7,
        "conversations": [{"from": "user", "value": f"Locate thing {i}"}, {"from": "assistant", "value": f"{i}"}],
    }


def written(root, fmt: str, chunks: list[int], max_records: int, many: bool) -> dict[str, bytes]:
    store = Store(str(root))
    store.makedirs(PARTS_DIR)
    sink = ShardSink(store, "train", 0, fmt, SCHEMA, max_records, 1 << 40)
    i = 0
    for size in chunks:
        records = [record(i + k) for k in range(size)]
        i += size
        if many:
            sink.add_many(records)
        else:
            for one in records:
                sink.add(one)
    infos = sink.close()
    assert sum(info.records for info in infos) == i
    return {p.name: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunks=st.lists(st.integers(0, 700), min_size=1, max_size=8),
    max_records=st.sampled_from([1, 7, ROW_GROUP - 1, ROW_GROUP, 2500, 100_000]),
    fmt=st.sampled_from(["parquet", "jsonl"]),
)
def test_add_many_writes_the_same_shards_as_add(tmp_path_factory, chunks, max_records, fmt):
    one = written(tmp_path_factory.mktemp("one"), fmt, chunks, max_records, many=False)
    many = written(tmp_path_factory.mktemp("many"), fmt, chunks, max_records, many=True)
    assert one == many


def test_parquet_shards_are_zstd_without_dictionary_pages_or_statistics(tmp_path):
    """Record text is nearly all distinct and nobody filters training shards by min/max: both are waste."""
    files = written(tmp_path, "parquet", [ROW_GROUP + 10], 100_000, many=True)
    (name,) = files
    meta = pq.ParquetFile(next(tmp_path.rglob(name))).metadata
    assert meta.num_rows == ROW_GROUP + 10 and meta.num_row_groups == 2
    for group in range(meta.num_row_groups):
        for column in range(meta.num_columns):
            chunk = meta.row_group(group).column(column)
            assert chunk.compression == "ZSTD"
            assert not chunk.is_stats_set
            assert "RLE_DICTIONARY" not in chunk.encodings and not chunk.has_dictionary_page
    table = pq.read_table(next(tmp_path.rglob(name)))
    assert table.schema.equals(SCHEMA)
    assert table.slice(ROW_GROUP + 9, 1).to_pylist() == [record(ROW_GROUP + 9)]
