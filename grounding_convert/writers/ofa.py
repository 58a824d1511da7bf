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
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from .. import boxes as B
from ..errors import RecordError
from ..images import read_image
from ..schema import Box
from .base import Decoded, Writer, WriterOptions, record_size
from .convention import Columns, Convention, Spelling, Tagging

# OFA-Sys/OFA data/mm_data/refcoco_dataset.py L141: "<bin_{}>".format(int((box[i] * (num_bins - 1)).round())),
# where box[i] = v * (512 / size) / 512: L116 T.RandomResize([512], max_size=512) squashes the image
# (utils/transforms.py L115-116), L118 Normalize(max_image_size=512) divides (utils/transforms.py L242);
# num_bins=1000, patch_image_size=512 (run_scripts/refcoco/train_refcoco.sh L35-36).  All of it in float32
# tensors, torch.round half-to-even: float64 round(v / size * 999) differs by one bin at exact .5 points
# (v=311, size=666: OFA 467).  OFA never clamps; coordinates inside the image cannot leave 0..999 anyway.
QUANTIZER = B.Quantizer(scale=999, rounding="round", max_index=999, float32_square=512)

OFA = Convention(
    grid=QUANTIZER,
    # refcoco_dataset.py L145 "{} {} {} {}".format(quant_x0, quant_y0, quant_x1, quant_y1); several boxes: one
    # group after another, as the detection task lists them (unify_dataset.py L447-448)
    spelling=Spelling(box=("<bin_", 0, "> <bin_", 1, "> <bin_", 2, "> <bin_", 3, ">"), joiner=" "),
    tagging=Tagging(close=" "),  # ours: "a man <bin_1> <bin_2> <bin_3> <bin_4> rides"
    # README.md L386: uniq-id, image-id, text, region-coord, image (the TSV); plus the strings OFA feeds
    layout=Columns(
        (
            ("uniq_id", ("id",)),
            ("image_id", ("image_id",)),
            ("text", ("text",)),
            ("region_coord", ("region_coord",)),
            ("source", ("prompt",)),
            ("target", ("answer",)),
        )
    ),
    placeholders=(("rec", "text"), ("reg", "region")),
    # REG target unify_dataset.py L342 ' {}'.format(pre_caption(caption)); caption target caption_dataset.py " {}"
    answers=(("rec", "{boxes}"), ("reg", " {phrase}"), ("grounded-caption", " {caption}")),
    reserved=("<bin",),
    normalize="pre_caption",
    normalize_caption=True,  # the <bin_N> tokens pass pre_caption unchanged
)

TOKEN = re.compile(r"<bin_(\d+)>")
RUN = re.compile(r"<bin_\d+>(?: <bin_\d+>)*")  # one phrase's boxes: tokens separated by single spaces


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
    convention = OFA
    #: OFA's RefCOCO TSV columns, in file order (OFA-Sys/OFA run_scripts/refcoco/train_refcoco.sh reads
    #: them with --selected-cols=0,4,2,3 → uniq_id, image, text, region_coord)
    tsv_columns: ClassVar[tuple[str, ...]] = ("uniq_id", "image_id", "text", "region_coord", "image")

    options: OfaOptions

    def make_convention(self) -> Convention:
        return replace(OFA, union_boxes=True) if self.options.multi_box == "union" else OFA

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
            return [Decoded(target.strip(), runs[0])]
        if task == "grounded-caption":
            return [Decoded(None, boxes) for boxes in token_runs(target, width, height)]
        raise RecordError("bad-record", f"record {record.get('id')!r} has unknown task {task!r}")


def box_tokens(boxes: list[Box], width: float, height: float) -> str:
    """Boxes → ``<bin_x1> <bin_y1> <bin_x2> <bin_y2>`` groups joined by single spaces."""
    return OfaWriter().spell_boxes(boxes, width, height)


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
