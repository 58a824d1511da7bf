"""Mix stage 2: one shuffle bucket → its shards, globally interleaved, capped and deduplicated.

A record's bucket is a hash of its id (or, with dedup, of its image + text + task, so duplicates meet in one
bucket), so every bucket is a uniform random slice of the whole mixture; inside a bucket records are
ordered by a second hash.  Concatenating the buckets' shards is therefore a global shuffle, done with memory
for one bucket only, and the bytes depend on the records alone (not on workers or arrival order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..output.shards import PARTS_DIR, ShardSink
from ..output.storage import Store
from . import keys as K
from .stage import INTERNAL_NAMES, MixJob, spill_name

SPLIT = "train"  # a mixture is training data: one split


@dataclass(frozen=True)
class BucketTask:
    index: int
    pieces: tuple[tuple[int, tuple[int, ...]], ...]  # (stage partition, its batches of this bucket)
    caps: tuple[int, ...]  # per source: keep samples whose hash bin is below this (CAP_BINS: keep all)


def bucket_marker(index: int) -> str:
    return f"_progress/bucket-{index:05d}.json"


def run_bucket(job: MixJob, task: BucketTask) -> dict[str, Any]:
    store = Store(job.output)
    writer = job.sources[0].job.build()[1]
    schema = writer.schema()
    table = _load(store, task, schema)
    n = table.num_rows
    sources = table.column("_source").to_numpy() if n else np.zeros(0, dtype=np.int32)
    keep = np.ones(n, dtype=bool)
    counts: dict[int, dict[str, int]] = {}
    for s in np.unique(sources).tolist():
        counts[s] = {"records": int((sources == s).sum()), "capped": 0, "deduplicated": 0, "written": 0}
    if n and any(c < K.CAP_BINS for c in task.caps):
        bins = table.column("_draw").to_numpy() >> np.uint64(K.CAP_SHIFT)
        keep &= bins < np.array(task.caps, dtype=np.uint64)[sources]
        _count(counts, sources, ~keep, "capped")
    if n and job.dedup:
        dedup, prio = table.column("_dedup").to_numpy(), table.column("_prio").to_numpy()
        order = np.lexsort((prio, dedup))
        alive = order[keep[order]]  # capped records take no part
        first = np.ones(len(alive), dtype=bool)
        first[1:] = dedup[alive][1:] != dedup[alive][:-1]
        group = np.cumsum(first) - 1
        winner = prio[alive][first][group]
        lost = alive[prio[alive] != winner]
        removed = np.zeros(n, dtype=bool)
        removed[lost] = True
        keep &= ~removed
        _count(counts, sources, removed, "deduplicated")
    kept = np.flatnonzero(keep)
    ordered = kept[np.argsort(table.column("_order").to_numpy()[kept], kind="stable")] if n else kept
    _count(counts, sources, keep, "written")
    store.makedirs(PARTS_DIR)
    sink = ShardSink(
        store,
        SPLIT,
        task.index,
        job.format,
        schema,
        job.max_records_per_shard,
        job.max_shard_bytes,
    )
    try:
        out = table.drop_columns(INTERNAL_NAMES).take(pa.array(ordered, type=pa.int64()))
        for batch in out.to_batches(max_chunksize=4096):
            sink.add_batch(batch)
        shards = [info.to_dict() for info in sink.close()]
    except BaseException:
        sink.abort()
        raise
    result = {
        "index": task.index,
        "shards": shards,
        "sources": {str(s): c for s, c in sorted(counts.items())},
    }
    store.write_json_atomic(bucket_marker(task.index), result)
    return result


def _load(store: Store, task: BucketTask, schema: pa.Schema) -> pa.Table:
    from .stage import spill_schema

    full = spill_schema(schema)
    batches: list[pa.RecordBatch] = []
    for stage_index, positions in task.pieces:
        if store.is_local:
            source = pa.memory_map(store.path(spill_name(stage_index)))
        else:
            with store.open(spill_name(stage_index), "rb") as fh:
                source = pa.BufferReader(fh.read())
        reader = pa.ipc.open_file(source)
        batches += [reader.get_batch(i) for i in positions]
    return pa.Table.from_batches(batches, schema=full).combine_chunks()


def _count(counts: dict[int, dict[str, int]], sources: np.ndarray, mask: np.ndarray, what: str) -> None:
    if not mask.any():
        return
    values, numbers = np.unique(sources[mask], return_counts=True)
    for s, c in zip(values.tolist(), numbers.tolist(), strict=True):
        counts[s][what] += c
