"""One partition, start to finish: read → task expansion → render → shards, rejects, commit marker.

This is the only function an engine runs remotely.  It is deterministic (records depend on the job and
the partition, never on the worker or the clock), writes shards under temporary names, and writes the
commit marker last, so a partition is either committed with all its files or redone on ``--resume``.

Samples a writer can render as Arrow columns (``Writer.batchable``) wait in a batch and are rendered
together (``writers/batch.py``); everything else, and any sample the columnar path refuses, is rendered
per record.  The order of records and rejects is the input order either way.
"""

from __future__ import annotations

import gc
import traceback
from contextlib import suppress
from typing import Any

import numpy as np
import orjson

from ..errors import Filtered, GroundingConvertError, Note, ReaderCrash, RecordError, Reject, StrictStop
from ..images import SizeCheck
from ..output.containers import Container, container_for
from ..output.packing import Packer, packed_schema
from ..output.shards import PARTS_DIR, ShardSink
from ..output.storage import Store, tmp_name
from ..readers.base import Partition, SampleBlock
from ..schema import Sample
from ..writers.batch import RenderedBatch
from .job import Job, parse_max_rejects
from .tally import Tally, histogram_columns

UNSPLIT = "train"  # shard name for datasets published without splits (Visual Genome, GRIT)


# A partition allocates millions of short-lived, acyclic containers (rows, samples, records) that reference
# counting frees; at Python's default threshold (700) the cycle collector runs every few samples and
# rescans them, which cost ~15-20% of a GRIT run; at 20,000 a reader block's few thousand captions (each
# with its annotation's dicts and sets) were still rescanned, ~2-3% of a Flickr30K Entities run.  Cycles
# (rare: exceptions) are still collected.
GC_YOUNG = 100_000
# Samples rendered together by a writer's columnar path: large enough that the fixed cost of a few dozen
# Arrow kernel calls disappears (4,096 runs ~4% fewer instructions per GRIT row than 1,024), small enough
# to keep memory flat (~25,000 records, a few tens of MB).
BATCH_SAMPLES = 4096


def marker_name(index: int) -> str:
    return f"_progress/part-{index:05d}.json"


def rejects_name(index: int) -> str:
    return f"rejects/part-{index:05d}.jsonl"


def drop_temporaries(store: Store, index: int) -> None:
    """Remove the hidden temporary files of a partition whose worker was stopped (call once it is dead)."""
    tag = f"-p{index:05d}-"
    for name in store.listdir(PARTS_DIR):
        if name.startswith(".") and name.endswith(".tmp") and tag in name:
            store.remove(f"{PARTS_DIR}/{name}")
    for rel in (tmp_name(rejects_name(index)), tmp_name(marker_name(index))):
        store.remove(rel)


def run_partition(job: Job, partition: Partition, limit: int | None = None) -> dict[str, Any]:
    """Convert one partition and commit it; returns the marker's content (shards and tally)."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_YOUNG), *threshold[1:])
    try:
        return _run(job, partition, limit)
    except GroundingConvertError:
        raise
    except Exception as exc:  # a plugin bug must not surface as a bare traceback to users
        raise ReaderCrash(
            f"{partition.source} (partition {partition.key}): unexpected {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        ) from exc
    finally:
        gc.set_threshold(*threshold)


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
            with suppress(Exception):  # may fail again (disk still full): the first error is reported
                self._fh.close()
            with suppress(Exception):
                self.store.remove(tmp_name(self.name))


def _run(job: Job, partition: Partition, limit: int | None) -> dict[str, Any]:
    reader, writer = job.build()
    store = Store(job.output)
    store.makedirs(PARTS_DIR)
    schema = writer.schema() if job.turns == 1 else packed_schema(writer.schema())
    container = container_for(job.format, job.image_root)
    max_rejects, _ = parse_max_rejects(job.max_rejects)
    tally = Tally()
    sinks: dict[tuple[str, str], ShardSink] = {}
    rejects = _Rejects(store, partition.index)

    def reject(item: Reject) -> None:
        tally.count_rejected(item.split, item.reason)
        rejects.add(item)
        where = f"{item.source}" + (f" [{item.position}]" if item.position is not None else "")
        if job.strict:
            raise StrictStop(f"--strict: {where}: {item.reason}: {item.message}")
        if max_rejects is not None and tally.rejected > max_rejects:
            raise StrictStop(
                f"--max-rejects {job.max_rejects} exceeded in {partition.source}; last: {where}: {item.message}"
            )

    convert = _Converter(job, writer, partition, tally, sinks, reject, schema, store, container)
    convert.check_text = not reader.valid_unicode(partition)
    # runs of plain samples as columns (SampleBlock), where nothing needs a sample object: no size check,
    # no --limit to stop at, and a writer that renders them as they are
    blocks = convert.blocks_ready() and limit is None
    try:
        for item in reader.read_blocks(partition) if blocks else reader.read(partition):
            if isinstance(item, Sample):  # by far the most common item: test it first
                if limit is not None and tally.read >= limit:
                    break
                tally.count_read(item.split)
                convert(item)
                continue
            if isinstance(item, SampleBlock):
                tally.notes.update(item.notes)
                convert.block(item)
                continue
            if isinstance(item, Note):
                tally.notes[item.what] += item.count
                continue
            if isinstance(item, Filtered):
                tally.count_read(item.split)
                tally.count_filtered(item.split, item.reason)
                continue
            if isinstance(item, Reject):
                tally.count_read(item.split)
                convert.defer(item)  # after the rejects of the samples waiting for a batch, as in the input
                continue
            raise TypeError(f"reader {type(reader).__name__} yielded a {type(item).__name__}")
        convert.flush()
        convert.close_packs()
        shards = [info.to_dict() for key in sorted(sinks) for info in sinks[key].close()]
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


class _Converter:
    """Renders one sample's records for every task and hands them to the split's shard sink.

    A class (not a function taking ten arguments) so the per-partition constants are looked up once,
    not once per sample: this runs for every input record.
    """

    def __init__(self, job, writer, partition, tally, sinks, reject, schema, store, container: Container) -> None:
        self.job, self.writer, self.partition, self.tally, self.sinks = job, writer, partition, tally, sinks
        self.reject, self.schema, self.store, self.container = reject, schema, store, container
        self.tasks, self.seed, self.wanted = job.tasks, job.seed, job.reader_options.get("split")
        self.seen: set[str] = set()
        self.check_text = True  # off when the reader vouches for its strings (Reader.valid_unicode)
        # the writer's columnar path (writers/batch.py), for containers that take Arrow batches
        self.batchable = None
        if container.batched and not container.grouped and job.turns == 1 and writer.batch_ready(self.tasks):
            self.batchable = writer.batchable
        self.pending: list[Sample] = []
        # rejects that arrived while samples waited for a batch: (samples before it, reject)
        self.deferred: list[tuple[int, Reject]] = []
        # --turns N: records go through the packer, which hands finished conversations to the sinks
        self.packer = None if job.turns == 1 else Packer(writer.conversation, job.turns, self._add_packed)
        # --image-root: each image's real size against the annotated one (images.py), cached per partition
        self.size_check = SizeCheck(job.image_root, job.size_mismatch) if job.image_root else None
        # a sample without boxes makes no model record (filtered as no-task-applies), so its image is not
        # needed; only the canonical "sample" task writes such samples (with their image size)
        self.check_boxless = "sample" in self.tasks

    def __call__(self, sample: Sample) -> None:
        tally = self.tally
        if sample.id in self.seen:
            self.defer(
                Reject(
                    "duplicate-id",
                    f"sample id {sample.id!r} produced twice",
                    self.partition.source,
                    sample.id,
                    split=sample.split,
                )
            )
            return
        self.seen.add(sample.id)
        bad = unencodable_text(sample) if self.check_text else None
        if bad is not None:
            self.defer(
                Reject(
                    "bad-text",
                    f"sample {sample.id!r} holds text that is not valid Unicode (lone surrogate in {bad!r})",
                    self.partition.source,
                    sample.id,
                    split=sample.split,
                )
            )
            return
        if self.wanted and sample.split != self.wanted:
            tally.count_filtered(sample.split, "split")
            return
        if self.size_check is not None and (self.check_boxless or any(region.boxes for region in sample.regions)):
            try:
                sample, note = self.size_check(sample)
            except RecordError as exc:
                self.flush()
                self.reject_sample(sample, exc)
                return
            if note is not None:
                tally.notes[note] += 1
        pending = self.pending
        try:
            batchable = self.batchable is not None and self.batchable(sample)
        except Exception:  # a writer bug on an odd sample: the per-record path deals with it (and rejects)
            batchable = False
        if batchable:
            if pending and pending[0].split != sample.split:
                self.flush()  # a batch goes to one split's shards
                pending = self.pending  # flush started a new list: the sample must not join the flushed one
            pending.append(sample)
            if len(pending) >= BATCH_SAMPLES:
                self.flush()
            return
        if pending:
            self.flush()
        self.render_one(sample)

    def blocks_ready(self) -> bool:
        return self.batchable is not None and self.size_check is None and self.writer.block_ready(self.tasks)

    def block(self, block: SampleBlock) -> None:
        """A reader's block: rendered from its columns when every sample would have gone to the columnar
        path and none is refused; else sample by sample, exactly as :meth:`Reader.read` gives them."""
        ids = block.ids
        plain = (
            (not self.wanted or block.split == self.wanted)
            and not (self.check_text and unencodable_block(block))
            and self.seen.isdisjoint(ids)
            and len(set(ids)) == len(ids)
            and self.writer.block_batchable(block)
        )
        result = self._render_block(block) if plain else None
        if not isinstance(result, RenderedBatch):
            for sample in block.samples():
                self.tally.count_read(sample.split)
                self(sample)
            return
        self.flush()  # the samples waiting for a batch come first
        self.tally.count_read_many(block.split, len(block))
        self.seen.update(ids)
        sizes = np.asarray(block.widths, dtype=np.int64) * np.asarray(block.heights, dtype=np.int64)
        self._write_rendered(block.split, result, block.texts, block.regions_per_sample(), sizes)

    def _render_block(self, block: SampleBlock) -> RenderedBatch | list[int] | None:
        try:
            return self.writer.render_block(block, self.tasks, self.seed)
        except Exception:  # a writer bug: the samples take the usual paths (which reject what is bad)
            return None

    def _render_batch(self, samples: list[Sample]) -> RenderedBatch | list[int]:
        """The writer's columnar path; should it fail, every sample is handed back to the per-record path."""
        try:
            return self.writer.render_batch(samples, self.tasks, self.seed)
        except Exception:
            return list(range(len(samples)))

    def render_one(self, sample: Sample) -> None:
        """The per-record path: render every task of one sample and hand its records to the sink."""
        tally = self.tally
        try:
            rendered = self.writer.render_tasks(sample, self.tasks, self.seed)
        except RecordError as exc:
            self.reject(
                Reject(exc.reason, exc.message, self.partition.source, sample.id, raw=exc.raw, split=sample.split)
            )
            return
        except Exception as exc:  # a writer bug on one odd sample: keep the run going, keep the evidence
            self.reject(
                Reject(
                    "render-failed",
                    f"{type(exc).__name__}: {exc}",
                    self.partition.source,
                    sample.id,
                    split=sample.split,
                )
            )
            return
        per_task = {task: len(records) for task, records in rendered if records}
        if not per_task:
            tally.count_filtered(sample.split, "no-task-applies")
            return
        try:
            self.container.check(sample)  # OFA's TSV: the image must be readable
        except RecordError as exc:
            self.reject_sample(sample, exc)
            return
        examples = tally.examples
        for task, records in rendered:
            if records:
                if task not in examples:
                    examples[task] = records[0]
                self.emit(sample.split or UNSPLIT, records)
        tally.count_written(sample, per_task)

    def reject_sample(self, sample: Sample, exc: RecordError) -> None:
        """A RecordError raised for one sample outside its reader, as a reject naming the sample."""
        message = f"sample {sample.id!r}: {exc.message}"
        self.reject(Reject(exc.reason, message, self.partition.source, sample.id, raw=exc.raw, split=sample.split))

    def emit(self, split: str, records: list[dict[str, Any]]) -> None:
        """Records to their shards: through the packer (``--turns``), per file group, or all at once."""
        if self.packer is not None:
            self.packer.add(split, records)
        elif self.container.grouped:
            for record in records:
                self.sink(split, self.container.group(record)).add(record)
        else:
            self.sink(split, "").add_many(records)

    def _add_packed(self, split: str, record: dict[str, Any]) -> None:
        self.sink(split, self.container.group(record)).add(record)

    def close_packs(self) -> None:
        """The conversations still open at the end of the partition (``--turns``)."""
        if self.packer is not None:
            self.packer.close()
            if self.packer.packed:
                self.tally.notes["packed-conversations"] += self.packer.packed

    def defer(self, item: Reject) -> None:
        """A reject in input order: now, or after the samples waiting for a batch (which stay one batch)."""
        if self.pending:
            self.deferred.append((len(self.pending), item))
        else:
            self.reject(item)

    def flush(self) -> None:
        """Render the samples waiting for a batch, in order (refused ones one by one, for their reject), with
        the rejects that arrived among them in their input places."""
        samples, deferred = self.pending, self.deferred
        if not samples:
            return
        self.pending, self.deferred = [], []
        result = self._render_batch(samples)
        if isinstance(result, RenderedBatch):  # no sample rejected: the waiting rejects keep their order
            self._write_batch(samples, result)
            for _, item in deferred:
                self.reject(item)
            return
        refused, run, waiting = set(result), [], deferred[::-1]
        for position, sample in enumerate(samples):
            while waiting and waiting[-1][0] == position:
                if run:
                    self._render_run(run)
                    run = []
                self.reject(waiting.pop()[1])
            if position not in refused:
                run.append(sample)
                continue
            if run:
                self._render_run(run)
                run = []
            self.render_one(sample)
        if run:
            self._render_run(run)
        for _, item in reversed(waiting):
            self.reject(item)

    def _render_run(self, samples: list[Sample]) -> None:
        result = self._render_batch(samples)
        if isinstance(result, RenderedBatch):
            self._write_batch(samples, result)
        else:  # cannot happen (these were not refused): stay correct anyway
            for sample in samples:
                self.render_one(sample)

    def _write_batch(self, samples: list[Sample], result: RenderedBatch) -> None:
        self._write_rendered(samples[0].split, result, *histogram_columns(samples))

    def _write_rendered(self, split: str | None, result: RenderedBatch, texts: list[str], region_counts: Any,
                        sizes: Any) -> None:  # fmt: skip
        """A rendered batch to its split's shards, counted (samples of one split: their texts, numbers of
        regions and image areas for the tally's histograms)."""
        tally, counts = self.tally, result.counts
        per_sample = counts.sum(axis=0)
        unwritten = int(np.count_nonzero(per_sample == 0))
        if unwritten:
            tally.count_filtered(split, "no-task-applies", unwritten)
        missing = [t for t, task in enumerate(result.tasks) if task not in tally.examples and counts[t].any()]
        if missing:  # each task's first record in this batch, taken in record order
            sample_rows = np.cumsum(per_sample) - per_sample  # where each sample's records begin
            firsts = sorted((int(np.argmax(counts[t] > 0)), t) for t in missing)
            for s, t in firsts:
                row = int(sample_rows[s] + counts[:t, s].sum())
                tally.examples[result.tasks[t]] = result.batch.slice(row, 1).to_pylist()[0]
        tally.count_written_columns(
            split, texts, region_counts, sizes, result.tasks, counts, result.boxes, result.box_sample
        )
        self.sink(split, "").add_batch(result.batch)

    def sink(self, split: str | None, group: str) -> ShardSink:
        """The shard sink of a split and container file group (opened on its first record)."""
        name = split or UNSPLIT
        sink = self.sinks.get((name, group))
        if sink is None:
            job = self.job
            sink = self.sinks[name, group] = ShardSink(
                self.store,
                name,
                self.partition.index,
                self.container,
                self.schema,
                job.max_records_per_shard,
                job.max_shard_bytes,
                group,
            )
        return sink


def unencodable_block(block: SampleBlock) -> bool:
    """Whether any string of a block's samples is one :func:`unencodable_text` would name (then its samples
    go one by one, and that one is rejected).  Whole lists at once: almost every string is ASCII."""
    for strings in (block.ids, block.texts, block.files, block.image_ids, block.phrases, block.strings):
        if "".join(strings).isascii():
            continue
        if any(not text.isascii() and not _encodes(text) for text in strings):
            return True
    split = block.split
    return split is not None and not split.isascii() and not _encodes(split)


def unencodable_text(sample: Sample) -> str | None:
    """The first string of a sample that UTF-8 cannot encode (a lone surrogate from a broken source), or None.

    Shards are UTF-8; one such string would fail a whole row group later, far from the record. ASCII
    strings (almost all of them) are passed by a fast check.
    """
    image = sample.image
    for text in (sample.id, sample.text, sample.answer, sample.split, image.file, image.id, image.url):
        if text is not None and not text.isascii() and not _encodes(text):
            return _shown(text)
    for region in sample.regions:
        for text in (region.phrase, region.category):
            if text is not None and not text.isascii() and not _encodes(text):
                return _shown(text)
    for key, value in sample.meta.items():
        if key is not None and not key.isascii() and not _encodes(key):
            return _shown(key)
        if isinstance(value, str) and not value.isascii() and not _encodes(value):
            return _shown(value)
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("ascii", "replace")[:80]
