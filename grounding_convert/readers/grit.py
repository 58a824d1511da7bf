"""GRIT reader (SOURCES §5): captions whose noun chunks (or referring expressions) carry normalized boxes.

Three layouts are read, all into the same samples:

* the published parquet shards (a folder of ``*.parquet`` or one file), partitioned by row groups;
  ``noun_chunks``/``ref_exps`` arrive as ``list<list<float64>>`` so offsets are floats (19.0);
* the original ``grit_coyo.jsonl``, partitioned by byte ranges aligned to line starts at plan time;
* an img2dataset webdataset download (``00000.tar`` with ``<key>.jpg/.txt/.json`` + ``00000.parquet``),
  one partition per tar; rows of the beside-parquet whose ``status`` is not ``success`` are counted as
  ``Filtered("download-failed")``.  A parquet with a ``status`` column (img2dataset's parquet output) is
  treated the same way.

Boxes are de-normalized with the size of the image the user actually has: img2dataset's ``width``/
``height`` (the stored, possibly resized image) when the record was downloaded, else GRIT's own.
``image.file`` is ``<key>.jpg`` for a download (the webdataset key; the tar is in ``meta.tar``) and
``<id>.jpg`` for raw parquet/jsonl (GRIT's ``key`` is an img2dataset artefact the card says to omit;
the id is unique and ``image.url`` says where to fetch it).  GRIT publishes a single set, which the HF
hub exposes as ``train``, so ``split`` is ``"train"``.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import boxes
from ..errors import Filtered, InputFileError, Note, RecordError, Reject
from ..option_types import MIN_SCORE, PER_PARTITION, bounded
from ..safe_paths import UnsafePath, safe_relative
from ..schema import ImageRef, Region, Sample, grit_id
from .base import Partition, Reader, ReaderOptions, ReadItem, SampleBlock

SPAN_FIELDS = {"noun-chunks": "noun_chunks", "ref-exps": "ref_exps"}
COLUMNS = [
    "key", "id", "url", "caption", "width", "height", "clip_similarity_vitb32", "clip_similarity_vitl14",
    "status", "error_message", "original_width", "original_height",
]  # fmt: skip
META_KEYS = ("clip_similarity_vitb32", "clip_similarity_vitl14")
SPLIT = "train"


@dataclass
class GritOptions(ReaderOptions):
    spans: Literal["noun-chunks", "ref-exps"] = "noun-chunks"
    min_score: float = bounded(0.0, MIN_SCORE)
    rows_per_partition: int = bounded(50000, PER_PARTITION)


class GritReader(Reader):
    name = "grit"
    dataset = "grit"
    description = "GRIT (GrIT-20M, KOSMOS-2): parquet shards, grit_coyo.jsonl or an img2dataset download"
    Options = GritOptions
    options: GritOptions

    # --- detection and planning ----------------------------------------------------------------------

    @classmethod
    def detect(cls, path: str) -> bool:
        try:
            layout, files = _layout(Path(path))
        except InputFileError:
            return False
        return _peek(layout, files[0])

    def input_files(self, input_path: str) -> list[Path]:
        layout, files = _layout(Path(input_path))
        if layout != "img2dataset":
            return files
        extra = [f.with_suffix(".parquet") for f in files]
        extra += [f.parent / f"{f.stem}_stats.json" for f in files]
        return sorted(files + [f for f in extra if f.is_file()])

    def plan(self, input_path: str) -> list[Partition]:
        layout, files = _layout(Path(input_path))
        if self.options.split and self.options.split != SPLIT:
            return []  # GRIT is one published set ("train"): another split selects nothing, uncounted
        parts: list[tuple[str, str, dict[str, Any]]] = []
        rows = max(1, int(self.options.rows_per_partition))
        field = SPAN_FIELDS[self.options.spans]
        for path in files:
            if layout == "parquet":
                for n, params in enumerate(_row_group_ranges(path, rows, field)):
                    parts.append((f"{path.stem}-{n:05d}", str(path), params))
            elif layout == "jsonl":
                for n, (start, end) in enumerate(_byte_ranges(path, rows)):
                    parts.append((f"{path.stem}-{n:05d}", str(path), {"start": start, "end": end}))
            else:
                beside = path.with_suffix(".parquet")
                parquet = str(beside) if beside.is_file() else None
                parts.append((f"{path.stem}", str(path), {"parquet": parquet}))
        return [
            Partition(i, key, source, {"layout": layout, **params}) for i, (key, source, params) in enumerate(parts)
        ]

    def valid_unicode(self, partition: Partition) -> bool:
        """Parquet strings come from Arrow and JSONL through orjson, both strict UTF-8 (orjson refuses a
        lone surrogate escape); tar member names may not be, so img2dataset downloads are checked."""
        return partition.params["layout"] in ("parquet", "jsonl")

    # --- reading -------------------------------------------------------------------------------------

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        layout = partition.params["layout"]
        if layout == "parquet":
            yield from self._read_parquet(partition)
        elif layout == "jsonl":
            yield from self._read_jsonl(partition)
        else:
            yield from self._read_tar(partition)

    def read_blocks(self, partition: Partition) -> Iterator[ReadItem | SampleBlock]:
        """Parquet rows the array pass vouches for come as :class:`SampleBlock` runs (no object per row)."""
        if partition.params["layout"] == "parquet":
            return self._read_parquet(partition, blocks=True)
        return self.read(partition)

    def _read_parquet(self, partition: Partition, blocks: bool = False) -> Iterator[ReadItem | SampleBlock]:
        source, params = partition.source, partition.params
        field = SPAN_FIELDS[self.options.spans]
        try:
            pfile = pq.ParquetFile(source)
            names = set(pfile.schema_arrow.names)
            columns = [c for c in [*COLUMNS, field] if c in names]
            row = params["first_row"]
            groups = params["row_groups"]
            build = self._build
            for batch in pfile.iter_batches(batch_size=2048, row_groups=groups, columns=columns):
                # column by column: only Python lists, no dict per row (a row's dict is built for a reject)
                names = batch.schema.names
                n = batch.num_rows
                nones = [None] * n
                # the chunk lists are checked and de-normalized as arrays (prepared); a row the array pass
                # does not vouch for gets its Python lists and the per-row path
                columns_py = {name: batch.column(name).to_pylist() for name in names if name != field}
                get = columns_py.get
                ids, captions = get("id", nones), get("caption", nones)
                widths, heights = get("width", nones), get("height", nones)
                statuses = get("status")
                downloaded = statuses is not None
                arrays = (
                    _chunk_arrays(batch.column(field), captions, widths, heights, self.options.min_score)
                    if field in names
                    else None
                )
                simple = _simple_rows(arrays, ids, captions) if blocks and arrays and not downloaded else None
                prepared = _prepared_regions(arrays, captions, simple) if arrays else nones
                chunks = _LazyColumn(batch.column(field)) if field in names else nones
                cols = [columns_py[name] if name != field else chunks for name in names]
                keys, urls = get("key", nones), get("url", nones)
                b32, l14 = get(META_KEYS[0], nones), get(META_KEYS[1], nones)
                ow, oh = get("original_width", nones), get("original_height", nones)
                # a run of rows the array pass vouches for entirely: one block, no object per row; a row of
                # it is built (by the row path) only if it leaves the columnar path
                make = partial(
                    self._row_sample, arrays, field, ids, captions, widths, heights, b32, l14, keys, urls, ow, oh
                )
                runs = dict(_runs(simple)) if simple is not None else {}
                in_run = simple.tolist() if simple is not None else None
                for i in range(n):
                    stop = runs.get(i)
                    if stop is not None:
                        yield _block(arrays, i, stop, ids, captions, widths, heights, make)
                        continue
                    if in_run is not None and in_run[i]:
                        continue  # inside the run just yielded
                    if downloaded and statuses[i] != "success":
                        yield Filtered("download-failed", source, f"row {row + i}")
                        continue
                    try:
                        found = prepared[i]
                        sample, dropped, clipped = build(
                            ids[i], captions[i], _READY if found is not None else chunks[i], field, widths[i],
                            heights[i], b32[i], l14[i], keys[i], urls[i], downloaded, ow[i], oh[i], None, None,
                            found,
                        )  # fmt: skip
                    except RecordError as exc:
                        position = f"row {row + i}"
                        record = {name: col[i] for name, col in zip(names, cols, strict=True)}
                        yield Reject(exc.reason, f"{source}: {position}: {exc.message}", source, position, _raw(record))
                        continue
                    if dropped:
                        yield Note("below-min-score", dropped, {"source": source})
                    if sample is None:
                        yield Filtered("no-regions", source, f"row {row + i}")
                        continue
                    yield sample
                    if clipped:
                        yield Note("clipped-box", clipped, {"sample_id": sample.id, "source": source})
                row += n
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(source, f"unreadable parquet ({exc})", "a GRIT parquet shard") from None

    def _read_jsonl(self, partition: Partition) -> Iterator[ReadItem]:
        source, start, end = partition.source, partition.params["start"], partition.params["end"]
        try:
            with open(source, "rb") as f:
                f.seek(start)
                offset = start
                while offset < end:
                    line = f.readline()
                    if not line:
                        break
                    position, offset = f"byte {offset}", offset + len(line)
                    if not line.strip():
                        continue
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield _bad_json(source, position, line, exc)
                        continue
                    yield from self._convert(record, source, position, downloaded=False)
        except OSError as exc:
            raise InputFileError(source, f"cannot read ({exc})") from None

    def _read_tar(self, partition: Partition) -> Iterator[ReadItem]:
        source = partition.source
        tar_name = Path(source).name
        try:
            with tarfile.open(source, "r:") as tar:
                for member in tar:
                    if not member.isfile() or not member.name.endswith(".json"):
                        continue
                    position = member.name
                    try:  # a member name is data too: one that climbs or is absolute marks a hostile tar
                        key = safe_relative(member.name).stem
                    except UnsafePath as exc:
                        yield Reject(exc.reason, f"{source}: member {exc.message}", source, position, exc.raw)
                        continue
                    handle = tar.extractfile(member)
                    data = handle.read() if handle is not None else b""
                    try:
                        record = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        yield _bad_json(source, position, data, exc)
                        continue
                    if isinstance(record, dict):
                        record.setdefault("key", key)
                    yield from self._convert(
                        record, source, position, downloaded=True, image_file=f"{key}.jpg", tar=tar_name
                    )
        except (OSError, tarfile.TarError) as exc:
            expected = "an img2dataset webdataset shard"
            raise InputFileError(source, f"unreadable tar ({exc})", expected) from None
        if partition.params.get("parquet"):
            yield from _failed_downloads(partition.params["parquet"])

    # --- one record ----------------------------------------------------------------------------------

    def _convert(
        self,
        record: Any,
        source: str,
        position: str,
        downloaded: bool,
        image_file: str | None = None,
        tar: str | None = None,
    ) -> Iterator[ReadItem]:
        try:
            sample, dropped, clipped = self._sample(record, downloaded, image_file, tar)
        except RecordError as exc:
            yield Reject(exc.reason, f"{source}: {position}: {exc.message}", source, position, _raw(record))
            return
        if dropped:
            yield Note("below-min-score", dropped, {"source": source})
        if sample is None:
            yield Filtered("no-regions", source, position)
            return
        yield sample
        if clipped:
            yield Note("clipped-box", clipped, {"sample_id": sample.id, "source": source})

    def _row_sample(self, arrays: ChunkArrays, field: str, ids: list, captions: list, widths: list,
                    heights: list, b32: list, l14: list, keys: list, urls: list, ow: list, oh: list,
                    i: int) -> Sample:  # fmt: skip
        """Row ``i`` of a parquet batch as the row path builds it (a block's sample leaving the columnar path)."""
        sample, _, _ = self._build(
            ids[i], captions[i], _READY, field, widths[i], heights[i], b32[i], l14[i], keys[i], urls[i], False,
            ow[i], oh[i], None, None, _row_regions(arrays, captions, i),
        )  # fmt: skip
        assert sample is not None  # a block's rows have regions
        return sample

    def _sample(
        self, record: Any, downloaded: bool, image_file: str | None, tar: str | None
    ) -> tuple[Sample | None, int, int]:
        if not isinstance(record, dict):
            raise RecordError("wrong-type", "record is not a JSON object")
        get = record.get
        field = SPAN_FIELDS[self.options.spans]
        return self._build(
            get("id"), get("caption"), get(field), field, get("width"), get("height"), get(META_KEYS[0]),
            get(META_KEYS[1]), get("key"), get("url"), downloaded, get("original_width"),
            get("original_height"), image_file, tar,
        )  # fmt: skip

    def _build(
        self,
        record_id: Any,
        caption: Any,
        chunk_list: Any,
        field: str,
        w: Any,
        h: Any,
        vitb32: Any,
        vitl14: Any,
        key: Any,
        url: Any,
        downloaded: bool,
        original_width: Any,
        original_height: Any,
        image_file: str | None,
        tar: str | None,
        prepared: tuple[list[Region], int, int] | None = None,
    ) -> tuple[Sample | None, int, int]:
        """One record's fields → (sample or None when every chunk scored too low, dropped, clipped).

        ``prepared``: the regions :func:`_prepared_regions` already made from the chunks (parquet rows).
        """
        if record_id is None:
            raise RecordError("missing-key", "record has no 'id'")
        if caption is None:
            raise RecordError("missing-key", "record has no 'caption'")
        if chunk_list is None:
            raise RecordError("missing-key", f"record has no {field!r}")
        if not isinstance(caption, str):
            raise RecordError("wrong-type", "caption is not a string")
        if not caption.strip():
            raise RecordError("bad-text", "caption is empty")
        if type(w) is int and type(h) is int and w > 0 and h > 0:  # the usual case, _size otherwise
            width, height = w, h
        else:
            width, height = _size(w, h)
        min_score = self.options.min_score
        found = prepared or _fast_regions(chunk_list, caption, min_score, width, height)
        if found is None:  # something unusual: the checks one by one, in order, with the reason
            found = _regions(chunk_list, caption, field, min_score, width, height)
        regions, dropped, clipped = found
        if not regions:
            return None, dropped, 0
        meta: dict[str, Any] = {}
        if vitb32 is not None:
            meta[META_KEYS[0]] = vitb32
        if vitl14 is not None:
            meta[META_KEYS[1]] = vitl14
        if key is not None:
            meta["key"] = str(key)
        if downloaded:
            meta["original_width"] = original_width
            meta["original_height"] = original_height
        else:
            meta["original_width"], meta["original_height"] = width, height
        if tar:
            meta["tar"] = tar
        sample = Sample(
            grit_id(record_id),
            "grit",
            SPLIT,
            ImageRef(
                image_file or f"{record_id}.jpg",
                str(record_id),
                width,
                height,
                str(url) if url is not None else None,
            ),
            caption,
            None,
            regions,
            meta,
        )
        return sample, dropped, clipped


# --- record helpers ----------------------------------------------------------------------------------


def _size(w: Any, h: Any) -> tuple[int, int]:
    if not all(_positive(v) for v in (w, h)):
        raise RecordError("bad-size", f"image size {w}x{h} is not usable")
    return int(w), int(h)


def _positive(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _bad_json(source: str, position: str, data: bytes, exc: Exception) -> Reject:
    raw = data[:300].decode("utf-8", "replace")
    return Reject("bad-record", f"{source}: {position}: invalid JSON ({exc})", source, position, raw)


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordError("wrong-type", f"{field} is not a list")
    return value


def _chunk(chunk: Any, caption: str, field: str, index: int) -> tuple[int, int, float, list[float]]:
    """One ``[start, end, x1, y1, x2, y2, confidence]`` → int offsets, score, normalized box."""
    where = f"{field}[{index}]"
    if not isinstance(chunk, list | tuple) or len(chunk) != 7:
        raise RecordError("wrong-type", f"{where} is not a 7-element list: {chunk!r}")
    start, end = _offset(chunk[0], where), _offset(chunk[1], where)
    if not 0 <= start < end <= len(caption):
        message = f"{where} span [{start}, {end}) does not fit the {len(caption)}-character caption"
        raise RecordError("bad-span", message)
    norm = list(chunk[2:6])
    if not boxes.is_finite(norm):
        raise RecordError("bad-box", f"{where} box {norm!r} is not four finite numbers")
    score = chunk[6]
    if not boxes.is_finite([score, 0, 0, 0]):
        raise RecordError("bad-box", f"{where} confidence {score!r} is not a finite number")
    return start, end, float(score), [float(v) for v in norm]


def _fast_chunk(chunk: Any, length: int, index: int) -> tuple[int, int, int, float, list[float]] | None:
    """The common case in one step: float or int offsets that fit, finite box and score.

    Returns None for anything unusual, and :func:`_chunk` then checks it field by field (and says why).
    """
    if type(chunk) is not list or len(chunk) != 7:
        return None
    s0, e0, x1, y1, x2, y2, score = chunk
    if type(s0) not in (int, float) or type(e0) not in (int, float) or type(score) is bool:
        return None
    if not (math.isfinite(s0) and math.isfinite(e0)):  # NaN/inf offsets: the checked path rejects them
        return None
    start, end = int(s0), int(e0)
    if start != s0 or end != e0 or not 0 <= start < end <= length:
        return None
    try:
        box = [float(x1), float(y1), float(x2), float(y2)]
        score = float(score)
    except (TypeError, ValueError):
        return None
    if not (boxes.is_finite(box) and math.isfinite(score)):
        return None
    return index, start, end, score, box


def _regions(
    chunk_list: Any, caption: str, field: str, min_score: float, width: int, height: int
) -> tuple[list[Region], int, int]:
    """Every chunk checked (first bad one raises), low scores dropped, then boxes → pixel regions."""
    length = len(caption)
    chunks = [
        _fast_chunk(c, length, i) or (i, *_chunk(c, caption, field, i)) for i, c in enumerate(_list(chunk_list, field))
    ]
    kept = [c for c in chunks if c[3] >= min_score]
    dropped = len(chunks) - len(kept)
    if not kept:
        return [], dropped, 0
    pixels = []
    clipped = 0
    for index, start, end, score, norm in kept:
        pixel, was_clipped = boxes.denormalize_clipped(norm, width, height)
        clipped += was_clipped
        if boxes.is_empty(pixel):
            raise RecordError("empty-box", f"{field}[{index}] box {norm!r} has no area inside the image")
        pixels.append((start, end, pixel, score))
    return _merge_spans(caption, pixels), dropped, clipped


def _merge_spans(caption: str, chunks: list[tuple[int, int, list[float], float]]) -> list[Region]:
    """Kept chunks (start, end, pixel box, score) → one region per span, in span order.

    A span's boxes stay in chunk order; its score is the best of its chunks (never -0.0).
    """
    regions: list[Region] = []
    last_start = last_end = -1
    for start, end, pixel, score in chunks:  # the usual case: spans in order, a span's chunks next to each other
        if start == last_start and end == last_end:  # another box of the same span
            region = regions[-1]
            region.boxes.append(pixel)
            region.score = max(region.score or 0.0, score)
            continue
        if start < last_end or end <= start:
            return _merge_shared_spans(caption, chunks)
        last_start, last_end = start, end
        regions.append(Region(caption[start:end], (start, end), [pixel], None, score or 0.0))
    return regions


def _merge_shared_spans(caption: str, chunks: list[tuple[int, int, list[float], float]]) -> list[Region]:
    """:func:`_merge_spans` when spans repeat or come out of order."""
    regions: dict[tuple[int, int], Region] = {}
    in_order = True  # spans first seen in increasing order (the usual case) need no sort
    last = (-1, -1)
    for start, end, pixel, score in chunks:
        span = (start, end)
        region = regions.get(span)
        if region is None:
            regions[span] = Region(caption[start:end], span, [pixel], score=max(score or 0.0, score))
            in_order = in_order and span > last
            last = span
        else:
            region.boxes.append(pixel)
            region.score = max(region.score or 0.0, score)
    return list(regions.values()) if in_order else [regions[k] for k in sorted(regions)]


def _fast_regions(
    chunk_list: Any, caption: str, min_score: float, width: int, height: int
) -> tuple[list[Region], int, int] | None:
    """:func:`_regions` in one pass for the common case, or None at the first thing it would have to explain.

    A chunk :func:`_fast_chunk` does not take, or a box left empty, hands the record to :func:`_regions`
    (which then finds the first problem and says why).
    """
    if type(chunk_list) is not list:
        return None
    length = len(caption)
    kept = []
    dropped = clipped = 0
    for index, chunk in enumerate(chunk_list):
        fast = _fast_chunk(chunk, length, index)
        if fast is None:
            return None
        _, start, end, score, norm = fast
        if not score >= min_score:
            dropped += 1
            continue
        pixel, was_clipped = boxes.denormalize_clipped(norm, width, height)
        if boxes.is_empty(pixel):
            return None
        clipped += was_clipped
        kept.append((start, end, pixel, score))
    return _merge_spans(caption, kept), dropped, clipped


class _LazyColumn:
    """A column's Python values, converted row by row when asked (rows the array pass could not vouch for)."""

    def __init__(self, array: pa.Array):
        self.array = array

    def __getitem__(self, index: int) -> Any:
        return self.array[index].as_py()


_READY = object()  # stands for a chunk list whose regions were prepared (never looked at)


@dataclass
class ChunkArrays:
    """A parquet batch's chunk lists checked and de-normalized as arrays (:func:`_chunk_arrays`)."""

    n: int  # rows
    owner: np.ndarray  # row of each chunk
    first: list[int]  # where each row's chunks begin (one more than rows)
    start: np.ndarray  # int64 span per chunk (0 where not good)
    end: np.ndarray
    score: np.ndarray
    keep: np.ndarray  # good and scored at least min_score
    pixels: np.ndarray  # (chunks, 4) clipped pixel boxes
    clipped: np.ndarray  # bool per chunk
    bad_rows: np.ndarray  # rows the array pass does not vouch for


def _chunk_arrays(
    column: pa.Array, captions: list[Any], widths: list[Any], heights: list[Any], min_score: float
) -> ChunkArrays | None:
    """The checks of :func:`_fast_regions` for a whole batch of parquet rows, done on arrays; None when the
    column is not the published spelling (plain ``list<list<double>>`` without nulls, 7 numbers a chunk)."""
    n = len(column)
    if not (pa.types.is_list(column.type) and pa.types.is_list(column.type.value_type)):
        return None
    if not pa.types.is_float64(column.type.value_type.value_type):
        return None
    chunks = pc.list_flatten(column)
    if column.null_count or chunks.null_count:
        return None
    if len(chunks) and pc.min_max(pc.list_value_length(chunks)).as_py() != {"min": 7, "max": 7}:
        return None
    values = pc.list_flatten(chunks)
    if values.null_count:
        return None
    table = values.to_numpy().reshape(-1, 7)
    owner = pc.list_parent_indices(column).to_numpy()
    counts = np.bincount(owner, minlength=n)
    sizes_ok = np.array(
        [type(w) is int and type(h) is int and w > 0 and h > 0 for w, h in zip(widths, heights, strict=True)],
        dtype=bool,
    )
    lengths = np.array([len(c) if type(c) is str else -1 for c in captions], dtype=np.float64)
    width = np.array([w if ok else 1 for w, ok in zip(widths, sizes_ok, strict=True)], dtype=np.int64)
    height = np.array([h if ok else 1 for h, ok in zip(heights, sizes_ok, strict=True)], dtype=np.int64)
    start, end, score = table[:, 0], table[:, 1], table[:, 6]
    norm = table[:, 2:6]
    with np.errstate(invalid="ignore"):
        good = np.isfinite(table).all(axis=1)
        good &= (np.trunc(start) == start) & (np.trunc(end) == end)
        good &= (start >= 0) & (start < end) & (end <= lengths[owner])
        keep = good & (score >= min_score)
        pixels, clipped = boxes.denormalize_clipped_many(
            np.where(good[:, None], norm, 0.0), width[owner], height[owner]
        )
        good &= ~keep | ((pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1]))
    bad_rows = np.bincount(owner[~good], minlength=n) > 0
    bad_rows |= ~sizes_ok
    return ChunkArrays(
        n,
        owner,
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64).tolist(),
        np.where(good, start, 0).astype(np.int64),  # only good chunks' offsets are read
        np.where(good, end, 0).astype(np.int64),
        score,
        keep,
        pixels,
        clipped,
        bad_rows,
    )


def _prepared_regions(
    arrays: ChunkArrays, captions: list[Any], skip: np.ndarray | None = None
) -> list[tuple[list[Region], int, int] | None]:
    """Per row: (regions, dropped, clipped) exactly as :func:`_fast_regions` makes them, or None where it
    would give up (an odd chunk, a span that does not fit, a box empty in pixels, a non-integer size...),
    so that row takes the Python path and, if it is bad, gets the same reject.  Rows in ``skip`` (those a
    block carries) are left None."""
    out: list[tuple[list[Region], int, int] | None] = [None] * arrays.n
    columns = _chunk_lists(arrays, 0, len(arrays.owner))
    first, skipped = arrays.first, skip.tolist() if skip is not None else None
    for row in np.flatnonzero(~arrays.bad_rows).tolist():
        if skipped is None or not skipped[row]:
            out[row] = _kept_regions(captions[row], columns, first[row], first[row + 1])
    return out


def _row_regions(arrays: ChunkArrays, captions: list[Any], row: int) -> tuple[list[Region], int, int]:
    """:func:`_prepared_regions` of one row (a block's row leaving the columnar path)."""
    lo, hi = arrays.first[row], arrays.first[row + 1]
    return _kept_regions(captions[row], _chunk_lists(arrays, lo, hi), 0, hi - lo)


def _chunk_lists(arrays: ChunkArrays, lo: int, hi: int) -> tuple[list, list, list, list, list, list]:
    """Chunks ``lo:hi`` as Python lists (start, end, pixel box, score, kept, clipped) for the row loop."""
    return (
        arrays.start[lo:hi].tolist(),
        arrays.end[lo:hi].tolist(),
        arrays.pixels[lo:hi].tolist(),
        arrays.score[lo:hi].tolist(),
        arrays.keep[lo:hi].tolist(),
        arrays.clipped[lo:hi].tolist(),
    )


def _kept_regions(caption: str, columns: tuple[list, ...], lo: int, hi: int) -> tuple[list[Region], int, int]:
    """(regions, dropped, clipped) of one row's chunks ``lo:hi`` in ``columns`` (:func:`_chunk_lists`)."""
    starts, ends, pixel_rows, scores, kept, flags = columns
    kept_chunks = []
    dropped = n_clipped = 0
    for c in range(lo, hi):
        if not kept[c]:
            dropped += 1
            continue
        n_clipped += flags[c]
        kept_chunks.append((starts[c], ends[c], pixel_rows[c], scores[c]))
    return _merge_spans(caption, kept_chunks), dropped, n_clipped


def _simple_rows(arrays: ChunkArrays, ids: list[Any], captions: list[Any]) -> np.ndarray:
    """Rows a :class:`SampleBlock` can carry: vouched for by the array pass, with an id and a non-blank
    caption, at least one chunk kept, and kept chunks whose spans come in text order without overlapping
    (a span's chunks next to each other): the rows :func:`_merge_spans` merges in one pass."""
    simple = ~arrays.bad_rows
    simple &= np.array([i is not None for i in ids], dtype=bool)
    simple &= np.array([type(c) is str and bool(c) and not c.isspace() for c in captions], dtype=bool)
    kept = np.flatnonzero(arrays.keep)
    simple &= np.bincount(arrays.owner[kept], minlength=arrays.n) > 0
    o, a, b = arrays.owner[kept], arrays.start[kept], arrays.end[kept]
    same_row = o[1:] == o[:-1]
    same_span = same_row & (a[1:] == a[:-1]) & (b[1:] == b[:-1])
    overlap = same_row & ~same_span & (a[1:] < b[:-1])
    simple[o[1:][overlap]] = False
    return simple


def _runs(simple: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], simple.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _block(
    arrays: ChunkArrays,
    start: int,
    stop: int,
    ids: list[Any],
    captions: list[Any],
    widths: list[Any],
    heights: list[Any],
    make: Any,
) -> SampleBlock:
    """Rows [start, stop) (all simple) as a block: one region per run of kept chunks sharing a span."""
    lo, hi = arrays.first[start], arrays.first[stop]
    kept = lo + np.flatnonzero(arrays.keep[lo:hi])
    o, a, b = arrays.owner[kept], arrays.start[kept], arrays.end[kept]
    new = np.ones(len(kept), dtype=bool)
    new[1:] = (o[1:] != o[:-1]) | (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    heads = np.flatnonzero(new)
    region_row, starts, ends = o[heads], a[heads], b[heads]
    texts = captions[start:stop]
    phrases = [captions[r][x:y] for r, x, y in zip(region_row.tolist(), starts.tolist(), ends.tolist(), strict=True)]
    row_ids = ids[start:stop]
    dropped = int(np.count_nonzero(~arrays.keep[lo:hi]))
    clipped = int(np.count_nonzero(arrays.clipped[kept]))
    notes = {name: count for name, count in (("below-min-score", dropped), ("clipped-box", clipped)) if count}
    return SampleBlock(
        split=SPLIT,
        ids=[grit_id(i) for i in row_ids],
        texts=texts,
        files=[f"{i}.jpg" for i in row_ids],
        image_ids=[str(i) for i in row_ids],
        widths=np.array(widths[start:stop], dtype=np.int64),
        heights=np.array(heights[start:stop], dtype=np.int64),
        region_sample=region_row - start,
        phrases=phrases,
        starts=starts,
        ends=ends,
        region_boxes=np.concatenate([heads, [len(kept)]]).astype(np.int32),
        boxes=arrays.pixels[kept],
        notes=notes,
        make=lambda j: make(start + j),
    )


def _offset(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("bad-span", f"{where} offset {value!r} is not a number")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise RecordError("bad-span", f"{where} offset {value!r} is not a whole number")
    return int(value)


def _raw(record: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(record, default=str))
    except (TypeError, orjson.JSONEncodeError):
        return repr(record)


# --- files -------------------------------------------------------------------------------------------


def _layout(path: Path) -> tuple[str, list[Path]]:
    """Which layout ``path`` is, and its data files in a stable order."""
    if path.is_file():
        kind = {".parquet": "parquet", ".jsonl": "jsonl", ".tar": "img2dataset"}.get(path.suffix)
        if kind is None:
            raise InputFileError(str(path), "not a GRIT file", ".parquet, .jsonl or an img2dataset .tar")
        return kind, [path]
    if not path.is_dir():
        expected = "GRIT parquet shards, grit_coyo.jsonl or img2dataset tars"
        raise InputFileError(str(path), "not found", expected)
    for pattern, kind in (("*.tar", "img2dataset"), ("*.parquet", "parquet"), ("*.jsonl", "jsonl")):
        files = sorted(p for p in path.glob(pattern) if p.is_file())
        if files:
            return kind, files
    raise InputFileError(str(path), "no GRIT files", "*.parquet, *.jsonl or img2dataset *.tar")


def _peek(layout: str, path: Path) -> bool:
    """Cheap look at the first record/schema for GRIT's caption + noun_chunks."""
    try:
        if layout == "parquet":
            names = set(pq.read_schema(path).names)
        elif layout == "jsonl":
            with open(path, "rb") as f:
                names = set(orjson.loads(f.readline() or b"{}"))
        else:
            names = set()
            with tarfile.open(path, "r:") as tar:
                for n, member in enumerate(tar):
                    if n > 16:
                        break
                    if member.isfile() and member.name.endswith(".json"):
                        handle = tar.extractfile(member)
                        names = set(orjson.loads(handle.read())) if handle is not None else set()
                        break
    except (OSError, ValueError, TypeError, tarfile.TarError, pa.ArrowException):
        return False
    return {"caption", "noun_chunks"} <= names


def _row_group_ranges(path: Path, rows: int, field: str) -> list[dict[str, Any]]:
    """Consecutive row groups bundled up to ``rows`` rows (a larger row group stays whole)."""
    try:
        meta = pq.ParquetFile(path).metadata
        names = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(str(path), f"unreadable parquet ({exc})", "a GRIT parquet shard") from None
    missing = {"id", "caption", field} - names
    if missing:
        problem = f"no column {', '.join(sorted(missing))}"
        raise InputFileError(str(path), problem, "GRIT columns (SOURCES §5.1)")
    ranges: list[dict[str, Any]] = []
    group: list[int] = []
    first = count = seen = 0
    for i in range(meta.num_row_groups):
        n = meta.row_group(i).num_rows
        if group and count + n > rows:
            ranges.append({"row_groups": group, "first_row": first})
            group, first, count = [], seen, 0
        group.append(i)
        count += n
        seen += n
    if group:
        ranges.append({"row_groups": group, "first_row": first})
    return ranges


def _byte_ranges(path: Path, rows: int) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges of about ``rows`` lines each, every start at a line start."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(1 << 20)
            lines = max(1, head.count(b"\n"))
            step = max(1, len(head) // lines * rows)
            starts = [0]
            for target in range(step, size, step):
                if target <= starts[-1]:
                    continue
                f.seek(target - 1)
                f.readline()  # finish the line that holds byte target-1
                pos = f.tell()
                if pos >= size:
                    break
                if pos > starts[-1]:
                    starts.append(pos)
    except OSError as exc:
        raise InputFileError(str(path), f"cannot read ({exc})") from None
    ends = starts[1:] + [size]
    return [(s, e) for s, e in zip(starts, ends, strict=True) if e > s]


def _failed_downloads(path: str) -> Iterator[Filtered]:
    """img2dataset rows that never reached the tar: counted, never silently lost."""
    try:
        pfile = pq.ParquetFile(path)
        if "status" not in pfile.schema_arrow.names:
            return
        columns = [c for c in ("key", "status") if c in pfile.schema_arrow.names]
        row = 0
        for batch in pfile.iter_batches(batch_size=8192, columns=columns):
            for record in batch.to_pylist():
                if record["status"] != "success":
                    yield Filtered("download-failed", path, record.get("key") or f"row {row}")
                row += 1
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(path, f"unreadable parquet ({exc})", "img2dataset shard metadata") from None
