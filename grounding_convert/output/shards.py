"""Shard files: one writer's records for one split (and file group) of one partition, rotated by size or count.

The bytes of a record come from its container (``containers.py``); this module names, rotates and commits
the files.  Each shard is written under a hidden temporary name and renamed when complete, so an interrupted run
never leaves a file that looks finished.  Parquet row groups have a fixed number of rows, so the bytes
depend only on the records (never on timing or worker count).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .arrow_json import string_buffers
from .containers import EXTENSIONS, FORMATS, Container, container_for
from .storage import Store, tmp_name

__all__ = ["EXTENSIONS", "FORMATS", "PARTS_DIR", "ShardInfo", "ShardSink", "partition_shard_name", "shard_stem"]

ROW_GROUP = 2000
# Training records are read whole, never filtered by column value, so min/max statistics buy nothing; and
# on record text (ids, prompts, answers: nearly all distinct) dictionary pages are built and then thrown
# away.  Without both, a qwen-vl shard is written in about half the time and comes out ~19% smaller.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": False, "write_statistics": False}


@dataclass(slots=True)
class ShardInfo:
    split: str
    file: str  # relative to the output root
    records: int
    bytes: int
    sha256: str
    group: str = ""  # the container's file set within the split (OFA TSV: the task); "" = the split's files

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.group:
            del d["group"]  # manifests of one-set containers stay as they were
        return d


PARTS_DIR = "data/.parts"


def shard_stem(split: str, group: str = "") -> str:
    """``train``, or ``rec-train`` for a container's file group: the final name is ``data/{stem}-00000-of-…``."""
    return f"{group}-{split}" if group else split


def partition_shard_name(split: str, partition: int, part: int, fmt: str, group: str = "") -> str:
    """Name until finalize renames it to ``data/{stem}-{i:05d}-of-{n:05d}``.

    The folder is hidden, so nothing that globs ``data/{split}-*`` (``load_dataset``, the Hub) sees the
    shards of an unfinished run.
    """
    return f"{PARTS_DIR}/{shard_stem(split, group)}-p{partition:05d}-{part:04d}.{EXTENSIONS[fmt]}"


class ShardSink:
    """Accepts records one by one and writes them into ``data/`` shards for one (partition, split, group)."""

    def __init__(
        self,
        store: Store,
        split: str,
        partition: int,
        container: Container | str,
        schema: pa.Schema,
        max_records: int,
        max_bytes: int,
        group: str = "",
    ):
        if isinstance(container, str):
            if container not in FORMATS:
                raise ValueError(f"unknown format {container!r}")
            container = container_for(container, image_root=".")
        if not (isinstance(max_records, int) and max_records >= 1 and isinstance(max_bytes, int) and max_bytes >= 1):
            # 0 once made add_batch publish empty shards in an endless loop (issue 17)
            raise ValueError(f"shard limits must be at least 1 record and 1 byte, not {max_records!r}, {max_bytes!r}")
        self.container = container
        self.store, self.split, self.partition, self.fmt, self.schema = store, split, partition, container.name, schema
        self.max_records, self.max_bytes, self.group = max_records, max_bytes, group
        self.finished: list[ShardInfo] = []
        self._part = 0
        self._fh: IO[bytes] | None = None
        self._pq: pq.ParquetWriter | None = None
        self._buffer: list[dict[str, Any]] = []  # dict records of the current row group since the last piece
        self._pieces: list[pa.RecordBatch] = []  # the row group so far, in order (dicts converted on arrival)
        self._pending = 0  # records in the current row group
        self._records = 0
        self._pos = 0
        self._name = ""
        # one struct type for the whole schema: pyarrow converts a row group of dicts in C, column by
        # column, instead of Table.from_pylist's Python pass over every row and key
        self._struct = pa.struct(list(schema))

    def add(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self._open()
        self._records += 1
        if self._pq is not None:  # parquet
            self._buffer.append(record)
            self._pending += 1
            if self._pending >= ROW_GROUP:
                self._flush_parquet()
        else:
            data = self.container.encode(record)
            if self._records > 1:
                data = self.container.between + data
            self._fh.write(data)
            self._pos += len(data)
        # _pos is the file position (only _open, flushes and the writes above move it): no tell() per record
        if self._records >= self.max_records or self._pos >= self.max_bytes:
            self._close_current()

    def add_many(self, records: list[dict[str, Any]]) -> None:
        """:meth:`add` for each record; one list extend when no row group fills and no shard rotates."""
        count = len(records)
        if self._pq is not None and self._pending + count < ROW_GROUP and self._records + count < self.max_records:
            self._buffer.extend(records)  # no flush, so no rotation by bytes either: the same as add() one by one
            self._pending += count
            self._records += count
            return
        for record in records:
            self.add(record)

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Records already in Arrow form (a writer's columnar path): row groups and shards end where
        :meth:`add` of the same records one by one would end them."""
        if not self.container.columnar:
            encoded = self.container.encode_batch(batch) if batch.num_rows else None
            if encoded is None:
                self.add_many(batch.to_pylist())
            else:
                self._add_encoded(encoded)
            return
        start, total = 0, batch.num_rows
        while start < total:
            if self._fh is None:
                self._open()
            # at least one record per pass, whatever max_records says: the loop always advances and the
            # shard it may close next holds a record (never an empty shard, never an endless loop)
            take = max(1, min(ROW_GROUP - self._pending, self.max_records - self._records, total - start))
            self._close_buffer()
            self._pieces.append(batch.slice(start, take))
            start += take
            self._pending += take
            self._records += take
            if self._pending >= ROW_GROUP:
                self._flush_parquet()
            if self._records >= self.max_records or self._pos >= self.max_bytes:
                self._close_current()

    def _add_encoded(self, encoded: pa.Array) -> None:
        """Rows already encoded by the container, written in runs: the same bytes and the same rotation as
        :meth:`add` of each record (``between`` before every record but a shard's first)."""
        between = self.container.between
        plain = _spans(encoded)
        joined = _spans(pc.binary_join_element_wise(between.decode(), encoded, "")) if between else plain
        sizes = np.diff(joined[0])
        total, start = len(encoded), 0
        while start < total:
            if self._fh is None:
                self._open()
            first = bool(between) and self._records == 0  # a shard's first record has no separator
            cumulative = np.cumsum(sizes[start:]) - (len(between) if first else 0)
            reach = int(np.searchsorted(cumulative, self.max_bytes - self._pos, side="left")) + 1
            # at least one record per pass, whatever max_records says (the sink guard, as in add_batch)
            take = max(1, min(self.max_records - self._records, reach, total - start))
            if first:
                self._fh.write(_piece(plain, start, start + 1))
                self._fh.write(_piece(joined, start + 1, start + take))
            else:
                self._fh.write(_piece(joined, start, start + take))
            self._pos += int(cumulative[take - 1])
            self._records += take
            start += take
            if self._records >= self.max_records or self._pos >= self.max_bytes:
                self._close_current()

    def close(self) -> list[ShardInfo]:
        if self._fh is not None:
            self._close_current()
        return self.finished

    def abort(self) -> None:
        """Drop the unfinished shard (its temporary file) after an error."""
        if self._fh is not None:
            # closing may fail again (disk still full): the first error is the one reported
            with suppress(Exception):
                if self._pq is not None:
                    self._pq.close()
            with suppress(Exception):
                self._fh.close()
            with suppress(Exception):
                self.store.remove(tmp_name(self._name))
            self._fh = self._pq = None

    def _open(self) -> None:
        self._name = partition_shard_name(self.split, self.partition, self._part, self.fmt, self.group)
        self._fh = self.store.open(tmp_name(self._name), "wb", hashed=True)
        if self.container.columnar:
            self._pq = pq.ParquetWriter(self._fh, self.schema, **PARQUET_OPTIONS)
        elif self.container.start:
            self._fh.write(self.container.start)
        self._pos = self._fh.tell()

    def _close_buffer(self) -> None:
        """Convert the dict records gathered since the last piece into one."""
        if self._buffer:
            self._pieces.append(pa.RecordBatch.from_struct_array(pa.array(self._buffer, type=self._struct)))
            self._buffer = []

    def _flush_parquet(self) -> None:
        self._close_buffer()
        pieces = self._pieces
        if pieces:
            # one contiguous batch per row group, however it arrived: the file bytes depend on the records only
            batch = pieces[0] if len(pieces) == 1 else pa.Table.from_batches(pieces).combine_chunks().to_batches()[0]
            self._pq.write_batch(batch, row_group_size=ROW_GROUP)
            self._pieces = []
            self._pending = 0
            self._pos = self._fh.tell()

    def _close_current(self) -> None:
        if self._records == 0:  # nothing in it: drop the temporary file rather than publish an empty shard
            self.abort()
            return
        if self.container.columnar:
            self._flush_parquet()
            self._pq.close()
            self._pq = None
        elif self.container.end:
            self._fh.write(self.container.end)
        digest = getattr(self._fh, "digest", None)  # hashed as written: no second pass over the shard
        self._fh.close()
        self._fh = None
        self.store.rename(tmp_name(self._name), self._name)
        self.finished.append(
            ShardInfo(
                split=self.split,
                file=self._name,
                records=self._records,
                bytes=self.store.size(self._name),
                sha256=digest.hexdigest() if digest is not None else self.store.sha256(self._name),
                group=self.group,
            )
        )
        self._records = 0
        self._part += 1


def _spans(strings: pa.Array) -> tuple[np.ndarray, pa.Buffer]:
    """A string array's offsets (as int64) and data buffer (its rows are consecutive byte ranges)."""
    offsets, data = string_buffers(strings)
    return offsets.astype(np.int64), data


def _piece(spans: tuple[np.ndarray, pa.Buffer], start: int, stop: int) -> memoryview:
    offsets, data = spans
    return memoryview(data)[int(offsets[start]) : int(offsets[stop])] if stop > start else memoryview(b"")
