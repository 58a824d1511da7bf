"""One partition, start to finish: read → task expansion → render → shards, rejects, commit marker.

This is the only function an engine runs remotely.  It is deterministic (records depend on the job and
the partition, never on the worker or the clock), writes shards under temporary names, and writes the
commit marker last, so a partition is either committed with all its files or redone on ``--resume``.
"""

from __future__ import annotations

import traceback
from typing import Any

import orjson

from ..errors import Filtered, GroundingConvertError, Note, ReaderCrash, RecordError, Reject, StrictStop
from ..output.shards import ShardSink
from ..output.storage import Store, tmp_name
from ..readers.base import Partition
from ..schema import Sample
from .job import Job, parse_max_rejects
from .tally import Tally

UNSPLIT = "train"  # shard name for datasets published without splits (Visual Genome, GRIT)


def marker_name(index: int) -> str:
    return f"_progress/part-{index:05d}.json"


def rejects_name(index: int) -> str:
    return f"rejects/part-{index:05d}.jsonl"


def run_partition(job: Job, partition: Partition, limit: int | None = None) -> dict[str, Any]:
    """Convert one partition and commit it; returns the marker's content (shards and tally)."""
    try:
        return _run(job, partition, limit)
    except GroundingConvertError:
        raise
    except Exception as exc:  # a plugin bug must not surface as a bare traceback to users
        raise ReaderCrash(
            f"{partition.source} (partition {partition.key}): unexpected {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        ) from exc


class _Rejects:
    """Streams rejects of one partition to a temporary JSONL file, renamed when the partition ends."""

    def __init__(self, store: Store, index: int):
        self.store, self.name, self.count, self._fh = store, rejects_name(index), 0, None

    def add(self, reject: Reject) -> None:
        if self._fh is None:
            self.store.makedirs("rejects")
            self._fh = self.store.open(tmp_name(self.name), "wb")
        self._fh.write(orjson.dumps(reject.to_record(), default=repr) + b"\n")
        self.count += 1

    def close(self) -> str | None:
        if self._fh is None:
            return None
        self._fh.close()
        self.store.rename(tmp_name(self.name), self.name)
        return self.name

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self.store.remove(tmp_name(self.name))


def _run(job: Job, partition: Partition, limit: int | None) -> dict[str, Any]:
    reader, writer = job.build()
    store = Store(job.output)
    store.makedirs("data")
    schema = writer.schema()
    tsv_row = getattr(writer, "tsv_row", None)
    max_rejects, _ = parse_max_rejects(job.max_rejects)
    tally = Tally()
    sinks: dict[str, ShardSink] = {}
    rejects = _Rejects(store, partition.index)
    seen: set[str] = set()

    def reject(item: Reject) -> None:
        tally.count_rejected(item.split, item.reason)
        rejects.add(item)
        where = f"{item.source}" + (f" [{item.position}]" if item.position is not None else "")
        if job.strict:
            raise StrictStop(f"--strict: {where}: {item.reason}: {item.message}")
        if max_rejects is not None and tally.rejected > max_rejects:
            raise StrictStop(f"--max-rejects {job.max_rejects} exceeded in {partition.source}; last: {where}: {item.message}")

    try:
        for item in reader.read(partition):
            if isinstance(item, Note):
                tally.notes[item.what] += item.count
                continue
            if isinstance(item, Filtered):
                tally.read += 1
                tally._split(item.split)["read"] += 1
                tally.count_filtered(item.split, item.reason)
                continue
            if isinstance(item, Reject):
                tally.read += 1
                tally._split(item.split)["read"] += 1
                reject(item)
                continue
            sample: Sample = item
            tally.count_read(sample.split)
            if limit is not None and tally.read > limit:
                tally.read -= 1
                tally._split(sample.split)["read"] -= 1
                break
            _convert(job, writer, sample, partition, tally, sinks, seen, reject, schema, store, tsv_row)
        shards = [info.to_dict() for split in sorted(sinks) for info in sinks[split].close()]
        rejects_file = rejects.close()
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        rejects.abort()
        raise
    result = {
        "index": partition.index,
        "key": partition.key,
        "source": partition.source,
        "shards": shards,
        "rejects": rejects_file,
        "tally": tally.to_dict(),
    }
    store.write_json_atomic(marker_name(partition.index), result)
    return result


def _convert(job, writer, sample, partition, tally, sinks, seen, reject, schema, store, tsv_row) -> None:
    split = sample.split or UNSPLIT
    if sample.id in seen:
        reject(Reject("duplicate-id", f"sample id {sample.id!r} produced twice", partition.source, sample.id,
                      split=sample.split))
        return
    seen.add(sample.id)
    wanted = job.reader_options.get("split")
    if wanted and sample.split != wanted:
        tally.count_filtered(sample.split, "split")
        return
    records: list[tuple[str, dict[str, Any]]] = []
    per_task: dict[str, int] = {}
    try:
        for task in job.tasks:
            rendered = writer.render(sample, task, job.seed)
            per_task[task] = len(rendered)
            records.extend((task, record) for record in rendered)
    except RecordError as exc:
        reject(Reject(exc.reason, exc.message, partition.source, sample.id, raw=exc.raw, split=sample.split))
        return
    except Exception as exc:  # a writer bug on one odd sample: keep the run going, keep the evidence
        reject(Reject("render-failed", f"{type(exc).__name__}: {exc}", partition.source, sample.id,
                      split=sample.split))
        return
    if not records:
        tally.count_filtered(sample.split, "no-task-applies")
        return
    sink = sinks.get(split)
    if sink is None:
        sink = sinks[split] = ShardSink(
            store, split, partition.index, job.format, schema, job.max_records_per_shard, job.max_shard_bytes, tsv_row
        )
    for task, record in records:
        sink.add(record)
        tally.examples.setdefault(task, record)
    tally.count_written(sample, {t: n for t, n in per_task.items() if n})
