"""The shard sink's own bound (issue 17): never a shard with zero records, never an endless loop.

``--max-records-per-shard 0`` once made ``add_batch`` publish empty Parquet shards forever.  The CLI and
the API now refuse 0, and the sink guards itself wherever its limits come from.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding_convert.output.shards import PARTS_DIR, ROW_GROUP, ShardSink
from grounding_convert.output.storage import Store

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def batch(start: int, size: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"id": f"s/{i}", "n": i} for i in range(start, start + size)], schema=SCHEMA)


def sink_for(root, fmt: str = "parquet", max_records: int = 10, max_bytes: int = 1 << 40) -> ShardSink:
    store = Store(str(root))
    store.makedirs(PARTS_DIR)
    return ShardSink(store, "train", 0, fmt, SCHEMA, max_records, max_bytes)


def rows_of(root, infos) -> list[int]:
    return [pq.read_table(root / info.file).num_rows for info in infos]


@pytest.mark.parametrize(("max_records", "max_bytes"), [(0, 1 << 20), (-1, 1 << 20), (10, 0), (10, -5)])
def test_limits_below_one_are_refused_by_the_sink(tmp_path, max_records, max_bytes):
    with pytest.raises(ValueError, match="shard limits must be at least 1 record and 1 byte"):
        sink_for(tmp_path, max_records=max_records, max_bytes=max_bytes)
    assert not list((tmp_path / PARTS_DIR).iterdir())


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_zero_limit_set_behind_the_checks_still_ends_with_one_record_per_shard(tmp_path, fmt):
    """The loop guard itself: max_records forced to 0 after construction (as the old bug had it)."""
    sink = sink_for(tmp_path, fmt)
    sink.max_records = 0
    sink.add_batch(batch(0, 5))
    sink.add_many([{"id": "s/5", "n": 5}, {"id": "s/6", "n": 6}])
    sink.add({"id": "s/7", "n": 7})
    infos = sink.close()
    assert [info.records for info in infos] == [1] * 8
    files = sorted(p.name for p in (tmp_path / PARTS_DIR).iterdir())
    assert len(files) == 8 and not any(name.startswith(".") for name in files)  # no temporaries left
    if fmt == "parquet":
        assert rows_of(tmp_path, infos) == [1] * 8


def test_closing_a_shard_without_records_publishes_nothing(tmp_path):
    sink = sink_for(tmp_path)
    sink._open()  # a shard opened but never given a record
    assert sink.close() == []
    assert list((tmp_path / PARTS_DIR).iterdir()) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_records=st.sampled_from([1, 2, 3, 999, ROW_GROUP, ROW_GROUP + 1]),
    max_bytes=st.sampled_from([1, 500, 1 << 40]),
    fmt=st.sampled_from(["parquet", "jsonl"]),
    data=st.data(),
)
def test_every_shard_holds_between_one_and_max_records(tmp_path_factory, max_records, max_bytes, fmt, data):
    # at most ~40 shards per example (each is a file): small limits get small inputs
    per_shard = min(max_records, 1 if max_bytes < 1000 and fmt == "jsonl" else max_records)
    biggest = min(2 * ROW_GROUP + 50, 40 * per_shard)
    chunks = data.draw(st.lists(st.integers(0, biggest // 3 + 1), min_size=1, max_size=3))
    root = tmp_path_factory.mktemp("sink")
    sink = sink_for(root, fmt, max_records, max_bytes)
    start = 0
    for size in chunks:
        sink.add_batch(batch(start, size))
        start += size
    infos = sink.close()
    assert all(1 <= info.records <= max_records for info in infos)
    assert sum(info.records for info in infos) == start
    if fmt == "parquet":
        assert rows_of(root, infos) == [info.records for info in infos]
