"""The canonical reader: reads back what ``--to canonical`` wrote (Parquet or JSONL shards).

A cluster job can normalize a dataset once and render several models from the same canonical shards.
One partition per shard file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import Filtered, InputFileError, Reject
from ..schema import Sample
from .base import Partition, Reader, ReadItem, SampleBlock
from .canonical_blocks import block_of, plain_rows

SUFFIXES = (".parquet", ".jsonl")


class CanonicalReader(Reader):
    """Canonical samples from a `--to canonical` output folder (or single shard files)."""

    name = "canonical"
    dataset = "canonical"
    description = "canonical samples written by --to canonical (an output folder or single shard files)"

    def input_files(self, input_path: str) -> list[Path]:
        root = Path(input_path)
        if root.is_file():
            return [root]
        folder = root / "data" if (root / "data").is_dir() else root
        return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))

    def plan(self, input_path: str) -> list[Partition]:
        root = Path(input_path)
        if not root.exists():
            raise InputFileError(input_path, "does not exist", "a --to canonical output folder or shard file")
        files = self.input_files(input_path)
        if not files:
            raise InputFileError(input_path, "holds no .parquet or .jsonl shards", "a --to canonical output folder")
        return [Partition(i, f.stem, str(f)) for i, f in enumerate(files)]

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        path = partition.source
        rows = self._parquet_rows(path) if path.endswith(".parquet") else self._jsonl_rows(path)
        for position, row in rows:
            yield from self._row(row, path, position)

    def read_blocks(self, partition: Partition) -> Iterator[ReadItem | SampleBlock]:
        """:meth:`read`, with each Parquet batch's plain rows as :class:`SampleBlock` columns (no dict or
        :class:`Sample` per row); the other rows, JSON Lines shards and ``--split`` runs as ``read`` gives
        them.  A sample read the slow way ends the block before it; rejects do not."""
        path = partition.source
        if not path.endswith(".parquet") or self.options.split:
            yield from self.read(partition)
            return
        for first, batch in self._parquet_batches(path):
            plain = plain_rows(batch)
            splits = batch.column("split").to_pylist() if "split" in batch.schema.names else [None] * len(plain)
            plain = plain.tolist()
            run: list[int] = []  # plain rows of one split, waiting to be a block
            for i in range(batch.num_rows):
                if plain[i]:
                    if run and splits[i] != splits[run[0]]:
                        yield block_of(batch, run, splits[run[0]])
                        run = []
                    run.append(i)
                    continue
                items = list(self._row(batch.slice(i, 1).to_pylist()[0], path, first + i))
                if run and any(isinstance(item, Sample) for item in items):
                    yield block_of(batch, run, splits[run[0]])  # a sample read the slow way keeps its place
                    run = []
                yield from items
            if run:
                yield block_of(batch, run, splits[run[0]])

    def _row(self, row: dict | Reject, path: str, position: int) -> Iterator[ReadItem]:
        """One row's sample, or its reject (or, with ``--split``, its filtered marker)."""
        if isinstance(row, Reject):
            yield row
            return
        try:
            sample = Sample.from_record(row)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield Reject("bad-record", f"not a canonical sample ({type(exc).__name__}: {exc})", path, position, row)
            return
        if not isinstance(sample.id, str) or not sample.id:
            yield Reject("bad-record", f"not a canonical sample (id {sample.id!r} is not a text)", path, position, row)
            return
        if self.options.split and sample.split != self.options.split:
            yield Filtered("split", path, position, split=sample.split)
            return
        yield sample

    @classmethod
    def _parquet_rows(cls, path: str) -> Iterator[tuple[int, dict | Reject]]:
        for first, batch in cls._parquet_batches(path):
            for offset, row in enumerate(batch.to_pylist()):
                yield first + offset, row

    @staticmethod
    def _parquet_batches(path: str) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Each record batch of a shard, with the position of its first row."""
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(path, f"not a readable Parquet file ({exc})", "canonical sample shards") from exc
        missing = {"id", "dataset", "image", "text", "regions"} - set(parquet.schema_arrow.names)
        if missing:
            raise InputFileError(path, f"has no column(s) {', '.join(sorted(missing))}", "the canonical schema")
        position = 0
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                yield position, batch
                position += batch.num_rows
        except (pa.ArrowException, OSError) as exc:  # a damaged page or row group is found only while reading
            raise InputFileError(path, f"not a readable Parquet file ({exc})", "canonical sample shards") from exc

    @staticmethod
    def _jsonl_rows(path: str) -> Iterator[tuple[int, dict | Reject]]:
        with open(path, "rb") as fh:
            for line_number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield line_number, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield (
                        line_number,
                        Reject(
                            "bad-record",
                            f"line {line_number} is not JSON ({exc})",
                            path,
                            line_number,
                            line[:200].decode("utf-8", "replace"),
                        ),
                    )

    @classmethod
    def detect(cls, path: str) -> bool:
        root = Path(path)
        manifest = root / "manifest.json"
        if manifest.is_file():
            try:
                return orjson.loads(manifest.read_bytes())["job"]["writer"] == "canonical"
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return False
        return False
