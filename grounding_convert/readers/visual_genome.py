"""Visual Genome region descriptions and objects (SOURCES §1) → one canonical sample per region/object.

The real ``region_descriptions.json`` is a single ~700 MB JSON array (one element per image, 5.4 M
regions), so the reader never loads it whole.  ``plan`` cuts the array at element boundaries found by
*seeking*: every ~N bytes it looks for the next ``"regions":`` key (which, in valid JSON, can only be a
real key of a top-level element) and walks back to that element's ``{``.  That costs a few small reads
per partition, not a pass over the file.  ``read`` streams its byte range through ijson, wrapped in
``[`` … ``]``.  Partitions depend only on the file and ``regions_per_partition``, never on the number of
workers, so the output is the same however it is run.
"""

from __future__ import annotations

import functools
import math
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import ijson
import numpy as np
import orjson

from .. import boxes
from ..errors import InputFileError, Note, RecordError, Reject, UsageError
from ..option_types import PER_PARTITION, bounded
from ..schema import ImageRef, Region, Sample, image_keys, visual_genome_id
from .base import Partition, Reader, ReaderOptions, ReadItem, SampleBlock

FILE_NAMES = {"regions": "region_descriptions.json", "objects": "objects.json"}
IMAGE_DATA = "image_data.json"
BYTES_PER_REGION = 125  # measured on the v1.2 excerpt (159,031 B / 1,278 regions); objects are ~112
BLOCK_SAMPLES = 4096  # regions per SampleBlock (read_blocks)
EXPECTED = "a JSON array with one object per image holding a 'regions' or 'objects' list"

_WS = b" \t\r\n"
_STRING = rb'"(?:[^"\\]|\\.)*"'
_SCALAR = rb"(?:" + _STRING + rb"|[-+0-9.eE]+|true|false|null)"
# From an element's "{" up to (not including) its list key: only "key": scalar pairs may come first.
_LEADING_PAIRS = re.compile(rb"\{\s*(?:" + _STRING + rb"\s*:\s*" + _SCALAR + rb"\s*,\s*)*", re.S)
_KEY = {kind: re.compile(rb'"' + kind.encode() + rb'"\s*:') for kind in FILE_NAMES}
_SNIFF = re.compile(rb'"(regions|objects)"\s*:')


@dataclass
class VisualGenomeOptions(ReaderOptions):
    annotations: Literal["regions", "objects"] = "regions"  # which file a folder input is read from
    vg_image_data: str | None = None  # image_data.json; default: beside the input, or in its parent
    regions_per_partition: int = bounded(75_000, PER_PARTITION)  # approximate; turned into a byte size at plan time


class VisualGenomeReader(Reader):
    """Visual Genome v1.0/v1.2/v1.4 region descriptions (default) or objects, with sizes from image_data."""

    name = "visual-genome"
    dataset = "visual_genome"
    description = "Visual Genome region_descriptions.json (or objects.json) + image_data.json"
    Options = VisualGenomeOptions
    options: VisualGenomeOptions

    # --- planning ------------------------------------------------------------------------------------

    def plan(self, input_path: str) -> list[Partition]:
        if self.options.split:
            raise UsageError("Visual Genome has no splits; leave out --split for the visual-genome reader")
        if self.options.regions_per_partition < 1:
            raise UsageError("option 'regions-per-partition' must be at least 1")
        path, kind = self._locate(input_path)
        image_data = self._image_data_path(path)
        target = self.options.regions_per_partition * BYTES_PER_REGION
        ranges = element_ranges(path, kind, target)
        return [
            Partition(
                index=i,
                key=f"{kind}-{i:05d}",
                source=str(path),
                params={"file": str(path), "kind": kind, "start": s, "end": e, "image_data": str(image_data)},
            )
            for i, (s, e) in enumerate(ranges)
        ]

    def input_files(self, input_path: str) -> list[Path]:
        path, _ = self._locate(input_path)
        return [path, self._image_data_path(path)]

    def _locate(self, input_path: str) -> tuple[Path, str]:
        p = Path(input_path)
        if p.is_file():
            return p, sniff(p) or self.options.annotations
        if not p.is_dir():
            raise InputFileError(str(p), "does not exist", "a folder holding region_descriptions.json")
        kind = self.options.annotations
        path = p / FILE_NAMES[kind]
        if not path.is_file():
            raise InputFileError(str(path), "not found", f"Visual Genome {FILE_NAMES[kind]} in {p}")
        return path, kind

    def _image_data_path(self, annotation_file: Path) -> Path:
        if self.options.vg_image_data:
            given = Path(self.options.vg_image_data)
            if not given.is_file():
                raise InputFileError(str(given), "not found", "Visual Genome image_data.json")
            return given
        folder = annotation_file.resolve().parent
        for candidate in (folder / IMAGE_DATA, folder.parent / IMAGE_DATA):
            if candidate.is_file():
                return candidate
        raise InputFileError(
            str(folder / IMAGE_DATA),
            "not found (nor in the parent folder); image sizes are needed to clip boxes",
            "image_data.json beside the annotations, in their parent, or given with --vg-image-data",
        )

    @classmethod
    def detect(cls, path: str) -> bool:
        p = Path(path)
        candidates = [p] if p.is_file() else [p / name for name in FILE_NAMES.values()]
        return any(c.is_file() and sniff(c) is not None for c in candidates)

    # --- reading -------------------------------------------------------------------------------------

    def read(self, partition: Partition) -> Iterator[ReadItem]:
        params = partition.params
        images = load_image_data(params["image_data"])
        convert = _region if params["kind"] == "regions" else _object
        for element, where in _elements(params):
            yield from _element(element, params["kind"], convert, images, params["file"], where)

    def read_blocks(self, partition: Partition) -> Iterator[ReadItem | SampleBlock]:
        """Region descriptions as :class:`SampleBlock` runs of plain regions (no object per region); objects,
        and anything a region's row path would have a word to say about, as :meth:`read` gives them."""
        params = partition.params
        if params["kind"] != "regions":
            yield from self.read(partition)
            return
        images = load_image_data(params["image_data"])
        source = params["file"]
        gathered = _RegionBlock(images)
        for element, where in _elements(params):
            head = _element_head(element, "regions", source, where)
            if isinstance(head, Reject):  # a reject (not a sample) need not end the block: rejects keep
                yield head  # their order among rejects, samples theirs among samples
                continue
            image_id, label, items = head
            for number, item in enumerate(items):
                if gathered.add(item, image_id):
                    if len(gathered) >= BLOCK_SAMPLES:
                        yield gathered.block()
                        gathered = _RegionBlock(images)
                    continue
                produced = list(_item(item, number, image_id, label, "regions", _region, images, source))
                if gathered and any(isinstance(p, Sample) for p in produced):
                    yield gathered.block()  # a sample made the slow way keeps its place among samples
                    gathered = _RegionBlock(images)
                yield from produced
        if gathered:
            yield gathered.block()


def _elements(params: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    """Each top-level element of a partition's byte range, and where it is (for messages); invalid JSON is
    an error naming the range."""
    path, start, end = params["file"], params["start"], params["end"]
    with open(path, "rb") as handle:
        stream = _ArraySlice(handle, start, end)
        try:
            for ordinal, element in enumerate(ijson.items(stream, "item", use_float=True)):
                yield element, f"element {ordinal} of bytes {start}-{end}"
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise InputFileError(str(path), f"invalid JSON in bytes {start}-{end}: {exc}", EXPECTED) from exc


# --- plan-time boundary search -------------------------------------------------------------------------


def sniff(path: Path) -> str | None:
    """'regions' / 'objects' when the first few KB look like a VG annotation array, else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    body = head.lstrip(_WS)
    if not body.startswith(b"[") or not body[1:].lstrip(_WS).startswith(b"{"):
        return None
    match = _SNIFF.search(body)
    return match.group(1).decode() if match else None


def element_ranges(path: Path, kind: str, target_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` of runs of whole top-level elements, each about ``target_bytes`` long.

    A range starts at an element's ``{`` and ends just after the last ``}`` it holds, so the bytes of
    a range wrapped in ``[`` ``]`` are a JSON array.  Raises InputFileError when the file is empty, not
    an array, or does not end with ``]`` (truncated).
    """
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(str(path), "is empty", EXPECTED)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        first = _skip_ws(mm, 0)
        if first >= size or mm[first : first + 1] != b"[":
            raise InputFileError(str(path), "does not start with '['", EXPECTED)
        last = _skip_ws_back(mm, size)
        if last <= first or mm[last - 1 : last] != b"]":
            raise InputFileError(str(path), "is truncated: it does not end with ']'", EXPECTED)
        body_start = _skip_ws(mm, first + 1)
        body_end = _skip_ws_back(mm, last - 1)
        if body_start >= body_end:
            return []
        starts = [body_start]
        ends: list[int] = []
        probe = body_start + target_bytes
        while probe < body_end:
            found = _next_element_start(mm, kind, probe, starts[-1], body_end)
            if found is None:
                break
            start, previous_end = found
            starts.append(start)
            ends.append(previous_end)
            probe = start + target_bytes
        ends.append(body_end)
    return list(zip(starts, ends, strict=True))


def _next_element_start(mm: mmap.mmap, kind: str, probe: int, floor: int, limit: int) -> tuple[int, int] | None:
    """The first top-level element starting after ``floor`` whose list key lies at or after ``probe``.

    Returns (its ``{``, end of the element before it).  In valid JSON ``"regions":`` with an unescaped
    opening quote is always a key, and only top-level elements have that key.
    """
    pattern = _KEY[kind]
    position = probe
    while True:
        match = pattern.search(mm, position, limit)
        if match is None:
            return None
        position = match.end()
        key = match.start()
        if _escaped(mm, key):
            continue
        start = _object_start(mm, key, floor)
        if start is None:
            continue
        before = _skip_ws_back(mm, start)
        if mm[before - 1 : before] != b",":
            continue
        return start, _skip_ws_back(mm, before - 1)


def _object_start(mm: mmap.mmap, key: int, floor: int, window: int = 65536, tries: int = 64) -> int | None:
    """The ``{`` that opens the object whose key starts at ``key`` (only scalar pairs may precede it)."""
    low = max(floor + 1, key - window)
    chunk = mm[low:key]
    end = len(chunk)
    for _ in range(tries):
        brace = chunk.rfind(b"{", 0, end)
        if brace < 0:
            return None
        match = _LEADING_PAIRS.match(mm, low + brace, key)
        if match is not None and match.end() == key:
            return low + brace
        end = brace
    return None


def _escaped(mm: mmap.mmap, quote: int) -> bool:
    count = 0
    while quote - count - 1 >= 0 and mm[quote - count - 1] == 0x5C:  # backslash
        count += 1
    return count % 2 == 1


def _skip_ws(mm: mmap.mmap, position: int) -> int:
    while position < len(mm) and mm[position] in _WS:
        position += 1
    return position


def _skip_ws_back(mm: mmap.mmap, end: int) -> int:
    """The smallest ``e <= end`` such that ``mm[e:end]`` is all whitespace."""
    while end > 0 and mm[end - 1] in _WS:
        end -= 1
    return end


class _ArraySlice:
    """A read-only stream of ``[`` + file bytes ``[start, end)`` + ``]`` for ijson, read lazily."""

    def __init__(self, handle: BinaryIO, start: int, end: int):
        self._handle = handle
        self._left = end - start
        self._state = 0  # 0: "[" not sent yet, 1: streaming body, 2: "]" sent
        handle.seek(start)

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes read(0) to learn bytes vs str: must not consume anything
            return b""
        if self._state == 0:
            self._state = 1
            return b"["
        if self._state == 1:
            if self._left > 0:
                data = self._handle.read(self._left if size is None or size < 0 else min(size, self._left))
                if data:
                    self._left -= len(data)
                    return data
            self._state = 2
            return b"]"
        return b""


# --- image_data.json -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int | None
    height: int | None
    file: str
    url: str | None
    keys: dict[str, int]  # image.keys (vg, coco_id, flickr_id); shared by the image's samples, read-only


def load_image_data(path: str) -> dict[int, ImageInfo]:
    """``{image id: ImageInfo}`` for every entry; cached per process (108k entries, a few tens of MB)."""
    p = Path(path)
    stat = p.stat()
    return _load_image_data(str(p), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_image_data(path: str, size: int, mtime_ns: int) -> dict[int, ImageInfo]:
    try:
        entries = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputFileError(path, f"cannot be read as JSON: {exc}", "a JSON array of image entries") from exc
    if not isinstance(entries, list):
        raise InputFileError(path, "is not a JSON array", "a JSON array of image entries")
    table: dict[int, ImageInfo] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        image_id = _first(entry, "image_id", "id")
        if not _is_int(image_id):
            continue
        url = entry.get("url") if isinstance(entry.get("url"), str) else None
        width, height = entry.get("width"), entry.get("height")
        table[image_id] = ImageInfo(
            width=width if _is_int(width) and width > 0 else None,
            height=height if _is_int(height) and height > 0 else None,
            file=_image_file(image_id, url),
            url=url,
            keys=image_keys(vg=image_id, coco=entry.get("coco_id"), flickr=entry.get("flickr_id")),
        )
    return table


def _image_file(image_id: int, url: str | None) -> str:
    """``VG_100K[_2]/<id>.jpg``: the folder comes from the url, as the two image archives unpack."""
    if url:
        parts = url.rstrip("/").rsplit("/", 2)
        if len(parts) == 3 and parts[1].startswith("VG_100K") and parts[2]:
            return f"{parts[1]}/{parts[2]}"
    return f"VG_100K/{image_id}.jpg"


# --- per-record conversion -------------------------------------------------------------------------


def _element(
    element: Any, kind: str, convert: Any, images: dict[int, ImageInfo], source: str, where: str
) -> Iterator[ReadItem]:
    """All samples of one image's element (a bad element is one reject)."""
    head = _element_head(element, kind, source, where)
    if isinstance(head, Reject):
        yield head
        return
    image_id, label, items = head
    for ordinal, item in enumerate(items):
        yield from _item(item, ordinal, image_id, label, kind, convert, images, source)


def _element_head(element: Any, kind: str, source: str, where: str) -> Reject | tuple[Any, str, list[Any]]:
    """(image id, label, items) of one image's element, or the reject of a bad element."""
    name = Path(source).name
    if not isinstance(element, dict):
        return Reject("wrong-type", f"{name}: {where} is not an object", source, where, element)
    image_id = _first(element, "image_id", "id")
    label = f"image {image_id}" if image_id is not None else where
    items = element.get(kind)
    if items is None:
        return Reject("missing-key", f"{name}: {label} has no '{kind}' list", source, label, element)
    if not isinstance(items, list):
        return Reject("wrong-type", f"{name}: {label} '{kind}' is not a list", source, label, element)
    if image_id is not None and not _is_int(image_id):
        return Reject("wrong-type", f"{name}: {label} id is not an integer", source, label, element)
    return image_id, label, items


def _item(
    item: Any, ordinal: int, image_id: Any, label: str, kind: str, convert: Any, images: dict[int, ImageInfo],
    source: str,
) -> Iterator[ReadItem]:  # fmt: skip
    """One region's or object's sample (with its clipped-box note), or its reject."""
    try:
        if not isinstance(item, dict):
            raise RecordError("wrong-type", "is not an object")
        sample, clipped = convert(item, image_id, images)
    except RecordError as bad:
        item_id = _first(item, "region_id", "object_id", "id") if isinstance(item, dict) else None
        item_label = f"{label} {kind[:-1]} " + (f"#{ordinal}" if item_id is None else f"{item_id}")
        yield Reject(bad.reason, f"{Path(source).name}: {item_label}: {bad.message}", source, item_label, item)
        return
    if clipped:
        yield Note("clipped-box", 1, {"sample_id": sample.id, "source": source})
    yield sample


class _RegionBlock:
    """Plain regions gathered as a :class:`SampleBlock`'s columns (``read_blocks``)."""

    def __init__(self, images: dict[int, ImageInfo]):
        self.images = images
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.files: list[str] = []
        self.image_ids: list[str] = []
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.boxes: list[list[float]] = []
        self.strings: list[str] = []
        self.made: list[tuple[int, int, str, list[float]]] = []  # what _sample needs to build the sample
        self.clipped = 0

    def add(self, item: Any, image_id: Any) -> bool:
        """Take a region whose sample the row path makes without a word to say; False for anything else."""
        if type(item) is not dict:
            return False
        try:  # the same helpers as _region: what they refuse, the row path rejects with the reason
            region_id = _int(item, "region_id", "id")
            image_id = _image_id(item, image_id, "image_id", "image")
            text = _text(item.get("phrase"), "phrase")
            box = _xywh(item, ("width", "w"), ("height", "h"))
        except RecordError:
            return False
        info = self.images.get(image_id)
        if info is None or info.width is None or info.height is None or boxes.is_empty(box):
            return False
        shown = box
        if not boxes.is_inside(box, info.width, info.height):
            shown = boxes.clip(box, info.width, info.height)
            if boxes.is_empty(shown):
                return False
            self.clipped += 1
        self.ids.append(visual_genome_id(image_id, region_id))
        self.texts.append(text)
        self.files.append(info.file)
        self.image_ids.append(str(image_id))
        self.widths.append(info.width)
        self.heights.append(info.height)
        self.boxes.append(shown)
        if info.url is not None:
            self.strings.append(info.url)
        self.made.append((image_id, region_id, text, box))
        return True

    def __len__(self) -> int:
        return len(self.ids)

    def block(self) -> SampleBlock:
        n = len(self.ids)
        made, images = self.made, self.images

        def make(i: int) -> Sample:
            image_id, region_id, text, box = made[i]
            meta = {"image_id": image_id, "region_id": region_id}
            return _sample(image_id, region_id, text, None, box, images, meta)[0]

        return SampleBlock(
            split=None,
            ids=self.ids,
            texts=self.texts,
            files=self.files,
            image_ids=self.image_ids,
            widths=np.array(self.widths, dtype=np.int64),
            heights=np.array(self.heights, dtype=np.int64),
            region_sample=np.arange(n, dtype=np.int64),
            phrases=self.texts,
            starts=np.zeros(n, dtype=np.int64),
            ends=np.array([len(t) for t in self.texts], dtype=np.int64),
            region_boxes=np.arange(n + 1, dtype=np.int32),
            boxes=np.array(self.boxes, dtype=np.float64).reshape(-1, 4),
            notes={"clipped-box": self.clipped} if self.clipped else {},
            make=make,
            strings=self.strings,
        )


def _region(item: dict[str, Any], image_id: Any, images: dict[int, ImageInfo]) -> tuple[Sample, bool]:
    region_id = _int(item, "region_id", "id")
    image_id = _image_id(item, image_id, "image_id", "image")
    text = _text(item.get("phrase"), "phrase")
    box = _xywh(item, ("width", "w"), ("height", "h"))
    return _sample(image_id, region_id, text, None, box, images, {"image_id": image_id, "region_id": region_id})


def _object(item: dict[str, Any], image_id: Any, images: dict[int, ImageInfo]) -> tuple[Sample, bool]:
    object_id = _int(item, "object_id", "id")
    image_id = _image_id(item, image_id, "image_id")
    names = item.get("names")
    if names is None and "name" in item:
        names = [item["name"]]
    if names is None:
        raise RecordError("missing-key", "no 'names' (or 'name')")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RecordError("wrong-type", "'names' is not a non-empty list of strings")
    text = _text(names[0], "names[0]")
    synsets = item.get("synsets")
    synsets = [s for s in synsets if isinstance(s, str)] if isinstance(synsets, list) else []
    meta: dict[str, Any] = {"image_id": image_id, "object_id": object_id}
    if len(names) > 1:
        meta["names"] = "|".join(n.strip() for n in names)
    if synsets:
        meta["synsets"] = "|".join(synsets)
    category = synsets[0] if synsets else None
    box = _xywh(item, ("w", "width"), ("h", "height"))
    return _sample(image_id, object_id, text, category, box, images, meta)


def _sample(
    image_id: int,
    record_id: int,
    text: str,
    category: str | None,
    box: list[float],
    images: dict[int, ImageInfo],
    meta: dict[str, Any],
) -> tuple[Sample, bool]:
    """The item's sample, and whether its box was clipped to the image (one clipped-box note)."""
    info = images.get(image_id)
    if info is None:
        raise RecordError("bad-size", f"image {image_id} is not in image_data.json, so its size is unknown")
    if info.width is None or info.height is None:
        raise RecordError("bad-size", f"image {image_id} has no valid width/height in image_data.json")
    if boxes.is_empty(box):
        raise RecordError("empty-box", f"box {box} has no area")
    clipped = not boxes.is_inside(box, info.width, info.height)
    if clipped:
        inside = boxes.clip(box, info.width, info.height)
        if boxes.is_empty(inside):
            raise RecordError("empty-box", f"box {box} lies outside the {info.width}x{info.height} image")
        box = inside
    sample = Sample(
        id=visual_genome_id(image_id, record_id),
        dataset="visual_genome",
        split=None,
        image=ImageRef(info.file, str(image_id), info.width, info.height, info.url, info.keys),
        text=text,
        regions=[Region(phrase=text, span=(0, len(text)), boxes=[box], category=category)],
        meta=meta,
    )
    return sample, clipped


def _first(record: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in record:
            return record[key]
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(record: dict[str, Any], *keys: str) -> int:
    value = _first(record, *keys)
    if value is None:
        raise RecordError("missing-key", f"no {' or '.join(repr(k) for k in keys)}")
    if not _is_int(value):
        raise RecordError("wrong-type", f"{keys[0]!r} is not an integer: {value!r}")
    return value


def _image_id(item: dict[str, Any], element_id: Any, *keys: str) -> int:
    """The element's image id, else the record's own (v1.0 regions repeat it as ``image``)."""
    if element_id is not None:
        return element_id
    return _int(item, *keys)


def _text(value: Any, key: str) -> str:
    if value is None:
        raise RecordError("missing-key", f"no {key!r}")
    if not isinstance(value, str):
        raise RecordError("wrong-type", f"{key!r} is not a string: {value!r}")
    text = " ".join(value.split())
    if not text:
        raise RecordError("bad-text", f"{key!r} is empty")
    return text


def _xywh(item: dict[str, Any], width_keys: tuple[str, str], height_keys: tuple[str, str]) -> list[float]:
    x, y = item.get("x"), item.get("y")
    w = item.get(width_keys[0], item.get(width_keys[1]))
    h = item.get(height_keys[0], item.get(height_keys[1]))
    if type(x) is int and type(y) is int and type(w) is int and type(h) is int:  # the common case
        return boxes.xywh_to_xyxy(x, y, w, h)
    for key, value in (("x", x), ("y", y), (width_keys[0], w), (height_keys[0], h)):
        if value is None:
            raise RecordError("missing-key", f"no {key!r}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RecordError("wrong-type", f"{key!r} is not a number: {value!r}")
        if not math.isfinite(value):
            raise RecordError("bad-box", f"{key!r} is not finite: {value!r}")
    return boxes.xywh_to_xyxy(x, y, w, h)
