"""Our own finished outputs read back into canonical samples, to re-target old data without its source.

Input is an output folder of ``convert``: ``manifest.json`` names the writer, its options and the shards.
Every record is decoded with that writer's own ``parse`` (found through the plugin registry), so boxes come
back within the writer's quantization step (``Writer.tolerance``), and the records of one source sample
(they are written next to each other, possibly across a shard boundary) become one sample again:

* ``id`` is the record's ``sample_id``, ``dataset`` its first part, ``split`` the shard's split;
* ``rec`` / ``reg`` records ``…/rec/<i>`` give region ``i`` (phrase and boxes).  Region indices are kept —
  indices the writer made no record for (regions without boxes) become empty placeholder regions — so a
  re-targeted output has exactly the record ids a conversion from the source would have had, and
  ``validate --source`` can compare it with the original dataset;
* a ``grounded-caption`` record gives the text: the caption with the writer's tags stripped.  Which field
  holds it and how its tags look is the writer's spelling (FORMATS.md); :data:`UNTAGGERS` knows the four
  built-in writers.  Each region gets its span from the caption entity with the same decoded boxes (tagged
  writers also give the phrase's start; CogVLM and OFA mark only its end, and the phrase from the REC record
  fixes the start).  A caption whose entities do not line up with ``parse`` is not used (note
  ``caption-not-recovered``);
* without a caption, a sample of one region gets that phrase as its text (RefCOCO, VG: the text *is* the
  phrase); otherwise the text is empty (note ``text-not-recovered``).  Pointing records are not rebuilt
  (note ``pointing-not-recovered``): their question is inside a writer-specific prompt.

A record ``parse`` refuses is rejected with the writer's reason; the rest of its sample is kept.
``validate`` of a re-targeted output adds this writer's step to the new writer's
(:meth:`RecordsReader.carried_tolerance`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputFileError, Note, RecordError, Reject, UsageError
from ..safe_paths import UnsafePath, resolve_under
from ..schema import Box, ImageRef, Region, Sample
from ..writers.base import Decoded, Writer
from .base import Partition, Reader, ReaderOptions, ReadItem

MANIFEST = "manifest.json"
EXPECTED = "a finished grounding-convert output folder (manifest.json + data/ shards)"
MAX_REGIONS = 10_000  # a record id ``…/rec/<i>`` beyond this is damage, not a region (placeholders fill gaps)

Entity = tuple[int | None, int]  # (phrase start or None when the spelling does not mark it, phrase end)


# --- caption untagging, per built-in writer (FORMATS.md spellings) ----------------------------------------


def _untag(text: str, pattern: re.Pattern[str], phrase_group: int | None) -> tuple[str, list[Entity]]:
    """Remove every match of ``pattern``, keeping group ``phrase_group`` (the tagged phrase) as plain text."""
    plain: list[str] = []
    length = 0
    entities: list[Entity] = []
    cursor = 0
    for match in pattern.finditer(text):
        plain.append(text[cursor : match.start()])
        length += match.start() - cursor
        phrase = match.group(phrase_group) if phrase_group else None
        if phrase is not None:
            plain.append(phrase)
            start = length + (len(phrase) - len(phrase.lstrip(" ")))
            length += len(phrase)
            entities.append((start, length))
        else:
            entities.append((None, length))
        cursor = match.end()
    plain.append(text[cursor:])
    return "".join(plain), entities


_KOSMOS = re.compile(r"(?:<phrase>([^<]*)</phrase>)?<object>(?:(?!</object>).)*</object>", re.S)
_QWEN = re.compile(r"(?:<ref>(.*?)</ref>)?(?:<box>.*?</box>)+", re.S)
_COGVLM = re.compile(r" ?\[\[[^\[\]]*\]\]")
_OFA = re.compile(r" ?<bin_\d+>(?: <bin_\d+>)*")


def _kosmos(record: dict[str, Any]) -> tuple[str, list[Entity]]:
    # KOSMOS-2 writes " " + caption; the space moved inside a leading <phrase>
    return _without_lead_space(*_untag(str(record.get("completion", "")), _KOSMOS, 1))


def _qwen(record: dict[str, Any]) -> tuple[str, list[Entity]]:
    # Qwen-VL puts a space inside a <ref> that opens the caption (`<ref> The red car</ref>`, CONFORMANCE Q1)
    return _without_lead_space(*_untag(_turn(record, 1, "value"), _QWEN, 1))


def _same(caption_part: str, phrase: str) -> bool:
    """The phrase where the caption holds it, up to case (OFA lower-cases captions with pre_caption)."""
    return caption_part == phrase or caption_part.lower() == phrase.lower()


def _without_lead_space(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Drop the one space a writer added before a caption (captions are read stripped)."""
    if not text.startswith(" "):
        return text, entities
    return text[1:], [(None if s is None else max(s - 1, 0), e - 1) for s, e in entities]


def _turn(record: dict[str, Any], index: int, key: str) -> str:
    turns = record.get("conversations")
    if isinstance(turns, list) and len(turns) > index and isinstance(turns[index], dict):
        return str(turns[index].get(key, ""))
    return ""


UNTAGGERS: dict[str, Callable[[dict[str, Any]], tuple[str, list[Entity]]]] = {
    "kosmos-2": _kosmos,
    "qwen-vl": _qwen,
    "cogvlm": lambda r: _untag(_turn(r, 1, "content"), _COGVLM, None),
    "ofa": lambda r: _without_lead_space(*_untag(str(r.get("target", "")), _OFA, None)),  # target ' ' + caption
}


# --- reading shards -----------------------------------------------------------------------------------


def shard_records(path: str, fmt: str) -> Iterator[dict[str, Any]]:
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2048):
                yield from batch.to_pylist()
        elif fmt == "jsonl":
            with open(path, "rb") as handle:
                for line in handle:
                    if line.strip():
                        yield orjson.loads(line)
        elif fmt == "json":
            from ..tools.validate import json_array_records

            with open(path, "rb") as handle:
                yield from json_array_records(handle, path)
        else:
            raise InputFileError(path, f"is a {fmt} shard; records are read back from parquet, jsonl or json", EXPECTED)
    except UsageError as exc:  # json_array_records: not our json container
        raise InputFileError(path, str(exc), EXPECTED) from None
    except (pa.ArrowException, OSError, orjson.JSONDecodeError) as exc:
        raise InputFileError(path, f"cannot be read as a {fmt} shard ({exc})", EXPECTED) from None


def last_sample_id(path: str, fmt: str) -> str | None:
    last = None
    if fmt == "parquet":
        try:
            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_row_groups:
                column = parquet.read_row_group(parquet.metadata.num_row_groups - 1, columns=["sample_id"])
                values = column.column(0).to_pylist()
                last = values[-1] if values else None
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise InputFileError(path, f"cannot be read as a parquet shard ({exc})", EXPECTED) from None
        return last
    for record in shard_records(path, fmt):
        last = record.get("sample_id")
    return last


@dataclass
class RecordsOptions(ReaderOptions):
    pass


class RecordsReader(Reader):
    """A finished output of any writer, decoded back into canonical samples with that writer's parse."""

    name = "records"
    dataset = "records"
    description = "a finished grounding-convert output (manifest.json names the writer): re-target records"
    Options = RecordsOptions

    @staticmethod
    def manifest(input_path: str) -> dict[str, Any]:
        path = Path(input_path) / MANIFEST
        if not Path(input_path).is_dir():
            raise InputFileError(
                input_path, "is not a folder" if Path(input_path).exists() else "does not exist", EXPECTED
            )
        try:
            data = orjson.loads(path.read_bytes())
            job = data["job"]
            data["shards"], job["writer"], job["format"]  # noqa: B018 - presence check
        except OSError:
            raise InputFileError(str(path), "not found: not a finished output", EXPECTED) from None
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputFileError(str(path), f"is not a grounding-convert manifest ({exc})", EXPECTED) from None
        return data

    @classmethod
    def writer_of(cls, input_path: str) -> Writer:
        from ..plugins import get_writer

        job = cls.manifest(input_path)["job"]
        if job["writer"] == "canonical":
            raise UsageError(f"{input_path} holds canonical samples: read it with --from canonical")
        try:
            return get_writer(str(job["writer"])).from_mapping(dict(job.get("writer_options") or {}))
        except (UsageError, TypeError, ValueError) as exc:
            where = str(Path(input_path) / MANIFEST)
            raise InputFileError(where, f"names a writer this tool cannot build ({exc})", EXPECTED) from None

    @classmethod
    def carried_tolerance(cls, input_path: str, width: int, height: int) -> tuple[float, float]:
        """The quantization step the records already carry: added to the new writer's by ``validate``."""
        return cls.writer_of(input_path).tolerance(width, height)

    @classmethod
    def detect(cls, path: str) -> bool:
        manifest = Path(path) / MANIFEST
        if not manifest.is_file():
            return False
        try:
            return orjson.loads(manifest.read_bytes())["job"]["writer"] != "canonical"
        except (orjson.JSONDecodeError, KeyError, TypeError, OSError):
            return False

    def input_files(self, input_path: str) -> list[Path]:
        try:
            shards = self.manifest(input_path)["shards"]
        except InputFileError:
            return []
        return [Path(input_path) / MANIFEST] + [Path(input_path) / s["file"] for s in shards]

    def plan(self, input_path: str) -> list[Partition]:
        data = self.manifest(input_path)
        self.writer_of(input_path)  # unknown writer / bad options: a usage problem, at plan time
        job = data["job"]
        if job.get("turns", 1) != 1:
            raise UsageError(
                f"{input_path} packs {job['turns']} records per conversation (--turns); records re-targets "
                "unpacked outputs: convert the source again with --turns 1"
            )
        by_split: dict[str, list[str]] = {}
        where = str(Path(input_path) / MANIFEST)
        for shard in data["shards"]:
            try:
                file = str(resolve_under(input_path, shard["file"]))
                split = shard.get("split") or "train"
            except (UnsafePath, KeyError, TypeError, AttributeError) as exc:
                raise InputFileError(
                    where, f"lists a shard that is not a file of this output ({exc})", EXPECTED
                ) from None
            if not isinstance(split, str):
                raise InputFileError(where, f"lists a shard whose split is {split!r}", EXPECTED)
            if not Path(file).is_file():
                raise InputFileError(file, "is listed in manifest.json but missing", EXPECTED)
            by_split.setdefault(split, []).append(file)
        if self.options.split is not None and self.options.split not in by_split:
            raise UsageError(f"{input_path} has no split {self.options.split!r} (it has {', '.join(by_split)})")
        parts = []
        for split, files in by_split.items():
            if self.options.split is not None and split != self.options.split:
                continue
            for i, file in enumerate(files):
                params = {"root": input_path, "files": files, "position": i, "split": split, "format": job["format"]}
                parts.append(Partition(len(parts), Path(file).stem, file, params))
        return parts

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        params = partition.params
        files, position, fmt = params["files"], params["position"], params["format"]
        writer = self.writer_of(params["root"])
        prefix = (getattr(writer.options, "image_prefix", None) or "").rstrip("/")
        skip = last_sample_id(files[position - 1], fmt) if position > 0 else None
        group: list[tuple[str, dict[str, Any]]] = []
        for file, record in self._records(files, position, fmt):
            sample_id = record.get("sample_id")
            if skip is not None and sample_id == skip:
                continue  # the previous partition finishes this sample
            skip = None
            new_sample = not group or sample_id != group[0][1].get("sample_id")
            if new_sample and file != files[position]:
                break  # a sample starting in the next shard belongs to that shard's partition
            if group and new_sample:
                yield from self._sample(group, writer, prefix, params["split"])
                group = []
            group.append((file, record))
        if group:
            yield from self._sample(group, writer, prefix, params["split"])

    @staticmethod
    def _records(files: list[str], position: int, fmt: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """This shard's records, then the following shards' (the caller stops at the next sample)."""
        for file in files[position:]:
            for record in shard_records(file, fmt):
                yield file, record

    def _sample(
        self, group: list[tuple[str, dict[str, Any]]], writer: Writer, prefix: str, split: str
    ) -> Iterator[ReadItem]:
        first = group[0][1]
        sample_id = first.get("sample_id")
        regions: dict[int, Region] = {}
        caption: tuple[str, list[tuple[Entity, list[Box]]]] | None = None
        for file, record in group:
            record_id = str(record.get("id"))
            try:
                if not isinstance(sample_id, str) or not sample_id:
                    raise RecordError("missing-key", "record has no sample_id")
                decoded = writer.parse(record)
            except RecordError as exc:
                yield Reject(exc.reason, f"{file}: record {record_id!r}: {exc.message}", file, record_id, None, split)
                continue
            task = record.get("task")
            if task in ("rec", "reg"):
                tail = record_id.rsplit("/", 1)[-1]
                index = int(tail) if tail.isascii() and tail.isdigit() else -1
                if not 0 <= index < MAX_REGIONS:
                    message = f"{file}: record {record_id!r}: id does not end with a region index below {MAX_REGIONS}"
                    yield Reject("bad-record", message, file, record_id, None, split)
                    continue
                if index in regions and task == "reg":
                    continue  # rec already gave this region (same boxes, same phrase)
                regions[index] = _region(decoded)
            elif task == "grounded-caption":
                caption = self._caption(writer, record, decoded)
                if caption is None:
                    yield Note("caption-not-recovered")
            elif task == "pointing":
                yield Note("pointing-not-recovered")
        if not isinstance(sample_id, str) or not sample_id:
            return
        size = (first.get("width"), first.get("height"))
        image = str(first.get("image", ""))
        if prefix and image.startswith(prefix + "/"):
            image = image[len(prefix) + 1 :]
        ordered = [regions.get(i) or Region(phrase="") for i in range(max(regions) + 1)] if regions else []
        text = ""
        if caption is not None:
            text = caption[0]
            ordered = _place(text, ordered, caption[1])
        elif len(regions) == 1 and len(ordered) == 1 and ordered[0].phrase:
            text = ordered[0].phrase
            ordered[0].span = (0, len(text))
        elif ordered:
            yield Note("text-not-recovered")
        if not ordered and caption is None:
            return
        yield Sample(
            id=sample_id,
            dataset=sample_id.split("/", 1)[0],
            split=split,
            image=ImageRef(file=image, width=size[0], height=size[1]),
            text=text,
            regions=ordered,
            meta={"records_writer": writer.name},
        )

    @staticmethod
    def _caption(
        writer: Writer, record: dict[str, Any], decoded: list[Decoded]
    ) -> tuple[str, list[tuple[Entity, list[Box]]]] | None:
        untag = getattr(writer, "caption_entities", None) or UNTAGGERS.get(writer.name)  # ms-swift-objects
        if untag is None:
            return None
        text, entities = untag(record)
        grounded = [d for d in decoded if d.boxes]
        if len(entities) != len(grounded):
            return None
        return text, [(entity, d.boxes) for entity, d in zip(entities, grounded, strict=True)]


def _region(decoded: list[Decoded]) -> Region:
    phrase = next((d.phrase for d in decoded if d.phrase), "") or ""
    return Region(phrase=phrase.strip(), boxes=[b for d in decoded for b in d.boxes])


def _place(text: str, regions: list[Region], entities: list[tuple[Entity, list[Box]]]) -> list[Region]:
    """Give each region the span of the caption entity with the same boxes; add entities no region has."""
    unused = list(range(len(entities)))
    for region in regions:
        for k in unused:
            (start, end), boxes = entities[k]
            if region.boxes and boxes == region.boxes:
                phrase = region.phrase
                if start is None and phrase and _same(text[max(0, end - len(phrase)) : end], phrase):
                    start = end - len(phrase)
                if start is not None:
                    region.span = (start, end)
                    unused.remove(k)
                break
    for k in unused:
        (start, end), boxes = entities[k]
        if start is not None:
            regions.append(Region(phrase=text[start:end], span=(start, end), boxes=boxes))
    return regions
