"""``validate``: prove an output directory decodes back to its source boxes.

Every record is checked for its schema and for well-formed, in-range box tokens (the writer's own
``parse``).  Given the source dataset, every decoded box is compared with the canonical box it was
written from, and must lie within one quantization step of the model (per axis); for an output re-targeted from another
writer's records (``--from records``), within the sum of both writers' steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import pyarrow.parquet as pq

from ..boxes import max_abs_error
from ..errors import InputFileError, RecordError, UsageError
from ..output.finalize import MANIFEST
from ..output.packing import TURN_IDS, unpack
from ..output.storage import Store
from ..plugins import get_reader, get_writer
from ..safe_paths import UnsafePath, resolve_under, safe_relative
from ..schema import Box, Sample
from ..writers.base import Writer, grounded_regions, ordered_spans


@dataclass
class Report:
    records: int = 0
    shards: int = 0
    boxes_checked: int = 0
    failures: int = 0
    messages: list[str] = field(default_factory=list)
    worst_steps: float = 0.0
    worst_pixels: float = 0.0
    worst_record: str | None = None
    missing_sources: int = 0

    def fail(self, message: str) -> None:
        self.failures += 1
        if len(self.messages) < 20:
            self.messages.append(message)

    @property
    def ok(self) -> bool:
        return self.failures == 0


def iter_records(store: Store, shards: list[dict[str, Any]], fmt: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(shard file, record) for every record, streaming.

    Shard names come from ``manifest.json``, which may be a stranger's (validating a published output):
    a name that would leave the output folder is refused as a whole-file problem before anything is read.
    """
    for shard in shards:
        with store.open(shard_name(store, shard.get("file") if isinstance(shard, dict) else None), "rb") as fh:
            if fmt == "parquet":
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=2048):
                    for row in batch.to_pylist():
                        yield shard["file"], row
            elif fmt == "jsonl":
                for line in fh:
                    if line.strip():
                        yield shard["file"], orjson.loads(line)
            elif fmt == "json":
                for record in json_array_records(fh, shard["file"]):
                    yield shard["file"], record
            else:
                raise UsageError("validate reads parquet, jsonl or json outputs (tsv has no image sizes to decode)")


def json_array_records(fh: IO[bytes], name: str) -> Iterator[dict[str, Any]]:
    """The records of a ``--format json`` shard, streaming: the container writes ``[``, one record per line
    (``,`` between them) and ``]`` (``output/containers.py``), so each line parses on its own."""
    lines = iter(fh)
    if next(lines, b"").strip() != b"[":
        raise UsageError(f"{name} does not start with '[' on a line of its own: not a grounding-convert json shard")
    for line in lines:
        line = line.strip()
        if line == b"]":
            return
        yield orjson.loads(line[:-1] if line.endswith(b",") else line)
    raise UsageError(f"{name} ends before its closing ']'")


def unpacked(records: Iterator[tuple[str, dict[str, Any]]], writer: Writer, turns: int):
    """(shard, record) with packed conversations (``--turns``) split back into their records."""
    if turns == 1:
        yield from records
        return
    for shard, record in records:
        try:
            parts = unpack(record, writer.conversation)
        except RecordError:
            yield shard, record  # the caller reports what is wrong with it
            continue
        for part in parts:
            yield shard, part


def shard_name(store: Store, name: object) -> str:
    """A manifest's shard name, checked to stay inside the output folder (safe_paths)."""
    try:
        rel = safe_relative(name).as_posix()
        if store.is_local:
            resolve_under(store.root, rel)
    except UnsafePath as exc:
        raise InputFileError(store.path(MANIFEST), exc.message, "shard files inside the output folder") from None
    return rel


def index_source(source: str, reader_name: str, reader_options: dict[str, Any]) -> dict[str, Sample]:
    """All canonical samples of the source by id (memory grows with the source: meant for fixtures)."""
    reader = get_reader(reader_name).from_mapping(reader_options)
    samples: dict[str, Sample] = {}
    for partition in reader.plan(source):
        for item in reader.read(partition):
            if isinstance(item, Sample):
                samples[item.id] = item
    return samples


def expected_boxes(sample: Sample, record: dict[str, Any]) -> list[Box] | None:
    """The source boxes a record was written from, in writing order (None: match each to the nearest)."""
    task = record.get("task")
    if task in ("rec", "reg"):
        index = int(str(record["id"]).rsplit("/", 1)[1])
        regions = dict(grounded_regions(sample))
        return list(regions[index].boxes) if index in regions else []
    if task == "grounded-caption":
        return [box for region in ordered_spans(sample) for box in region.boxes]
    return None


def validate(
    output: str, source: str | None = None, reader: str | None = None, reader_options: dict[str, Any] | None = None
) -> Report:
    store = Store(output)
    if not store.exists(MANIFEST):
        raise UsageError(f"{output} has no {MANIFEST}: not a finished grounding-convert output")
    manifest = store.read_json(MANIFEST)
    job = manifest["job"]
    writer: Writer = get_writer(job["writer"]).from_mapping(dict(job.get("writer_options", {})))
    turns = int(job.get("turns", 1))
    schema_names = writer.schema().names + ([TURN_IDS] if turns > 1 else [])
    if source is not None:
        samples = index_source(source, reader or job["reader"], reader_options or dict(job.get("reader_options", {})))
    else:
        samples = None
    carried = _carried_tolerance(job)
    report = Report(shards=len(manifest["shards"]))
    names = set(schema_names) - {TURN_IDS}
    for shard_file, record in unpacked(iter_records(store, manifest["shards"], job["format"]), writer, turns):
        report.records += 1
        where = f"{shard_file} record {record.get('id')!r}"
        if set(record) != names:
            report.fail(f"{where}: fields {sorted(record)} differ from the writer schema {sorted(schema_names)}")
            continue
        try:
            decoded = writer.parse(record)
        except RecordError as exc:
            report.fail(f"{where}: {exc.reason}: {exc.message}")
            continue
        w, h = _size(record)
        boxes = [b for d in decoded for b in d.boxes]
        for box in boxes:
            if not (-1e-6 <= box[0] <= box[2] <= w + 1e-6 and -1e-6 <= box[1] <= box[3] <= h + 1e-6):
                report.fail(f"{where}: decoded box {box} is outside the {w}x{h} image")
        if samples is None:
            continue
        sample_id = record.get("sample_id", record.get("id"))
        sample = samples.get(sample_id)
        if sample is None:
            report.missing_sources += 1
            report.fail(f"{where}: sample {sample_id!r} is not in the source")
            continue
        _compare(report, writer, record, sample, boxes, where, carried)
    return report


def _carried_tolerance(job: dict[str, Any]) -> Any:
    """For an output made from records (``--from records``): the step those records already carried.

    Re-targeted boxes went through two quantizers, so they may be off by both steps (per axis).
    """
    try:
        reader = get_reader(job["reader"])
    except UsageError:
        return None
    carried = getattr(reader, "carried_tolerance", None)
    if carried is None:
        return None
    return lambda w, h: carried(job["input"], w, h)


def _size(record: dict[str, Any]) -> tuple[int, int]:
    """Image size of a record: top-level for model writers, inside ``image`` for canonical samples."""
    if "width" in record:
        return record["width"], record["height"]
    return record["image"]["width"], record["image"]["height"]


def _compare(
    report: Report,
    writer: Writer,
    record: dict[str, Any],
    sample: Sample,
    boxes: list[Box],
    where: str,
    carried: Any = None,
) -> None:
    w, h = sample.image.width, sample.image.height
    sx, sy = writer.tolerance(w, h)
    if carried is not None:  # the sum of both tolerances
        cx, cy = carried(w, h)
        sx, sy = sx + cx, sy + cy
    expected = expected_boxes(sample, record)
    if expected is not None and len(expected) != len(boxes):
        report.fail(f"{where}: decoded {len(boxes)} box(es), the source has {len(expected)}")
        return
    pool = [b for r in sample.regions for b in r.boxes]
    for i, box in enumerate(boxes):
        candidates = [expected[i]] if expected is not None else pool
        errors = [max_abs_error(box, c) for c in candidates]
        ex, ey = min(errors, key=lambda e: max(e[0] / sx, e[1] / sy))
        steps = max(ex / sx, ey / sy)
        report.boxes_checked += 1
        if steps > report.worst_steps:
            report.worst_steps, report.worst_pixels, report.worst_record = steps, max(ex, ey), record["id"]
        if steps > 1.0 + 1e-9:
            report.fail(f"{where}: box {i} is {ex:.2f}px/{ey:.2f}px off its source (> one step {sx:.2f}/{sy:.2f}px)")
