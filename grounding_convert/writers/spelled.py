"""Writers described as data: a box spelling, a quantizer and a record shape, rendered and parsed by one code.

The writers of FORMATS_NEXT.md (Qwen2/2.5/3-VL, InternVL, Florence-2, PaliGemma) differ only in values:
how one box is spelled, what joins several, what wraps a phrase, which grid the coordinates live on, and
which columns a record has.  :class:`Spelling` holds the first three; a writer module sets them with its
sources and the base classes here render every task and derive ``parse``, the reserved markup and the
tolerance from the same values, so render and parse cannot drift apart.

(Built on the current :class:`~grounding_convert.writers.base.Writer`; when the shared declarative writer
description of issue 13 lands, a :class:`Spelling` maps onto its box/phrase/joiner fields one to one.)
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pyarrow as pa

from .. import boxes as B
from ..errors import RecordError, UsageError
from ..schema import Box, Region, Sample
from .base import (
    ConversationLayout,
    ConversationOptions,
    Decoded,
    RecordRandom,
    Writer,
    WriterOptions,
    ordered_spans,
    record_size,
)

FIELDS = ("x1", "y1", "x2", "y2")
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Spelling:
    """How boxes are written in text.

    ``box``: one box as a ``str.format`` template over the integer fields ``x1 y1 x2 y2`` (any order, with
    format specs such as ``{y1:04d}``); ``joiner``: between the boxes of one phrase; ``group``: around the
    joined boxes (``{boxes}`` marks where); ``ref``: around a phrase that names boxes (``{phrase}``).
    """

    box: str
    joiner: str = ""
    group: str = "{boxes}"
    ref: str = "{phrase}"

    def spell(self, quantized: Sequence[Sequence[int]]) -> str:
        body = self.joiner.join(self.box.format(**dict(zip(FIELDS, q, strict=True))) for q in quantized)
        return self.group.replace("{boxes}", body)

    def named(self, phrase: str) -> str:
        return self.ref.replace("{phrase}", phrase)

    # --- derived from the templates above ----------------------------------------------------------

    def box_regex(self) -> str:
        """One box as a regex with the groups ``x1 y1 x2 y2`` (integers)."""
        out = []
        for literal, name, _spec, _conv in string.Formatter().parse(self.box):
            out.append(re.escape(literal))
            if name is not None:
                out.append(f"(?P<{name}>[0-9]+)")
        return "".join(out)

    def group_regex(self) -> re.Pattern[str]:
        """A whole group (one or more boxes); group ``body`` holds the boxes."""
        head, _, tail = self.group.partition("{boxes}")
        one = re.sub(r"\(\?P<\w+>", "(?:", self.box_regex())
        return re.compile(f"{re.escape(head)}(?P<body>{one}(?:{re.escape(self.joiner)}{one})*){re.escape(tail)}")

    def ref_regex(self) -> str:
        head, _, tail = self.ref.partition("{phrase}")
        return f"{re.escape(head)}(?P<phrase>.*?){re.escape(tail)}" if head or tail else ""

    def reserved(self) -> tuple[str, ...]:
        """The model's tags in the templates (``<|box_start|>``, ``<ref>``…): source text must not contain them."""
        text = "".join(lit for lit, *_ in string.Formatter().parse(self.box)) + self.group + self.ref
        return tuple(sorted(set(re.findall(r"<[^<>{}]+>", text))))


def fill(template: str, **values: str) -> str:
    """A prompt template with its placeholders replaced literally (JSON braces in templates stay as they are)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


class SpelledWriter(Writer):
    """A writer whose boxes are a :class:`Spelling` on a :class:`~grounding_convert.boxes.Quantizer` grid.

    Subclasses set ``spelling``, ``quantizer``, ``axes`` and a record shape; a per-sample grid (Qwen2.5-VL's
    resized image) overrides :meth:`grids`.
    """

    spelling: ClassVar[Spelling]
    quantizer: ClassVar[B.Quantizer]
    #: extra strings source text must not contain (besides the spelling's own markup)
    also_reserved: ClassVar[tuple[str, ...]] = ()
    #: placeholders each task's templates must contain (checked once, when the writer is built)
    required_placeholders: ClassVar[dict[str, tuple[str, ...]]] = {"rec": ("{phrase}",), "reg": ("{boxes}",)}

    def __init__(self, options: WriterOptions | None = None):
        super().__init__(options)
        self.reserved = self.spelling_now().reserved() + self.also_reserved
        self._check_templates()

    def spelling_now(self) -> Spelling:
        """The spelling this instance writes (an option may choose between two)."""
        return self.spelling

    def _check_templates(self) -> None:
        if self.templates is None:
            return
        for task, needed in self.required_placeholders.items():
            if task not in self.tasks:
                continue
            for template in self.template_pool(task):
                missing = [p for p in needed if p not in template]
                if missing:
                    raise UsageError(
                        f"{self.templates.source}: {task} template {template!r} lacks {', '.join(missing)}"
                    )

    # --- grid -------------------------------------------------------------------------------------------

    def grids(self, width: int, height: int) -> tuple[B.Quantizer, B.Quantizer]:
        """The quantizers of x and y for an image of this size (one shared grid unless overridden)."""
        return self.quantizer, self.quantizer

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        qx, qy = self.grids(width, height)
        return width / qx.scale, height / qy.scale

    def quantize(self, box: Box, width: int, height: int) -> list[int]:
        """``[x1, y1, x2, y2]`` on the grid; refuses non-finite boxes and boxes the grid collapses."""
        if not B.is_finite(box) or B.is_empty(box):
            raise RecordError("bad-box", f"box {list(box)} is not a valid xyxy box", list(box))
        try:
            qx, qy = self.grids(width, height)
        except B.BoxError as exc:
            raise RecordError("bad-size", str(exc)) from None
        x1, y1, x2, y2 = box
        q = [qx.encode(x1, width), qy.encode(y1, height), qx.encode(x2, width), qy.encode(y2, height)]
        if q[2] <= q[0] or q[3] <= q[1]:
            raise RecordError("empty-box", f"box {list(box)} collapses to {q} on the model's grid", list(box))
        return q

    def dequantize(self, q: Sequence[int], width: int, height: int, record: dict[str, Any] | None = None) -> Box:
        qx, qy = self.record_grids(record, width, height)
        if not all(qx.in_range(v) for v in q[0::2]) or not all(qy.in_range(v) for v in q[1::2]):
            raise RecordError("bad-box", f"box {list(q)} has a coordinate outside 0..{qx.max_index}/{qy.max_index}")
        if q[0] > q[2] or q[1] > q[3]:
            raise RecordError("bad-box", f"box {list(q)} has its corners the wrong way round")
        return [qx.decode(q[0], width), qy.decode(q[1], height), qx.decode(q[2], width), qy.decode(q[3], height)]

    def record_grids(self, record: dict[str, Any] | None, width: int, height: int) -> tuple[B.Quantizer, B.Quantizer]:
        """The grids a written record used (Qwen2.5-VL reads its resized size from the record)."""
        return self.grids(width, height)

    # --- spelling ---------------------------------------------------------------------------------------

    def spell(self, sample: Sample, region: Region) -> str:
        w, h = sample.image.width, sample.image.height
        if not region.boxes:
            raise RecordError("empty-box", f"sample {sample.id}: phrase {region.phrase!r} has no boxes")
        return self.spelling_now().spell([self.quantize(b, w, h) for b in region.boxes])

    def plain(self, text: str | None, sample: Sample) -> str:
        """Source text, refused when empty or holding the model's markup (it could not be parsed back)."""
        if not isinstance(text, str) or not text.strip():
            raise RecordError("bad-text", f"sample {sample.id}: empty text")
        for tag in self.reserved:
            if tag in text:
                raise RecordError("render-failed", f"sample {sample.id}: text {text!r} contains the markup {tag!r}")
        return text

    def tagged_caption(self, sample: Sample, regions: list[Region]) -> str:
        """The caption with each region's phrase wrapped by ``ref`` and followed by its boxes."""
        text = self.plain(sample.text, sample)
        parts, cursor = [], 0
        spelling = self.spelling_now()
        for region in regions:
            start, end = region.span
            parts += [text[cursor:start], spelling.named(text[start:end]), self.spell(sample, region)]
            cursor = end
        parts.append(text[cursor:])
        return "".join(parts)

    def decode_groups(self, text: str, width: int, height: int, record: dict[str, Any]) -> list[Decoded]:
        """Every box group of ``text`` in order, each with the phrase tag right before it (or None)."""
        spelling = self.spelling_now()
        box_re = re.compile(spelling.box_regex())
        ref = spelling.ref_regex()
        pattern = re.compile(f"(?:{ref})?{spelling.group_regex().pattern}" if ref else spelling.group_regex().pattern)
        out = []
        for match in pattern.finditer(text):
            boxes = []
            for found in box_re.finditer(match.group("body")):
                q = [int(found.group(name)) for name in FIELDS]
                boxes.append(self.dequantize(q, width, height, record))
            out.append(Decoded(match.groupdict().get("phrase"), boxes))
        return out


# --- conversation records ---------------------------------------------------------------------------------

CONVERSATION = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))


class ConversationWriter(SpelledWriter):
    """``{"image", "conversations": [{"from": "human", "value": "<image>\\n…"}, {"from": "gpt", …}]}`` records.

    The layout of QwenLM/Qwen3-VL ``qwen-vl-finetune/README.md`` and of InternVL's chat data
    (FORMATS_NEXT §1, §4): one ``<image>`` placeholder at the start of the first human turn.
    """

    tasks = ("rec", "reg", "grounded-caption")
    also_reserved = (IMAGE_TOKEN,)
    Options = ConversationOptions
    head: ClassVar[str] = IMAGE_TOKEN + "\n"
    # --turns packing (output/packing.py): "<image>\n" in the first human turn only, as qwen-vl-finetune's
    # multi-turn examples
    conversation = ConversationLayout("from", "value", IMAGE_TOKEN + "\n")

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return [("conversations", CONVERSATION)]

    def extra_columns(self, sample: Sample) -> dict[str, Any]:
        """Columns after ``conversations`` (none by default)."""
        return {}

    # rendering
    def answer(self, sample: Sample, regions: list[Region], labels: list[str]) -> str:
        """The reply naming ``regions`` (REC: one region; the grounded caption overrides this path)."""
        return "".join(
            self.spelling_now().named(label) + self.spell(sample, r) for r, label in zip(regions, labels, strict=True)
        )

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = self.plain(region.phrase, sample)
        prompt = fill(self.choose_template("rec", rng), phrase=phrase)
        return self.dialogue(sample, prompt, self.answer(sample, [region], [phrase]))

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        prompt = fill(self.choose_template("reg", rng), boxes=self.spell(sample, region))
        return self.dialogue(sample, prompt, self.plain(region.phrase, sample))

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = self.plain(sample.text, sample)
        prompt = fill(self.choose_template("grounded-caption", rng), caption=text)
        return self.dialogue(sample, prompt, self.caption_answer(sample))

    def caption_answer(self, sample: Sample) -> str:
        return self.tagged_caption(sample, ordered_spans(sample))

    def dialogue(self, sample: Sample, prompt: str, reply: str) -> dict[str, Any]:
        self.plain(self.image_path(sample), sample)
        record = {
            "conversations": [{"from": "human", "value": self.head + prompt}, {"from": "gpt", "value": reply}],
        }
        record.update(self.extra_columns(sample))
        return record

    # parsing
    def turns(self, record: dict[str, Any]) -> tuple[str, str]:
        """(prompt without the image placeholder, reply): what a trainer layout re-packs."""
        user, reply = _two_turns(record)
        if not user.startswith(self.head):
            raise RecordError(
                "bad-record", f"record {record.get('id')!r}: human turn does not start with {self.head!r}"
            )
        return user[len(self.head) :], reply

    def native(self, record: dict[str, Any], prompt: str, reply: str) -> dict[str, Any]:
        """The inverse of :meth:`turns`: this writer's record from common columns, prompt and reply."""
        turns = [{"from": "human", "value": self.head + prompt}, {"from": "gpt", "value": reply}]
        extra = {k: v for k, v in record.items() if k not in ("id", "sample_id", "task", "image", "width", "height")}
        return {
            **{k: record.get(k) for k in ("id", "sample_id", "task", "image", "width", "height")},
            "conversations": turns,
            **extra,
        }

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        width, height = record_size(record)
        user, reply = self.turns(record)
        task = record.get("task")
        if task == "reg":
            groups = self.decode_groups(user, width, height, record)
            return [Decoded(reply, [b for g in groups for b in g.boxes])]
        return self.decode_answer(reply, width, height, record)

    def decode_answer(self, reply: str, width: int, height: int, record: dict[str, Any]) -> list[Decoded]:
        return self.decode_groups(reply, width, height, record)


def _two_turns(record: dict[str, Any]) -> tuple[str, str]:
    turns = record.get("conversations")
    if not isinstance(turns, list) or len(turns) != 2:
        raise RecordError("missing-key", f"record {record.get('id')!r} needs a two-turn 'conversations' list")
    human, gpt = turns
    if not (isinstance(human, dict) and human.get("from") == "human" and isinstance(human.get("value"), str)):
        raise RecordError("wrong-type", f"record {record.get('id')!r}: expected a 'human' turn, got {human!r}")
    if not (isinstance(gpt, dict) and gpt.get("from") == "gpt" and isinstance(gpt.get("value"), str)):
        raise RecordError("wrong-type", f"record {record.get('id')!r}: expected a 'gpt' turn, got {gpt!r}")
    return human["value"], gpt["value"]


# --- JSON answers (Qwen2.5-VL, Qwen3-VL) -------------------------------------------------------------------

#: the list spelling inside JSON answers and REG prompts: ``[x1, y1, x2, y2]``
JSON_LIST = Spelling(box="[{x1}, {y1}, {x2}, {y2}]", joiner=", ")


def json_answer(items: list[tuple[str, list[int]]], fence: bool) -> str:
    """``[\\n\\t{"bbox_2d": [x1, y1, x2, y2], "label": "…"},\\n…\\n]``, fenced as ```` ```json ```` when asked.

    roboflow/maestro ``67f1caf3`` ``maestro/trainer/models/qwen_2_5_vl/detection.py``: one object per box,
    tab-indented, joined by ``",\\n"`` inside ``"[\\n" … "\\n]"`` (FORMATS_NEXT §2, §3).
    """
    import orjson

    lines = [
        '\t{"bbox_2d": [%d, %d, %d, %d], "label": %s}' % (*q, orjson.dumps(label).decode())  # noqa: UP031
        for label, q in items
    ]
    body = "[\n" + ",\n".join(lines) + "\n]"
    return f"```json\n{body}\n```" if fence else body


JSON_FENCE = re.compile(r"\A```json\n(.*)\n```\Z", re.S)


def parse_json_answer(reply: str, decode: Callable[[list[int]], Box]) -> list[Decoded]:
    import orjson

    match = JSON_FENCE.match(reply)
    try:
        items = orjson.loads(match.group(1) if match else reply)
    except orjson.JSONDecodeError as exc:
        raise RecordError("bad-box", f"answer is not JSON: {exc}", reply) from None
    if not isinstance(items, list):
        raise RecordError("bad-box", "JSON answer is not a list", reply)
    out: list[Decoded] = []
    for item in items:
        box = item.get("bbox_2d") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
            raise RecordError("bad-box", f"JSON item {item!r} has no bbox_2d of four integers", reply)
        label = item.get("label")
        if out and out[-1].phrase == label:
            out[-1].boxes.append(decode(box))  # one object per box: consecutive boxes of one phrase regroup
        else:
            out.append(Decoded(label, [decode(box)]))
    return out


BoxFormat = Literal["json", "tokens"]


# --- image / prefix / suffix records (Florence-2, PaliGemma) ----------------------------------------------


class PrefixSuffixWriter(SpelledWriter):
    """``{"image", "prefix", "suffix"}`` records: the JSONL of big_vision's ``bv:jsonl`` (PaliGemma) and of
    Roboflow/maestro (Florence-2, PaliGemma); ``width``/``height`` stay as the common columns."""

    tasks = ("rec", "grounded-caption")

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return [("prefix", pa.string()), ("suffix", pa.string())]

    def prefix_suffix(self, prefix: str, suffix: str, sample: Sample) -> dict[str, Any]:
        self.plain(self.image_path(sample), sample)
        return {"prefix": prefix, "suffix": suffix}

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        width, height = record_size(record)
        prefix, suffix = record.get("prefix"), record.get("suffix")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise RecordError("missing-key", f"record {record.get('id')!r} needs string 'prefix' and 'suffix'")
        return self.decode_record(prefix, suffix, width, height, record)

    def decode_record(self, prefix: str, suffix: str, width: int, height: int, record: dict[str, Any]) -> list[Decoded]:
        return self.decode_groups(suffix, width, height, record)
