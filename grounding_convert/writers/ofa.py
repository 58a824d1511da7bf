"""OFA (OFA-Sys/OFA): ``<bin_N>`` location tokens, RefCOCO-style rows, and OFA's own TSV.

What OFA's code does (checked in OFA-Sys/OFA, see the comments at each formula):

* every image is squashed to a square before the box is binned, so each axis is normalized by its own
  size and ``bin = round(v / size * 999)`` (``num_bins - 1`` with ``num_bins=1000``);
* REC source ``' which region does the text " {text} " describe?'``, target = the four tokens joined by
  single spaces; region captioning source ``' what does the region describe? region: {tokens}'``,
  target = the phrase; plain captioning source ``' what does the image describe?'``;
* the RefCOCO TSV row is ``uniq_id, image_id, text, "x1,y1,x2,y2", base64 image`` (original-image
  pixels), read with ``--selected-cols=0,4,2,3``.

Choices of ours (OFA has no spelling for them):

* a phrase with several boxes: ``target`` (REC) / ``source`` (REG) spell every box, four tokens each,
  one after another, as OFA's detection task lists boxes; ``region_coord`` holds their union (the
  "merged box" of Flickr30K grounding), because OFA's RefCOCO loader reads exactly one box from it.
  ``multi_box="union"`` spells the union in the tokens as well, so TSV and records agree.
* grounded captions: source ``' what does the image describe?'``, target = the caption with each
  grounded phrase followed by a space and its tokens (``a man <bin_1> <bin_2> <bin_3> <bin_4> rides``).
* text is written as given (OFA's loaders lower-case and strip punctuation themselves).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar, Literal

import pyarrow as pa

from .. import boxes as B
from ..errors import RecordError
from ..images import read_image
from ..schema import Box, Region, Sample
from .base import Decoded, RecordRandom, Writer, WriterOptions, ordered_spans, record_size

# OFA-Sys/OFA data/mm_data/refcoco_dataset.py: "<bin_{}>".format(int((box[i] * (num_bins - 1)).round())),
# where box[i] = v * (512 / size) / 512 (utils/transforms.py resize() with size == max_size squashes the
# image to 512x512, then Normalize divides by max_image_size=512), i.e. round(v / size * 999) per axis.
# torch.round is round-half-to-even, as Python's round (the Quantizer's "round").  OFA never clamps;
# coordinates inside the image cannot leave 0..999 anyway.
QUANTIZER = B.Quantizer(scale=999, rounding="round", max_index=999)

TOKEN = re.compile(r"<bin_(\d+)>")
RUN = re.compile(r"<bin_\d+>(?: <bin_\d+>)*")  # one phrase's boxes: tokens separated by single spaces

Task = Literal["rec", "reg", "grounded-caption"]


@dataclass
class OfaOptions(WriterOptions):
    embed_images: bool = False  # TSV image column = base64 of the image bytes (OFA's own files)
    image_root: str | None = None  # where the image files are, for embed_images
    multi_box: Literal["all", "union"] = "all"  # several boxes for one phrase: spell all, or their union


class OfaWriter(Writer):
    """OFA fine-tuning rows (RefCOCO layout plus ``source``/``target`` strings), Parquet/JSONL or TSV."""

    name = "ofa"
    description = "OFA: <bin_N> location tokens (1000 bins per axis), RefCOCO-style rows and TSV"
    tasks = ("rec", "reg", "grounded-caption")
    formats = ("parquet", "jsonl", "tsv")
    Options = OfaOptions
    template_name = "ofa"
    #: OFA's RefCOCO TSV columns, in file order (OFA-Sys/OFA run_scripts/refcoco/train_refcoco.sh reads
    #: them with --selected-cols=0,4,2,3 → uniq_id, image, text, region_coord)
    tsv_columns: ClassVar[tuple[str, ...]] = ("uniq_id", "image_id", "text", "region_coord", "image")

    options: OfaOptions

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return [
            ("uniq_id", pa.string()),
            ("image_id", pa.string()),
            ("text", pa.string()),
            ("region_coord", pa.string()),
            ("source", pa.string()),
            ("target", pa.string()),
        ]

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        return QUANTIZER.step(width, height)

    # --- rendering -----------------------------------------------------------------------------------

    def render_seeded(self, sample: Sample, task: str, state: int) -> list[dict[str, Any]]:
        records = super().render_seeded(sample, task, state)
        for record in records:
            record["uniq_id"] = record["id"]  # OFA's first column; the record id is unique and stable
        return records

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = _plain(region.phrase, sample)
        prompt = self.choose_template("rec", rng)
        return self._row(sample, phrase, region.boxes, prompt.replace("{text}", phrase), self._tokens(sample, region))

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = _plain(region.phrase, sample)
        prompt = self.choose_template("reg", rng)
        return self._row(sample, phrase, region.boxes, prompt.replace("{region}", self._tokens(sample, region)), phrase)

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = _plain(sample.text, sample)
        pieces, start = [], 0
        for region in ordered_spans(sample):
            end = region.span[1]
            pieces += [text[start:end], " ", self._tokens(sample, region)]
            start = end
        pieces.append(text[start:])
        return self._row(sample, text, [], self.choose_template("grounded-caption", rng), "".join(pieces))

    def _row(self, sample: Sample, text: str, boxes: Sequence[Box], source: str, target: str) -> dict[str, Any]:
        return {
            "uniq_id": "",  # filled by render() with the record id
            "image_id": sample.image.id or PurePosixPath(sample.image.file).stem,
            "text": text,
            "region_coord": region_coord(boxes) if boxes else "",
            "source": source,
            "target": target,
        }

    def _tokens(self, sample: Sample, region: Region) -> str:
        chosen = [B.union(region.boxes)] if self.options.multi_box == "union" else region.boxes
        return box_tokens(chosen, sample.image.width, sample.image.height)

    # --- TSV -----------------------------------------------------------------------------------------

    def tsv_row(self, record: dict[str, Any]) -> list[str]:
        """One OFA TSV row (no header; the sink joins with tabs): ``tsv_columns`` in order."""
        image = str(record["image"])
        if self.options.embed_images:
            image = self._embed(record)
        return [
            _cell(record["uniq_id"]),
            _cell(record["image_id"]),
            _cell(record["text"]),
            record["region_coord"],
            image,
        ]

    def _embed(self, record: dict[str, Any]) -> str:
        # OFA decodes with base64.urlsafe_b64decode, which also accepts the standard alphabet that OFA's
        # README tells users to write with base64.b64encode.
        # The name comes from the data: read only under the image root (safe_paths, via images.py); a
        # hostile name raises unsafe-path, an unreadable file missing-image, and the pipeline rejects the
        # sample.  Without --image-root the root is a local --image-prefix, else the working directory.
        prefix, image = self.options.image_prefix, str(record["image"])
        head = prefix.rstrip("/") + "/" if prefix else None
        if head and image.startswith(head):
            image = image[len(head) :]  # the dataset-relative name, as preview reads it
        root = self.options.image_root or prefix or "."
        return base64.b64encode(read_image(root, image)).decode("ascii")

    # --- parsing -------------------------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        width, height = record_size(record)
        task = record.get("task")
        source, target = _string(record, "source"), _string(record, "target")
        if task == "rec":
            runs = token_runs(target, width, height)
            if len(runs) != 1 or RUN.fullmatch(target.strip()) is None:
                raise RecordError("bad-box", f"REC target {target!r} is not just location tokens", target)
            return [Decoded(record.get("text"), runs[0])]
        if task == "reg":
            runs = token_runs(source, width, height)
            if len(runs) != 1:
                raise RecordError(
                    "bad-box", f"REG source {source!r} holds {len(runs)} token groups (expected 1)", source
                )
            return [Decoded(target, runs[0])]
        if task == "grounded-caption":
            return [Decoded(None, boxes) for boxes in token_runs(target, width, height)]
        raise RecordError("bad-record", f"record {record.get('id')!r} has unknown task {task!r}")


# --- box spelling ------------------------------------------------------------------------------------


def box_tokens(boxes: Sequence[Box], width: float, height: float) -> str:
    """Boxes → ``<bin_x1> <bin_y1> <bin_x2> <bin_y2>`` groups joined by single spaces."""
    if not boxes:
        raise RecordError("empty-box", "a grounded phrase has no boxes")
    out = []
    for box in boxes:
        if not B.is_finite(box) or B.is_empty(box):
            raise RecordError("bad-box", f"box {list(box)} is not a valid xyxy box", list(box))
        q = QUANTIZER.encode_box(box, width, height)
        if q[0] >= q[2] or q[1] >= q[3]:
            raise RecordError("empty-box", f"box {list(box)} collapses to {q} in OFA's 1000 bins", list(box))
        out.append(" ".join(f"<bin_{v}>" for v in q))
    return " ".join(out)


def token_runs(text: str, width: float, height: float) -> list[list[Box]]:
    """Every run of space-separated ``<bin_N>`` tokens in ``text`` → its boxes (pixels), in order."""
    if text.count("<bin") != len(TOKEN.findall(text)):
        raise RecordError("bad-box", f"malformed location token in {text!r}", text)
    runs = []
    for match in RUN.finditer(text):
        values = [int(v) for v in TOKEN.findall(match.group(0))]
        if len(values) % 4:
            raise RecordError("bad-box", f"{len(values)} location tokens is not a whole number of boxes", text)
        if not all(QUANTIZER.in_range(v) for v in values):
            raise RecordError("bad-box", f"location token outside <bin_0>..<bin_999> in {text!r}", text)
        runs.append([QUANTIZER.decode_box(values[i : i + 4], width, height) for i in range(0, len(values), 4)])
    return runs


def region_coord(boxes: Sequence[Box]) -> str:
    """OFA's ``region_coord`` column: one ``x1,y1,x2,y2`` box in original pixels, two decimals as in the
    RefCOCO row of OFA's README (``230.79,121.75,423.66,463.06``); several boxes → their union."""
    return ",".join(f"{v:.2f}" for v in B.union(boxes))


# --- small helpers -----------------------------------------------------------------------------------


def _plain(text: str, sample: Sample) -> str:
    """Text must not contain location tokens (they would be read back as boxes)."""
    if not text:
        raise RecordError("bad-text", f"sample {sample.id}: empty text")
    if "<bin" in text:
        raise RecordError("render-failed", f"sample {sample.id}: text {text!r} contains an OFA location token")
    return text


def _cell(value: Any) -> str:
    """A TSV cell: OFA splits rows on tabs and newlines, so those become spaces."""
    return re.sub(r"[\t\r\n]", " ", "" if value is None else str(value))


def _string(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        raise RecordError("missing-key", f"record {record.get('id')!r} has no {key!r}")
    if not isinstance(value, str):
        raise RecordError("wrong-type", f"record {record.get('id')!r}: {key!r} is not a string", value)
    return value
