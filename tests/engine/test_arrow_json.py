"""Arrow → JSON Lines by column gives exactly ``orjson.dumps`` of each row (output/arrow_json.py)."""

from __future__ import annotations

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.output.arrow_json import json_records

TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
SCHEMA = pa.schema([("id", pa.string()), ("width", pa.int64()), ("ok", pa.bool_()), ("conversations", pa.list_(TURN))])
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)  # control chars, quotes, any plane
rows = st.lists(
    st.fixed_dictionaries(
        {
            "id": text,
            "width": st.integers(-(2**63), 2**63 - 1),
            "ok": st.booleans(),
            "conversations": st.lists(st.fixed_dictionaries({"from": text, "value": text}), max_size=3),
        }
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(rows=rows, offset=st.integers(0, 3))
def test_lines_equal_orjson_of_each_row(rows, offset):
    batch = pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
    batch = batch.slice(min(offset, len(rows) - 1))  # sliced batches (offsets not at 0) too
    lines = json_records(batch, "\n")
    assert lines.to_pylist() == [orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE).decode() for r in batch.to_pylist()]
    assert json_records(batch, "").to_pylist() == [orjson.dumps(r).decode() for r in batch.to_pylist()]


def test_unsupported_columns_fall_back():
    floats = pa.RecordBatch.from_pylist([{"x": 1.5}])
    nulls = pa.RecordBatch.from_pylist(
        [{"x": None, "y": "a"}], schema=pa.schema([("x", pa.string()), ("y", pa.string())])
    )
    assert json_records(floats) is None and json_records(nulls) is None


EMPTY = pa.struct([])
SHAPES = pa.schema([("turns", pa.list_(TURN)), ("grid", pa.list_(pa.list_(pa.int64()))), ("none", EMPTY)])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), turns=st.integers(0, 3), cells=st.integers(0, 10), offset=st.integers(0, 3))
def test_lists_of_one_length_are_spelled_item_by_item(data, turns, cells, offset):
    """Every row with the same number of items (two-turn conversations, empty lists) takes the item-by-item
    spelling; lists of lists, longer lists and empty objects too: all equal orjson's bytes."""
    n = data.draw(st.integers(1, 6))
    turn = st.fixed_dictionaries({"from": text, "value": text})
    grid = st.lists(st.lists(st.integers(-5, 5), min_size=2, max_size=2), min_size=cells, max_size=cells)
    rows = [{"turns": data.draw(st.lists(turn, min_size=turns, max_size=turns)), "grid": data.draw(grid),
             "none": {}} for _ in range(n)]  # fmt: skip
    batch = pa.RecordBatch.from_pylist(rows, schema=SHAPES).slice(min(offset, n - 1))
    assert json_records(batch, "").to_pylist() == [orjson.dumps(r).decode() for r in batch.to_pylist()]


def test_a_batch_of_literals_only():
    """Columns that spell the same text on every row (empty objects, empty lists) still give one line each."""
    batch = pa.RecordBatch.from_pylist([{"none": {}, "turns": []}] * 3, schema=pa.schema([("none", EMPTY),
                                       ("turns", pa.list_(TURN))]))  # fmt: skip
    assert json_records(batch, "\n").to_pylist() == ['{"none":{},"turns":[]}\n'] * 3
