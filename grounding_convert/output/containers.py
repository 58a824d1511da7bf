"""Containers: how a writer's records are packaged into shard files for a trainer (DESIGN §7).

A writer decides what a record says; a container decides the bytes of the file that holds it.  The
shard sink (``shards.py``) owns naming, rotation and atomic renames and asks the container for:

* ``start`` / ``between`` / ``end``: bytes at the start of a shard, between two records, at its end;
* ``encode(record)``: one record's bytes (Parquet is ``columnar`` instead: the sink writes Arrow row groups);
* ``group(record)``: which file set a record belongs to within its split (OFA: one TSV per task);
* ``check(sample)``: a per-sample precondition (OFA TSV: the image can be read), raising ``RecordError``.

Formats here:

* ``parquet`` and ``jsonl``: the Hugging Face ``datasets`` layouts (``load_dataset`` reads the folder);
* ``json``: each shard one JSON array, one record per line.  QwenLM/Qwen-VL ``finetune.py`` L243 reads
  its data with ``train_json = json.load(open(data_args.data_path, "r"))``, so JSONL and Parquet fail there;
* ``tsv``: OFA's own files, one per task, in the column layout of OFA's dataset class for that task.
"""

from __future__ import annotations

import base64
import re
from collections import OrderedDict
from typing import Any, ClassVar

import orjson
import pyarrow as pa

from ..errors import RecordError, UsageError
from ..images import read_image
from ..schema import Sample
from .arrow_json import json_records

#: containers every writer can fill; others (``tsv``) only the writers that list them in ``Writer.formats``
UNIVERSAL = ("parquet", "jsonl", "json")


class Container:
    """Plain-text shards, one encoded record after another (see the module docstring)."""

    name: ClassVar[str]
    extension: ClassVar[str]
    columnar: ClassVar[bool] = False
    grouped: ClassVar[bool] = False  # records go to several file sets per split (see group)
    start: ClassVar[bytes] = b""
    between: ClassVar[bytes] = b""
    end: ClassVar[bytes] = b""
    #: takes a writer's columnar batches (writers/batch.py) without a dict per record
    batched: ClassVar[bool] = False

    def encode(self, record: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def encode_batch(self, batch: pa.RecordBatch) -> pa.Array | None:
        """:meth:`encode` of every row as one string array (None: encode the rows one by one)."""
        return None

    def group(self, record: dict[str, Any]) -> str:
        """The file set of ``record`` within its split ("" = one set per split)."""
        return ""

    def check(self, sample: Sample) -> None:
        """Raise ``RecordError`` when ``sample``'s records cannot go into this container."""


class Parquet(Container):
    name = extension = "parquet"
    columnar = batched = True


class Jsonl(Container):
    name = extension = "jsonl"
    batched = True

    def encode(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)

    def encode_batch(self, batch: pa.RecordBatch) -> pa.Array | None:
        return json_records(batch, "\n")


class JsonArray(Container):
    """``[\\n{…},\\n{…}\\n]\\n``: ``json.load`` gives the list; one record per line keeps shards diffable."""

    name = extension = "json"
    start, between, end = b"[\n", b",\n", b"\n]\n"
    batched = True

    def encode(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(record)

    def encode_batch(self, batch: pa.RecordBatch) -> pa.Array | None:
        return json_records(batch, "")


# OFA's TSV layouts, by task.  OFA-Sys/OFA data/file_dataset.py L104 reads a row as
# ``line.rstrip("\n").split("\t")`` and picks ``--selected-cols``; no header, no quoting.
#   rec:  data/mm_data/refcoco_dataset.py L127 ``uniq_id, base64_str, text, region_coord = self.dataset[index]``
#         with run_scripts/refcoco/train_refcoco.sh L17 ``selected_cols=0,4,2,3``; L132
#         ``x0, y0, x1, y1 = region_coord.strip().split(',')`` on every row, so a file holds REC rows only.
#   reg:  OFA trains region captioning only inside pretraining (unify_dataset.py); its rows have the REC
#         columns (phrase as text, the region's box), in a file of their own so REC is not trained twice.
#   grounded-caption: data/mm_data/caption_dataset.py L122 ``uniq_id, image, caption = self.dataset[index]``
#         with run_scripts/caption/train_caption_stage1.sh L17 ``selected_cols=0,4,2``; README.md L244 "uniq-id,
#         image-id, caption, predicted object labels (taken from VinVL, not used), image base64 string".  OFA has
#         no grounded-caption loader and strips punctuation from captions (``caption.translate(self.transtab)``),
#         so the caption column holds the plain caption; the grounded ``target`` stays in Parquet/JSONL.
IMAGE = object()  # the image column: base64 of the image bytes
EMPTY = ""  # a column OFA does not use
TSV_COLUMNS: dict[str, tuple[Any, ...]] = {
    "rec": ("uniq_id", "image_id", "text", "region_coord", IMAGE),
    "reg": ("uniq_id", "image_id", "text", "region_coord", IMAGE),
    "grounded-caption": ("uniq_id", "image_id", "text", EMPTY, IMAGE),
}
_BREAKS = re.compile(r"[\t\r\n]")


class OfaTsv(Container):
    """OFA's TSV files: one per task (``data/rec-train-…tsv``), image column = base64 of the image file.

    OFA decodes the image with ``base64.urlsafe_b64decode`` (refcoco_dataset.py L129), which also accepts the
    standard alphabet OFA's README L200 writes with ``base64.b64encode``.  Images are read from ``image_root``
    through ``images.read_image`` (safe_paths); one that cannot be read rejects its sample (``missing-image``).
    """

    name = extension = "tsv"
    grouped = True
    CACHE = 8  # samples of one image come together (5 Flickr captions): read each image once

    def __init__(self, image_root: str):
        self.image_root = image_root
        self._images: OrderedDict[str, str] = OrderedDict()

    def group(self, record: dict[str, Any]) -> str:
        return str(record["task"])

    def check(self, sample: Sample) -> None:
        self.image_cell(sample.image.file)

    def encode(self, record: dict[str, Any]) -> bytes:
        layout = TSV_COLUMNS.get(record["task"])
        if layout is None:
            raise RecordError("render-failed", f"OFA's TSV has no layout for task {record['task']!r}")
        cells = [
            self.image_cell(record["image"]) if column is IMAGE else cell(record[column]) if column else column
            for column in layout
        ]
        return ("\t".join(cells) + "\n").encode()

    def image_cell(self, name: str) -> str:
        """Base64 of the image file ``name`` under the image root (kept for the next few samples)."""
        cached = self._images.get(name)
        if cached is not None:
            self._images.move_to_end(name)
            return cached
        data = read_image(self.image_root, name)  # safe_paths: unsafe-path / missing-image, regular files only
        encoded = self._images[name] = base64.b64encode(data).decode("ascii")
        if len(self._images) > self.CACHE:
            self._images.popitem(last=False)
        return encoded


def cell(value: Any) -> str:
    """A TSV cell: OFA splits rows on newlines and tabs, so those become spaces."""
    return _BREAKS.sub(" ", "" if value is None else str(value))


def container_for(fmt: str, image_root: str | None = None) -> Container:
    """The container of ``--format fmt`` (``image_root``: where OFA's TSV reads the images)."""
    if fmt == "tsv":
        if not image_root:
            raise UsageError(TSV_NEEDS_IMAGES)
        return OfaTsv(image_root)
    simple = {"parquet": Parquet, "jsonl": Jsonl, "json": JsonArray}.get(fmt)
    if simple is None:
        raise UsageError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    return simple()


FORMATS = (*UNIVERSAL, "tsv")
EXTENSIONS = {fmt: fmt for fmt in FORMATS}
TSV_NEEDS_IMAGES = (
    "--format tsv needs --image-root: OFA's TSV holds each image as base64 of its bytes "
    "(OFA's loaders base64-decode that column), read from the image folder"
)


def check_format(fmt: str, writer_formats: tuple[str, ...], writer: str, image_root: str | None) -> None:
    """Refuse a container the writer cannot fill, or TSV without images, before anything is written."""
    if fmt not in UNIVERSAL and fmt not in writer_formats:
        formats = dict.fromkeys((*UNIVERSAL, *writer_formats))
        raise UsageError(f"writer {writer!r} writes {', '.join(formats)}, not {fmt!r}")
    if fmt == "tsv" and not image_root:
        raise UsageError(TSV_NEEDS_IMAGES)
