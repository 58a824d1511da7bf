"""OFA (OFA-Sys/OFA @a36b91c): ``<bin_N>`` location tokens, RefCOCO-style rows, and OFA's own TSV.

What OFA's code does (CONFORMANCE.md §2; file and line at each formula):

* every image is squashed to a 512×512 square before the box is binned, so each axis is normalized by
  its own size and ``bin = round(v / size * 999)`` in float32, half-to-even (``QUANTIZER`` below);
* REC source ``' which region does the text " {text} " describe?'`` (``data/mm_data/refcoco_dataset.py``
  L122), target = the four tokens joined by single spaces (L145);
* region captioning (``data/pretrain_data/unify_dataset.py`` L339–342): source
  ``'  what does the region describe? region:'`` (two leading spaces) BPE-encoded, then the bin tokens
  appended unencoded; target ``' ' + pre_caption(phrase)``.  Our ``source`` string is
  ``'  what does the region describe? region: <bin_…> …'``: BPE-encode ``source.split(' <bin_', 1)[0]``
  and append the ``<bin_N>`` symbols as OFA does;
* captioning source ``' what does the image describe?'`` / ``'图片描述了什么内容?'``
  (``data/mm_data/caption_dataset.py`` L117 / L119), target ``' ' + caption``;
* every text OFA feeds its model goes through ``pre_caption`` (``data/ofa_dataset.py`` L68–84: lower
  case, leading ``,.!?*#:;~`` stripped, ``-`` and ``/`` to spaces, runs of whitespace to one): so do our
  ``source`` phrase and ``target`` texts.  The ``text`` column stays raw (OFA normalizes it itself);
* the RefCOCO TSV row is ``uniq_id, image_id, text, "x1,y1,x2,y2", base64 image`` (original-image
  pixels, README.md L386–389), read with ``--selected-cols=0,4,2,3`` (``train_refcoco.sh`` L17).

Decided doubts and choices of ours (OFA has no spelling for them):

* ``pre_caption`` also truncates to ``max_words`` (80 source words in ``train_refcoco.sh``); we do not:
  the limit is a training-run setting, and truncating a grounded caption would cut its tokens.
* O7, a phrase with several boxes: ``target`` (REC) / ``source`` (REG) spell every box, four tokens
  each, as OFA's detection task lists boxes; ``region_coord`` holds their union, because OFA's RefCOCO
  loader reads exactly one box from it (that is what OFA trains on from the TSV).  ``multi_box="union"``
  spells the union in the tokens as well; "all" stays the default so no box is silently merged.
* grounded captions: OFA has none; source is the caption prompt, target the caption with each grounded
  phrase followed by a space and its tokens (``a man <bin_1> <bin_2> <bin_3> <bin_4> rides``).
* the REG zh prompt is ours (OFA publishes none).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

import pyarrow as pa

from .. import boxes as B
from ..errors import RecordError
from ..schema import Box, Region, Sample
from .base import Decoded, RecordRandom, Writer, WriterOptions, ordered_spans, record_size

# OFA-Sys/OFA data/mm_data/refcoco_dataset.py L141: "<bin_{}>".format(int((box[i] * (num_bins - 1)).round())),
# where box[i] = v * (512 / size) / 512: L116 T.RandomResize([512], max_size=512) squashes the image
# (utils/transforms.py L115-116), L118 Normalize(max_image_size=512) divides (utils/transforms.py L242);
# num_bins=1000, patch_image_size=512 (run_scripts/refcoco/train_refcoco.sh L35-36).  All of it in float32
# tensors, torch.round half-to-even: float64 round(v / size * 999) differs by one bin at exact .5 points
# (v=311, size=666: OFA 467).  OFA never clamps; coordinates inside the image cannot leave 0..999 anyway.
QUANTIZER = B.Quantizer(scale=999, rounding="round", max_index=999, float32_square=512)

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
        prompt = self.choose_template("rec", rng).replace("{text}", _normalized(phrase, sample))
        return self._row(sample, phrase, region.boxes, prompt, self._tokens(sample, region))

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = _plain(region.phrase, sample)
        prompt = self.choose_template("reg", rng).replace("{region}", self._tokens(sample, region))
        return self._row(sample, phrase, region.boxes, prompt, " " + _normalized(phrase, sample))

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = _plain(sample.text, sample)
        pieces, start = [], 0
        for region in ordered_spans(sample):
            end = region.span[1]
            pieces += [text[start:end], " ", self._tokens(sample, region)]
            start = end
        pieces.append(text[start:])
        target = " " + _normalized("".join(pieces), sample)  # the <bin_N> tokens pass pre_caption unchanged
        return self._row(sample, text, [], self.choose_template("grounded-caption", rng), target)

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
        root = self.options.image_root
        path = Path(root) / str(record["image"]).lstrip("/") if root else Path(str(record["image"]))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RecordError(
                "missing-image",
                f"record {record.get('id')!r}: cannot read image {str(path)!r} to embed ({exc})",
            ) from exc
        return base64.b64encode(data).decode("ascii")

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
            return [Decoded(target.strip(), runs[0])]
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

_SPACES = re.compile(r"\s{2,}")


def pre_caption(text: str) -> str:
    """OFA's text normalization (OFA-Sys/OFA data/ofa_dataset.py L68-84), without its ``max_words`` cut."""
    text = text.lower().lstrip(",.!?*#:;~").replace("-", " ").replace("/", " ").replace("<person>", "person")
    return _SPACES.sub(" ", text).rstrip("\n").strip(" ")


def _normalized(text: str, sample: Sample) -> str:
    out = pre_caption(text)
    if not out:
        raise RecordError("bad-text", f"sample {sample.id}: text {text!r} is empty after OFA's pre_caption")
    return out


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
