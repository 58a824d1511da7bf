"""Mix stage 1: one source partition → decontaminated, weighted records in hash buckets (a spill file).

The records are rendered by the same code as ``convert`` (``engine/pipeline._Converter`` with the
writer's per-record and columnar paths); only the sink differs: instead of shards, records go to one Arrow
IPC spill file per partition, as batches that each belong to one shuffle bucket.  Memory is bounded by
``FLUSH_ROWS`` buffered records, whatever the input size.  The commit marker (written last) lists the
bucket of every batch, so stage 2 (``shuffle.py``) reads only its own bucket's batches.
"""

from __future__ import annotations

import gc
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..engine.job import Job
from ..engine.pipeline import GC_YOUNG, _Converter, _Rejects
from ..engine.tally import Tally
from ..errors import Filtered, GroundingConvertError, Note, ReaderCrash, Reject
from ..output.containers import container_for
from ..output.storage import Store, tmp_name
from ..readers.base import Partition
from ..schema import Sample
from . import keys as K

FLUSH_ROWS = 32_768  # records buffered across all buckets before they are written as batches
INTERNAL = [
    ("_source", pa.int32()),
    ("_draw", pa.uint64()),
    ("_order", pa.uint64()),
    ("_dedup", pa.uint64()),
    ("_prio", pa.uint64()),
]
INTERNAL_NAMES = [name for name, _ in INTERNAL]
SPILL_DIR = "_progress/spill"


@dataclass(frozen=True)
class MixSource:
    """One recipe source as the workers need it: its conversion job and its weight."""

    name: str
    job: Job
    weight: float
    max_samples: int | None


@dataclass(frozen=True)
class MixJob:
    """Everything the workers of both stages need (picklable)."""

    output: str
    seed: int
    format: str
    dedup: bool
    buckets: int
    sources: tuple[MixSource, ...]
    exclusions: dict[str, frozenset] = field(default_factory=dict)
    max_records_per_shard: int = 100_000
    max_shard_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class StageTask:
    index: int  # global: partitions of all sources, source by source
    source: int
    partition: Partition


def stage_marker(index: int) -> str:
    return f"_progress/stage-{index:05d}.json"


def spill_name(index: int) -> str:
    return f"{SPILL_DIR}/stage-{index:05d}.arrow"


def spill_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(list(schema) + INTERNAL)


def run_stage(job: MixJob, task: StageTask) -> dict[str, Any]:
    """Stage one partition and commit it; returns the marker's content."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_YOUNG), *threshold[1:])
    try:
        return _stage(job, task)
    except GroundingConvertError:
        raise
    except Exception as exc:
        p = task.partition
        raise ReaderCrash(
            f"{p.source} (partition {p.key}): unexpected {type(exc).__name__}: {exc}", traceback.format_exc()
        ) from exc
    finally:
        gc.set_threshold(*threshold)


class _Info:
    """What the spill sink needs to know about a sample whose records are on their way."""

    __slots__ = ("sample", "identity", "prio", "draw")

    def __init__(self, sample: Sample, identity: str, prio: int, draw: int):
        self.sample, self.identity, self.prio, self.draw = sample, identity, prio, draw


class SpillSink:
    """Takes rendered records (dicts or Arrow batches, as the converter hands them) and buckets them."""

    def __init__(self, job: MixJob, source: int, store: Store, name: str, schema: pa.Schema, info: dict[str, _Info]):
        self.job, self.source, self.store, self.name, self.info = job, source, store, name, info
        self.schema = schema
        self.struct = pa.struct(list(schema))
        self.full = spill_schema(schema)
        self.dicts: dict[int, list[dict[str, Any]]] = {}
        self.arrow: dict[int, list[pa.RecordBatch]] = {}
        self.extra: dict[int, list[tuple[int, int, int, int]]] = {}  # per bucket, in the order rows arrive
        self.buffered = 0
        self.records = 0
        self.batch_buckets: list[int] = []
        self._fh = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def _keys(self, record_id: str, sample_id: str, task: str) -> tuple[int, tuple[int, int, int, int]]:
        """(bucket, internal columns) of one record; the dedup hash only when the recipe dedups."""
        info = self.info[sample_id]
        seed = self.job.seed
        order = K.order_key(seed, self.source, record_id)
        if not self.job.dedup:
            return order % self.job.buckets, (info.draw, order, 0, info.prio)
        text = K.record_text(info.sample, task, record_id[len(sample_id) + 1 :])
        dedup = K.dedup_key(seed, info.identity, task, text)
        return dedup % self.job.buckets, (info.draw, order, dedup, info.prio)

    def add(self, record: dict[str, Any]) -> None:
        self.add_many([record])

    def add_many(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            record_id = record["id"]
            bucket, extra = self._keys(record_id, record.get("sample_id", record_id), record.get("task", "sample"))
            self.dicts.setdefault(bucket, []).append(record)
            self.extra.setdefault(bucket, []).append(extra)
        self._added(len(records))

    def add_batch(self, batch: pa.RecordBatch) -> None:
        ids = batch.column("id").to_pylist()
        names = batch.schema.names
        sample_ids = batch.column("sample_id").to_pylist() if "sample_id" in names else ids
        tasks = batch.column("task").to_pylist() if "task" in names else ["sample"] * len(ids)
        rows: dict[int, list[int]] = {}
        extras: dict[int, list[tuple[int, int, int, int]]] = {}
        for row, (record_id, sample_id, task) in enumerate(zip(ids, sample_ids, tasks, strict=True)):
            bucket, extra = self._keys(record_id, sample_id, task)
            rows.setdefault(bucket, []).append(row)
            extras.setdefault(bucket, []).append(extra)
        for bucket, positions in rows.items():
            self._dicts_to_arrow(bucket)  # keep arrival order: earlier dict rows become a piece first
            self.arrow.setdefault(bucket, []).append(batch.take(pa.array(positions, type=pa.int64())))
            self.extra.setdefault(bucket, []).extend(extras[bucket])
        self._added(len(ids))

    def _dicts_to_arrow(self, bucket: int) -> None:
        records = self.dicts.pop(bucket, None)
        if records:
            piece = pa.RecordBatch.from_struct_array(pa.array(records, type=self.struct))
            self.arrow.setdefault(bucket, []).append(piece)

    def _added(self, count: int) -> None:
        self.buffered += count
        self.records += count
        if self.buffered >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._writer is None:
            self.store.makedirs(SPILL_DIR)
            self._fh = self.store.open(tmp_name(self.name), "wb")
            # zstd: the spill is a second copy of every record on disk, ~6x smaller this way
            self._writer = pa.ipc.new_file(self._fh, self.full, options=pa.ipc.IpcWriteOptions(compression="zstd"))
        for bucket in sorted(set(self.dicts) | set(self.arrow)):
            self._dicts_to_arrow(bucket)
            pieces = self.arrow.pop(bucket)
            table = pa.Table.from_batches(pieces, schema=self.schema).combine_chunks()
            extra = np.array(self.extra.pop(bucket), dtype=np.uint64).reshape(-1, 4)
            columns = [*table.columns]
            columns.append(pa.array(np.full(len(extra), self.source, dtype=np.int32)))
            columns += [pa.array(extra[:, i]) for i in range(4)]
            out = pa.Table.from_arrays(columns, schema=self.full).combine_chunks()
            for batch in out.to_batches():
                self._writer.write_batch(batch)
                self.batch_buckets.append(bucket)
        self.buffered = 0

    def close(self) -> str:
        self.flush()
        self._writer.close()
        self._fh.close()
        self.store.rename(tmp_name(self.name), self.name)
        return self.name

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
                self._fh.close()
            finally:
                self.store.remove(tmp_name(self.name))


class _SpillConverter(_Converter):
    """The convert pipeline's renderer with the spill file as the sink of every split."""

    spill: SpillSink

    def sink(self, split: str | None, group: str = "") -> SpillSink:  # type: ignore[override]
        return self.spill


def _stage(job: MixJob, task: StageTask) -> dict[str, Any]:
    source = job.sources[task.source]
    sjob, partition = source.job, task.partition
    reader, writer = sjob.build()
    store = Store(job.output)
    tally = Tally()
    hist = [0] * K.CAP_BINS if source.max_samples is not None else None
    info: dict[str, _Info] = {}
    spill = SpillSink(job, task.source, store, spill_name(task.index), writer.schema(), info)
    rejects = _Rejects(store, task.index)

    def reject(item: Reject) -> None:
        tally.count_rejected(item.split, item.reason)
        rejects.add(item)

    container = container_for(sjob.format, sjob.image_root)
    convert = _SpillConverter(sjob, writer, partition, tally, {}, reject, writer.schema(), store, container)
    convert.spill = spill
    convert.check_text = not reader.valid_unicode(partition)
    exclusions = K.Exclusions(job.exclusions)
    copies_added = 0
    prio_base = task.source << 56
    wanted = sjob.reader_options.get("split")
    try:
        for item in reader.read(partition):
            if isinstance(item, Sample):
                tally.count_read(item.split)
                if wanted and item.split != wanted:  # as convert does, before anything is counted against it
                    tally.count_filtered(item.split, "split")
                    continue
                hit = exclusions.hit(item)
                if hit is not None:
                    tally.count_filtered(item.split, f"decontaminated:{hit}")
                    continue
                draw = K.sample_draw(job.seed, source.name, item.id)
                n = K.copies(source.weight, draw)
                if n == 0:
                    tally.count_filtered(item.split, "weight")
                    continue
                copies_added += n - 1
                if hist is not None:
                    hist[draw >> K.CAP_SHIFT] += n
                identity = K.image_identity(item)
                prio = prio_base | (K.hash64("prio", item.id) >> 8)
                for k in range(n):
                    copy = K.copy_of(item, k)
                    info[copy.id] = _Info(copy, identity, prio, draw)
                    convert(copy)
                if not convert.pending:
                    info.clear()  # every sample so far has been rendered and spilled
                continue
            if isinstance(item, Note):
                tally.notes[item.what] += item.count
                continue
            if isinstance(item, Filtered):
                tally.count_read(item.split)
                tally.count_filtered(item.split, item.reason)
                continue
            if isinstance(item, Reject):
                convert.flush()
                tally.count_read(item.split)
                reject(item)
                continue
            raise TypeError(f"reader {type(reader).__name__} yielded a {type(item).__name__}")
        convert.flush()
        spill_file = spill.close()
        rejects_file = rejects.close()
    except BaseException:
        spill.abort()
        rejects.abort()
        raise
    tally.notes["weight-copies"] += copies_added
    if not tally.notes["weight-copies"]:
        del tally.notes["weight-copies"]
    result = {
        "index": task.index,
        "source": task.source,
        "key": partition.key,
        "input": partition.source,
        "spill": spill_file,
        "batches": spill.batch_buckets,
        "records": spill.records,
        "rejects": rejects_file,
        "tally": tally.to_dict(),
        "hist": hist,
    }
    store.write_json_atomic(stage_marker(task.index), result)
    return result
