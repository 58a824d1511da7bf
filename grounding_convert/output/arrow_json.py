"""Arrow record batches → JSON Lines, column by column, byte-identical to ``orjson.dumps`` of each row.

The sink's per-record JSONL path builds one Python dict per record for orjson; a columnar batch would have
to be turned back into dicts first.  Here each line is joined from the columns by Arrow string kernels:
keys are literals, strings are quoted (the rare one holding ``"``, ``\\`` or a control character is
escaped by orjson itself), integers are cast, lists of structs are joined per row.  orjson writes UTF-8
as is and escapes exactly ``"``, ``\\`` and U+0000–U+001F, so the bytes agree
(``tests/engine/test_arrow_json.py`` checks them against orjson on random batches).

Types outside that set (floats, maps, nulls) return None: the caller falls back to dicts and orjson.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc


def json_records(batch: pa.RecordBatch, end: str = "\n") -> pa.Array | None:
    """One ``{"key":value,…}`` + ``end`` string per row, in schema order; None when a column is not supported.

    Every value and literal of a line is one part of a single element-wise join, so each byte of the
    records is copied once (a list whose rows all hold the same number of items, such as a two-turn
    conversation, is spelled item by item; only ragged lists are joined row by row first).
    """
    if batch.num_rows == 0 or batch.num_columns == 0:
        return None
    parts = _fields(batch.schema, batch.columns)
    if parts is None:
        return None
    return _joined([*parts, "}" + end], batch.num_rows)


def _fields(fields: Any, columns: list[pa.Array]) -> list[pa.Array | str] | None:
    """``{"name":value,...`` of an object's fields (without the closing brace), as join parts."""
    parts: list[pa.Array | str] = []
    for i, (field, column) in enumerate(zip(fields, columns, strict=True)):
        values = _parts(column)
        if values is None:
            return None
        parts += [("{" if i == 0 else ",") + _key(field.name), *values]
    return parts


def _joined(parts: list[pa.Array | str], rows: int) -> pa.Array:
    """The parts joined row by row (adjacent literals first made one: fewer arguments to the kernel)."""
    merged: list[pa.Array | str] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    if len(merged) == 1 and not isinstance(merged[0], str):
        return merged[0]
    if all(isinstance(part, str) for part in merged):  # no column among them (empty objects and lists)
        return pa.array(["".join(merged)] * rows, pa.string())
    return pc.binary_join_element_wise(*merged, "")


def _key(name: str) -> str:
    return orjson.dumps(name).decode() + ":"


def _values(array: pa.Array) -> pa.Array | None:
    """The JSON text of every value of ``array`` as one string array (None: unsupported type or a null)."""
    parts = _parts(array)
    return None if parts is None else _joined(parts, len(array))


def _parts(array: pa.Array) -> list[pa.Array | str] | None:
    """The JSON text of every value of ``array`` as join parts: literals and per-row string arrays."""
    if array.null_count:
        return None
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return ['"', _escape(array), '"']
    if pa.types.is_integer(kind):
        return [pc.cast(array, pa.string())]
    if pa.types.is_boolean(kind):
        return [pc.if_else(array, "true", "false")]
    if pa.types.is_struct(kind):
        if kind.num_fields == 0:
            return ["{}"]
        parts = _fields(kind, array.flatten())
        return None if parts is None else [*parts, "}"]
    if pa.types.is_list(kind):
        return _list_parts(array)
    return None


def _list_parts(array: pa.ListArray) -> list[pa.Array | str] | None:
    offsets = pc.subtract(array.offsets, array.offsets[0]).to_numpy()
    items = array.flatten()
    widths = np.diff(offsets)
    if len(widths) and (widths == widths[0]).all() and widths[0] <= 8:  # every row holds the same few items
        width = int(widths[0])
        parts: list[pa.Array | str] = ["["]
        for k in range(width):
            column = items.take(pa.array(np.arange(k, len(items), width))) if width > 1 else items
            values = _parts(column)
            if values is None:
                return None
            parts += [*([","] if k else []), *values]
        return [*parts, "]"]
    values = _values(items)
    if values is None:
        return None
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), values), ",")
    return ["[", joined, "]"]


# orjson's short escapes, backslash first so the others' backslashes are not doubled again
_SHORT = ((0x5C, "\\", "\\\\"), (0x22, '"', '\\"'), (0x0A, "\n", "\\n"), (0x09, "\t", "\\t"),
          (0x0D, "\r", "\\r"), (0x08, "\b", "\\b"), (0x0C, "\f", "\\f"))  # fmt: skip
_SHORT_BYTES = np.array([code for code, _, _ in _SHORT], dtype=np.uint8)


def _escape(array: pa.Array) -> pa.Array:
    """Strings as they appear between JSON quotes.

    The bytes to escape are found by one numpy pass over the array's data buffer (no per-string regex);
    each escape that occurs at all is one Arrow replace over the strings holding any; the rare control
    characters orjson writes as ``\\u00XX`` go through orjson itself, string by string.
    """
    if len(array) == 0:
        return array
    offsets, chunk = string_bytes(array)
    if not chunk.size:
        return array
    hits = np.flatnonzero((chunk < 0x20) | (chunk == 0x22) | (chunk == 0x5C))
    if not hits.size:
        return array
    found = chunk[hits]
    rows = _owners(offsets, hits)
    needs = np.zeros(len(array), dtype=bool)
    needs[rows] = True
    subset = array.filter(pa.array(needs)) if len(rows) < len(array) else array
    escaped = subset
    present = set(np.flatnonzero(np.bincount(found, minlength=256)).tolist())
    for code, old, new in _SHORT:
        if code in present:
            escaped = pc.replace_substring(escaped, old, new)
    rare_hits = ~np.isin(found, _SHORT_BYTES)
    if rare_hits.any():  # \\u00XX: orjson's own spelling, for the few strings holding one
        rare_rows = _owners(offsets, hits[rare_hits])
        rare = np.isin(rows, rare_rows)
        slow = [orjson.dumps(value)[1:-1].decode() for value in array.take(pa.array(rare_rows)).to_pylist()]
        escaped = pc.replace_with_mask(escaped, pa.array(rare), pa.array(slow, array.type))
    return escaped if subset is array else pc.replace_with_mask(array, pa.array(needs), escaped)


def string_buffers(strings: pa.Array) -> tuple[np.ndarray, pa.Buffer | None]:
    """A string array's offsets (row ``i`` is ``data[offsets[i]:offsets[i + 1]]``, slicing applied) and its
    data buffer."""
    offset_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    offsets = np.frombuffer(strings.buffers()[1], dtype=offset_type)
    return offsets[strings.offset : strings.offset + len(strings) + 1], strings.buffers()[2]


def string_bytes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (as :func:`string_buffers`) and the UTF-8 bytes of its rows, one after another
    (position 0 is ``offsets[0]``)."""
    offsets, data = string_buffers(strings)
    if data is None:
        return offsets, np.zeros(0, dtype=np.uint8)
    return offsets, np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _owners(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The rows (sorted, once each) whose bytes hold these sorted positions (relative to ``offsets[0]``)."""
    owners = np.searchsorted(offsets, positions + offsets[0], side="right") - 1
    return owners[np.concatenate(([True], owners[1:] != owners[:-1]))]
