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

import orjson
import pyarrow as pa
import pyarrow.compute as pc

_ESCAPED = r'[\x00-\x1f"\\]'  # what orjson escapes inside a string


def json_records(batch: pa.RecordBatch, end: str = "\n") -> pa.Array | None:
    """One ``{"key":value,…}`` + ``end`` string per row, in schema order; None when a column is not supported."""
    parts: list[pa.Array | str] = []
    for i, field in enumerate(batch.schema):
        values = _values(batch.column(i))
        if values is None:
            return None
        parts += [("{" if i == 0 else ",") + _key(field.name), values]
    if not parts or batch.num_rows == 0:
        return None
    parts.append("}" + end)
    return pc.binary_join_element_wise(*parts, "")


def _key(name: str) -> str:
    return orjson.dumps(name).decode() + ":"


def _values(array: pa.Array) -> pa.Array | None:
    """The JSON text of every value of ``array`` (None: unsupported type or a null)."""
    if array.null_count:
        return None
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.binary_join_element_wise('"', _escape(array), '"', "")
    if pa.types.is_integer(kind):
        return pc.cast(array, pa.string())
    if pa.types.is_boolean(kind):
        return pc.if_else(array, "true", "false")
    if pa.types.is_struct(kind):
        return _struct(array)
    if pa.types.is_list(kind):
        items = _values(array.flatten())
        if items is None:
            return None
        offsets = pc.subtract(array.offsets, array.offsets[0])
        joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), ",")
        return pc.binary_join_element_wise("[", joined, "]", "")
    return None


def _struct(array: pa.StructArray) -> pa.Array | None:
    parts: list[pa.Array | str] = []
    for i, (field, child) in enumerate(zip(array.type, array.flatten(), strict=True)):
        values = _values(child)
        if values is None:
            return None
        parts += [("{" if i == 0 else ",") + _key(field.name), values]
    if not parts:
        return pa.array(["{}"] * len(array), pa.string())
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


# orjson's short escapes, backslash first so the others' backslashes are not doubled again
_SHORT = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r"), ("\b", "\\b"), ("\f", "\\f"))
_RARE = r"[\x00-\x07\x0b\x0e-\x1f]"  # the control characters orjson writes as \u00XX


def _escape(array: pa.Array) -> pa.Array:
    """Strings as they appear between JSON quotes: most need nothing, most others only the short escapes
    (done by Arrow), the rare rest go through orjson itself."""
    needs = pc.match_substring_regex(array, _ESCAPED)
    if not pc.any(needs).as_py():
        return array
    subset = array.filter(needs)
    rare = pc.match_substring_regex(subset, _RARE)
    escaped = subset
    for old, new in _SHORT:
        escaped = pc.replace_substring(escaped, old, new)
    if pc.any(rare).as_py():
        slow = [orjson.dumps(value)[1:-1].decode() for value in subset.filter(rare).to_pylist()]
        escaped = pc.replace_with_mask(escaped, rare, pa.array(slow, array.type))
    return pc.replace_with_mask(array, needs, escaped)
