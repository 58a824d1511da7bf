"""Join a COCO-layout JSON's annotations to its images without holding the file in memory.

COCO-style files (COCO, Objects365, LVIS, V3Det, MDETR/GoldG) are one JSON object with an ``images``
list and an ``annotations`` list that points at images by ``image_id``.  Objects365's is several GB and
its annotations are not grouped by image, so a reader cannot stream one image's boxes at a time.

:func:`build` makes one streaming pass per list (ijson, constant memory apart from an ``image id →
partition`` map) and buckets both into per-partition *spill* files: ``images-NNNNN.jsonl`` (the images of
that partition, in file order) and ``annotations-NNNNN.jsonl`` (their annotations, in file order, without
``segmentation``, which can be most of the bytes).  A partition's ``read`` then joins a few thousand images
in memory.  Annotations whose ``image_id`` names no image go to ``orphans.jsonl``.

Where the spill lives: a cache folder derived from the input alone (real path, size, mtime, partition
size), ``$GROUNDING_CONVERT_CACHE/coco-index/<hash>`` (default ``~/.cache/grounding_convert``, the same
root remote inputs are fetched into) or ``-O cache_dir=DIR``.  Because the name depends only on the input,
``--resume``, a SLURM array's workers on a shared file system and later runs reuse it, and partitions
(whose params name these files) are identical from run to run, which ``--resume`` checks.  It is built
under a temporary name and renamed when complete, so a killed plan never leaves a half index that looks
finished.  It stays after the run, like the remote-input cache (the tool never knows which run is the
last user of it), and can be deleted at any time; :func:`remove` deletes one (only a folder holding this
module's ``index.json``).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson
import orjson

from ..errors import InputFileError

VERSION = 1  # bump when the spill layout changes: old caches are then ignored
FLUSH_BYTES = 32 * 1024 * 1024  # buffered annotation lines before they are appended to their files
INDEX = "index.json"
ORPHANS = "orphans.jsonl"
DROPPED_KEYS = ("segmentation",)


@dataclass(frozen=True)
class SpillIndex:
    """A finished spill: its folder, images/annotations per partition, and the categories list."""

    folder: Path
    images: list[int]
    annotations: list[int]
    orphans: int
    categories: list[Any]

    def images_file(self, index: int) -> Path:
        return self.folder / f"images-{index:05d}.jsonl"

    def annotations_file(self, index: int) -> Path:
        return self.folder / f"annotations-{index:05d}.jsonl"

    @property
    def orphans_file(self) -> Path:
        return self.folder / ORPHANS


def cache_root(cache_dir: str | None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    default = Path.home() / ".cache" / "grounding_convert"
    return Path(os.environ.get("GROUNDING_CONVERT_CACHE", default)) / "coco-index"


def spill_folder(path: Path, images_per_partition: int, cache_dir: str | None) -> Path:
    """The cache folder of this input: named by what determines its content, nothing else."""
    st = path.stat()
    key = f"{VERSION}\0{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{images_per_partition}"
    return cache_root(cache_dir) / f"{path.stem[:40]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def load(folder: Path) -> SpillIndex | None:
    """The finished spill in ``folder`` (None when absent or unfinished)."""
    try:
        data = orjson.loads((folder / INDEX).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if data.get("version") != VERSION:
        return None
    return SpillIndex(folder, data["images"], data["annotations"], data["orphans"], data["categories"])


def ensure(path: Path, images_per_partition: int, cache_dir: str | None, expected: str) -> SpillIndex:
    """The spill of ``path``: reused when finished, else built (whole-file problems raise InputFileError)."""
    folder = spill_folder(path, images_per_partition, cache_dir)
    found = load(folder)
    if found is not None:
        return found
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        build(path, partial, images_per_partition, expected)
        try:
            partial.rename(folder)
        except OSError:  # another process finished the same index first: use theirs
            if load(folder) is None:
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    index = load(folder)
    assert index is not None
    return index


def remove(folder: Path) -> None:
    """Delete a spill folder this module built (only names it would have made are accepted)."""
    if (folder / INDEX).is_file():
        shutil.rmtree(folder, ignore_errors=True)


def build(path: Path, folder: Path, images_per_partition: int, expected: str) -> None:
    """Two streaming passes (images, then annotations) and a small one for categories; index.json last."""
    require_keys(path, expected)
    partition_of: dict[Any, int] = {}
    image_counts: list[int] = []
    handle = None
    for position, image in enumerate(stream(path, "images.item", expected)):
        part = position // images_per_partition
        if part == len(image_counts):
            if handle is not None:
                handle.close()
            handle = open(folder / f"images-{part:05d}.jsonl", "wb")  # noqa: SIM115 - one per partition, closed above
            image_counts.append(0)
        image_id = image.get("id") if isinstance(image, dict) else None
        hashable = isinstance(image_id, int | str) and not isinstance(image_id, bool)
        duplicate = hashable and image_id in partition_of
        if hashable and not duplicate:
            partition_of[image_id] = part
        assert handle is not None
        handle.write(_line({"n": position, "dup": duplicate, "image": image}))
        image_counts[part] += 1
    if handle is not None:
        handle.close()

    annotation_counts = [0] * len(image_counts)
    orphans = 0
    buffers: dict[int, list[bytes]] = {}
    buffered = 0

    def flush() -> None:
        for part, lines in buffers.items():
            name = ORPHANS if part < 0 else f"annotations-{part:05d}.jsonl"
            with open(folder / name, "ab") as out:
                out.writelines(lines)
        buffers.clear()

    for position, annotation in enumerate(stream(path, "annotations.item", expected)):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        hashable = isinstance(image_id, int | str) and not isinstance(image_id, bool)
        part = partition_of.get(image_id, -1) if hashable else -1
        if isinstance(annotation, dict):
            for key in DROPPED_KEYS:
                annotation.pop(key, None)
        line = _line({"n": position, "ann": annotation})
        buffers.setdefault(part, []).append(line)
        buffered += len(line)
        if part < 0:
            orphans += 1
        else:
            annotation_counts[part] += 1
        if buffered >= FLUSH_BYTES:
            flush()
            buffered = 0
    flush()
    categories = [c if _encodable(c) else None for c in stream(path, "categories.item", expected)]
    index = {
        "version": VERSION,
        "source": str(path),
        "images": image_counts,
        "annotations": annotation_counts,
        "orphans": orphans,
        "categories": categories,
    }
    (folder / INDEX).write_bytes(orjson.dumps(index, default=_jsonable))


def stream(path: Path, prefix: str, expected: str) -> Iterator[Any]:
    """ijson items under ``prefix``; malformed JSON (truncated, bad UTF-8, NaN) is a whole-file problem."""
    try:
        with open(path, "rb") as handle:
            yield from ijson.items(handle, prefix, use_float=True)
    except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(str(path), f"is not valid JSON ({str(exc).splitlines()[0]})", expected) from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc})", expected) from None


_TOP_KEY = {key: re.compile(rb'"' + key.encode() + rb'"\s*:\s*\[') for key in ("images", "annotations")}


def require_keys(path: Path, expected: str) -> None:
    """An object with ``images`` and ``annotations`` lists (a fast byte search; ijson then checks the rest)."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise InputFileError(str(path), "is empty", expected)
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            start = mm[:4096].lstrip()
            if not start.startswith(b"{"):
                raise InputFileError(str(path), "is not a JSON object", expected)
            for key, pattern in _TOP_KEY.items():
                if pattern.search(mm) is None:
                    raise InputFileError(str(path), f"has no {key!r} list", expected)
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc})", expected) from None


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The spilled records of one file (absent file: none)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            yield orjson.loads(line)


def json_object_head(path: str | Path) -> bytes:
    """The first 64 KB of ``path`` when it is a ``.json`` file opening a JSON object, else b"" (for detect)."""
    p = Path(path)
    if not p.is_file() or p.suffix != ".json":
        return b""
    first = head(p)
    return first if first.lstrip().startswith(b"{") else b""


def head(path: Path, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _line(record: dict[str, Any]) -> bytes:
    """One spill line; a record holding text that is not valid Unicode (a lone surrogate escape) is marked."""
    try:
        return orjson.dumps(record, default=_jsonable) + b"\n"
    except orjson.JSONEncodeError:
        return (
            orjson.dumps({"n": record["n"], "bad": "holds text that is not valid Unicode (a lone surrogate)"}) + b"\n"
        )


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value, default=_jsonable)
    except orjson.JSONEncodeError:
        return False
    return True


def _jsonable(value: Any) -> Any:
    """ijson's Decimal never appears with use_float=True; anything else odd is kept as its repr."""
    return repr(value)
