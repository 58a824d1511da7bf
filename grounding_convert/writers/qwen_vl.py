"""Qwen-VL fine-tuning records (FORMATS.md "Qwen-VL"): ``conversations`` with ``<ref>``/``<box>`` tags.

Checked against QwenLM/Qwen-VL @aa00ed0 and its tokenizer ``tokenization_qwen.py`` (CONFORMANCE.md §1):

* README.md L912–947: a record is ``{"id", "conversations": [{"from": "user" | "assistant", "value"}]}``
  (``finetune.py`` L185 reads only ``conversations``; our extra columns are ignored); the user turn
  starts ``Picture 1: <img>{path}</img>\n`` (L933, L966); REC ``框出图中的格子衬衫`` →
  ``<ref>格子衬衫</ref><box>(588,499),(725,789)</box>`` (L940–945): no space inside a REC ``<ref>``.
* README.md L968: a box is ``<box>(x1,y1),(x2,y2)</box>`` with values "normalized in the range [0, 1000)";
  ``from_list_format`` spells ``'(%d,%d),(%d,%d)'``; ``_fetch_all_box_with_ref`` pairs each box with the
  ``<ref>`` before it and ``.strip()``s its text (so does our ``parse``); ``draw_bbox_on_latest_picture``
  decodes ``int(v / 1000 * size)``: scale 1000.
* Grounded captions (README.md L752, TUTORIAL.md L248): the space before a phrase goes inside ``<ref>``,
  also at the start of the reply: ``next to<ref> the red car</ref><box>…</box>``.
* ``_encode_imgurl`` raises beyond ``IMG_TOKEN_SPAN = 256`` UTF-8 bytes of image path: such samples are
  rejected (``render-failed``) instead of crashing the trainer.

Decided doubts (CONFORMANCE.md ⚠️):

* Q4 rounding: never stated upstream; truncation agrees with ``'%d'`` and the decoder's ``int()``.
  ``eval_mm/evaluate_grounding.py`` L203 divides by 999 when scoring: an evaluation shortcut, not training.
* Q5 ``Picture 1: <img>`` (with a space) follows the finetune README, which is the training path;
  ``from_list_format`` (no space) builds inference prompts.
* ``finetune.py`` L243 ``json.load``s one JSON array: that container is the sink's job (``--format json``).

Task choices (templates in ``configs/templates/qwen-vl.yaml``):

* REG never names the phrase in the question: the region is ``<ref>this</ref><box>…</box>``, as in the
  paper's region-captioning format ``<ref>This</ref><box>…</box> is`` → description.
* Pointing (Visual7W): the question is followed by every candidate's ``<box>`` (choices and answer, in
  region order, joined by ``", "``, without ``<ref>`` so names do not give the answer away); the answer is
  ``<ref>{answer name}</ref><box>…</box>`` (just the box when the name is empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .. import boxes
from ..errors import RecordError, UsageError
from ..schema import Box, Region, Sample
from . import batch
from .base import ConversationLayout, Decoded, RecordRandom, Writer, conversation_turns, ordered_spans, record_size

# int(v / size * 1000), clamped to 999: README.md "[0, 1000)" + tokenization_qwen.py "%d" (truncation).
QUANTIZER = boxes.Quantizer(scale=1000, rounding="floor", max_index=999)

# tokenization_qwen.py: IMG_TOKEN_SPAN = 256, the most UTF-8 bytes of an image path inside <img></img>
IMG_TOKEN_SPAN = 256

CONVERSATION_TYPE = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))

# Tags the tokenizer treats specially; source text containing them could not be parsed back.
SPECIAL_TAGS = ("<img>", "</img>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>")

IMAGE_PREFIX = re.compile(r"\APicture 1: <img>(.*?)</img>\n", re.S)
TAG = re.compile(r"<ref>(.*?)</ref>|<box>(.*?)</box>", re.S)
BOX_BODY = re.compile(r"\(([0-9]+),([0-9]+)\),\(([0-9]+),([0-9]+)\)")


def box_tokens(box: Box, width: int, height: int) -> str:
    """One box as ``<box>(x1,y1),(x2,y2)</box>`` (per-mille, truncated, top-left then bottom-right)."""
    try:
        x1, y1, x2, y2 = QUANTIZER.encode_box(box, width, height)
    except (TypeError, ValueError, OverflowError):
        # a NaN/inf/non-number fails the truncation: say so as before (checked only on this rare path)
        if not boxes.is_finite(box):
            raise RecordError("bad-box", f"box {box!r} is not four finite numbers", box) from None
        raise
    if x2 <= x1 or y2 <= y1:  # FORMATS.md: never turn a valid box into an empty one without counting it
        raise RecordError("empty-box", f"box {list(box)} collapses to ({x1},{y1}),({x2},{y2}) per mille", list(box))
    return f"<box>({x1},{y1}),({x2},{y2})</box>"


class QwenVlWriter(Writer):
    """Qwen-VL / Qwen-VL-Chat fine-tuning conversations."""

    name = "qwen-vl"
    description = "Qwen-VL fine-tuning conversations: <ref>phrase</ref><box>(x1,y1),(x2,y2)</box>, 0-999"
    tasks = ("rec", "reg", "grounded-caption", "pointing")
    template_name = "qwen-vl"
    # README.md L912-947: later user turns of a conversation carry no "Picture 1: <img>…</img>" line
    conversation = ConversationLayout("from", "value", "Picture 1: <img>{image}</img>\n")

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return [("conversations", CONVERSATION_TYPE)]

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        return QUANTIZER.step(width, height)

    # --- rendering ---------------------------------------------------------------------------------

    def render_rec(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        phrase = _clean(region.phrase, sample)
        prompt = self._prompt("rec", rng, phrase=phrase)
        return self._conversation(sample, prompt, f"<ref>{phrase}</ref>{self._boxes(sample, region)}")

    def render_reg(self, sample: Sample, region: Region, rng: RecordRandom) -> dict[str, Any]:
        prompt = self._prompt("reg", rng, boxes=self._boxes(sample, region))
        return self._conversation(sample, prompt, _clean(region.phrase, sample))

    def render_grounded_caption(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        text = _clean(sample.text, sample)
        reply = tagged_caption(text, ordered_spans(sample), lambda region: self._boxes(sample, region))
        return self._conversation(sample, self._prompt("grounded-caption", rng), reply)

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, Any]:
        candidates = [r for r in sample.regions if r.role in ("choice", "answer")]
        for region in candidates:
            if len(region.boxes) != 1:
                raise RecordError(
                    "render-failed",
                    f"sample {sample.id}: pointing candidate {region.phrase!r} has {len(region.boxes)} boxes "
                    "(expected exactly one)",
                )
        answer = next(r for r in candidates if r.role == "answer")
        spelled = ", ".join(self._boxes(sample, r) for r in candidates)
        prompt = self._prompt("pointing", rng, question=_clean(sample.text, sample), candidates=spelled)
        name = _clean(answer.phrase, sample)
        reply = (f"<ref>{name}</ref>" if name else "") + self._boxes(sample, answer)
        return self._conversation(sample, prompt, reply)

    def _boxes(self, sample: Sample, region: Region) -> str:
        memo = self._memo  # REC, REG and the caption spell the same region's boxes: once per sample
        if memo is not None:
            tokens = memo.get(id(region))
            if tokens is None:
                tokens = memo[id(region)] = self._spell(sample, region)
            return tokens
        return self._spell(sample, region)

    @staticmethod
    def _spell(sample: Sample, region: Region) -> str:
        w, h = sample.image.width, sample.image.height
        return "".join([box_tokens(b, w, h) for b in region.boxes])

    def _prompt(self, task: str, rng: RecordRandom, **values: str) -> str:
        template = self.choose_template(task, rng)
        try:
            return template.format_map(values)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"{self.templates.source}: {task} template {template!r} is not usable "
                f"(placeholders available: {', '.join(values) or 'none'}): {exc}"
            ) from exc

    def _conversation(self, sample: Sample, prompt: str, reply: str) -> dict[str, Any]:
        memo = self._memo  # every record of a sample starts with the same picture line: spell it once
        head = None if memo is None else memo.get("head")
        if head is None:
            head = f"Picture 1: <img>{_image(self.image_path(sample), sample)}</img>\n"
            if memo is not None:
                memo["head"] = head
        return {
            "conversations": [
                {"from": "user", "value": head + prompt},
                {"from": "assistant", "value": reply},
            ]
        }

    # --- many samples at once (writers/batch.py) ------------------------------------------------------

    def batchable(self, sample: Sample) -> bool:
        """Whether :meth:`render_batch` renders this sample exactly as :meth:`render_tasks` would.

        Plain grounded samples of a usable integer size whose text holds no ``<`` (so no tag to refuse);
        QA samples (pointing) and anything odd take the per-record path.
        """
        image = sample.image
        w, h = image.width, image.height
        if type(w) is not int or type(h) is not int or w <= 0 or h <= 0:
            return False
        text, file, prefix = sample.text, image.file, self.options.image_prefix or ""
        if type(text) is not str or type(file) is not str or "<" in text or "<" in file or "<" in prefix:
            return False  # odd types fail (and are rejected) on the per-record path, tags are refused there
        if len(file) + len(prefix) + 1 > IMG_TOKEN_SPAN // 4 and _path_bytes(self.image_path(sample)) > IMG_TOKEN_SPAN:
            return False  # refused (and rejected) on the per-record path
        return all(
            region.role is None and type(region.phrase) is str and "<" not in region.phrase for region in sample.regions
        )

    def batch_ready(self, tasks: Sequence[str]) -> bool:
        """Whether every requested task's phrasings have the plain shape the columnar path fills in."""
        return all(self.batch_templates(t) is not None for t in tasks if t in ("rec", "reg", "grounded-caption"))

    def batch_templates(self, task: str) -> list[tuple[str, str]] | None:
        """Each phrasing of ``task`` as (text before, text after) its one placeholder; None if one is unusual."""
        placeholder = {"rec": "phrase", "reg": "boxes", "grounded-caption": None}[task]
        pairs = [batch.split_template(t, placeholder) for t in self.template_pool(task)]
        return None if any(p is None for p in pairs) else pairs

    def render_batch(
        self, samples: Sequence[Sample], tasks: Sequence[str], seed: int
    ) -> batch.RenderedBatch | list[int]:
        """Records of :meth:`batchable` samples as one record batch, in :meth:`render_tasks` order; or the
        positions of the samples the per-record path refuses (see ``batch.quantized_or_refused``)."""
        wanted = [t for t in tasks if t in ("rec", "reg", "grounded-caption")]
        flat = batch.FlatSamples.collect(samples, seed)
        captioned = [ordered_spans(s) for s in samples] if "grounded-caption" in wanted else [[] for _ in samples]
        if "rec" in wanted or "reg" in wanted:  # which regions get spelled
            spelled = np.ones(len(flat.phrases), dtype=bool)
        else:
            spelled = np.zeros(len(flat.phrases), dtype=bool)
            for where, regions in zip(flat.region_of, captioned, strict=True):
                spelled[[where[id(r)] for r in regions]] = True
        q = batch.quantized_or_refused(flat, QUANTIZER, spelled)
        if isinstance(q, list):
            return q
        x1, y1, x2, y2 = (batch.as_strings(q[:, i]) for i in range(4))
        tokens = batch.per_region(batch.join("<box>(", x1, ",", y1, "),(", x2, ",", y2, ")</box>"), flat)
        images = [self.image_path(s) for s in samples]
        common = {
            "sample_id": pa.array([s.id for s in samples], pa.string()),
            "image": pa.array(images, pa.string()),
            "width": pa.array(flat.widths, pa.int64()),
            "height": pa.array(flat.heights, pa.int64()),
            "head": pa.array([f"Picture 1: <img>{image}</img>\n" for image in images], pa.string()),
        }
        blocks = batch.Blocks(samples)
        for task in wanted:
            if task == "grounded-caption":
                counts, columns = self._caption_block(flat, captioned, common, tokens)
            else:
                counts, columns = self._region_block(task, flat, common, tokens)
            columns["task"] = pa.array([task] * len(columns["id"]), pa.string())
            blocks.add(task, counts, columns)
        columns, per_sample = blocks.assemble()
        if not columns:
            records = pa.RecordBatch.from_pylist([], schema=self.schema())
        else:
            arrays = [columns[name] for name in ("id", "sample_id", "task", "image", "width", "height")]
            arrays.append(batch.two_turns(columns["user"], columns["reply"], CONVERSATION_TYPE.value_type))
            records = pa.RecordBatch.from_arrays(arrays, schema=self.schema())
        return batch.RenderedBatch(records, per_sample, flat.boxes, flat.box_sample)

    def _region_block(
        self, task: str, flat: batch.FlatSamples, common: dict[str, pa.Array], tokens: pa.Array
    ) -> tuple[list[int], dict[str, pa.Array]]:
        """REC or REG records, one per grounded region: render_rec / render_reg as columns."""
        columns = {name: column.take(pa.array(flat.region_sample)) for name, column in common.items()}
        numbers = pa.array([str(i) for i in flat.region_index], pa.string())
        columns["id"] = batch.join(columns["sample_id"], f"/{task}/", numbers)
        crcs = batch.suffix_crcs(task, flat.region_index)
        before, after = batch.draw_pairs(self.batch_templates(task), flat.states[flat.region_sample], crcs)
        phrase = pa.array(flat.phrases, pa.string())
        head = columns.pop("head")
        if task == "rec":
            columns["user"] = batch.join(head, before, phrase, after)
            columns["reply"] = batch.join("<ref>", phrase, "</ref>", tokens)
        else:
            columns["user"] = batch.join(head, before, tokens, after)
            columns["reply"] = phrase
        counts = np.bincount(flat.region_sample, minlength=len(flat.samples)).tolist()
        return counts, columns

    def _caption_block(
        self, flat: batch.FlatSamples, captioned: list[list[Region]], common: dict[str, pa.Array], tokens: pa.Array
    ) -> tuple[list[int], dict[str, pa.Array]]:
        """One grounded caption per sample that has a span to tag: render_grounded_caption as columns."""
        task = "grounded-caption"
        rows = [s for s, regions in enumerate(captioned) if regions]
        columns = {name: column.take(pa.array(rows, pa.int64())) for name, column in common.items()}
        columns["id"] = batch.join(columns["sample_id"], f"/{task}")
        states = flat.states[np.array(rows, dtype=np.int64)]
        prompt, _ = batch.draw_pairs(self.batch_templates(task), states, batch.suffix_crcs(task, None))
        columns["user"] = batch.join(columns.pop("head"), prompt)
        spelled = tokens.to_pylist()
        replies = [
            tagged_caption(flat.samples[s].text, captioned[s], lambda r, where=flat.region_of[s]: spelled[where[id(r)]])
            for s in rows
        ]
        columns["reply"] = pa.array(replies, pa.string())
        return [1 if regions else 0 for regions in captioned], columns

    # --- parsing -----------------------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        width, height = record_size(record)
        user, reply = conversation_turns(record, "from", "value")
        match = IMAGE_PREFIX.match(user)
        if match is None:
            raise RecordError("bad-record", "user turn does not start with 'Picture 1: <img>…</img>\\n'", user)
        question = _groups(user[match.end() :], width, height)
        answer = _groups(reply, width, height)
        task = record.get("task")
        if task == "reg":
            return [Decoded(reply, [b for g in question for b in g.boxes])]
        if task == "pointing":
            return _pointing(question, answer)
        return question + answer


def tagged_caption(text: str, regions: list[Region], spell: Callable[[Region], str]) -> str:
    """The caption with ``<ref> span</ref>`` and the region's spelled boxes at each of ``regions`` (text order).

    The space before a phrase moves inside ``<ref>``, and a phrase at the very start gets one too
    (Qwen-VL README.md L752 ``grounding:<ref> Woman</ref><box>…</box> and<ref> her dog</ref>``, TUTORIAL.md
    L248 ``'<ref> Two apples</ref>…'``): tiktoken splits ``" the"`` and ``"the"`` differently.
    """
    parts: list[str] = []
    cursor = 0
    for region in regions:
        start, end = region.span
        spaced = start == 0 or (start > cursor and text[start - 1] == " ")
        parts.append(text[cursor : start - 1 if start > 0 and spaced else start])
        parts.append(f"<ref>{' ' if spaced else ''}{text[start:end]}</ref>{spell(region)}")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def _pointing(question: list[Decoded], answer: list[Decoded]) -> list[Decoded]:
    """Candidates in prompt order; the one the reply points at becomes the named ``answer``."""
    chosen = [b for g in answer for b in g.boxes]
    if len(chosen) != 1:
        raise RecordError("bad-box", f"pointing reply holds {len(chosen)} boxes (expected one)", answer)
    name = answer[0].phrase if answer[0].boxes else None
    out = [Decoded(None, [b], "choice") for g in question for b in g.boxes]
    for item in out:
        if item.boxes[0] == chosen[0]:
            item.phrase, item.role = name, "answer"
            return out
    return [*out, Decoded(name, chosen, "answer")]


def _groups(text: str, width: int, height: int) -> list[Decoded]:
    """Each ``<ref>`` with the ``<box>``es right after it (boxes with no ``<ref>`` get phrase None)."""
    out: list[Decoded] = []
    current: Decoded | None = None
    last = 0
    for match in TAG.finditer(text):
        between = text[last : match.start()]
        last = match.end()
        ref, body = match.group(1), match.group(2)
        if ref is not None:
            current = Decoded(ref.strip())  # tokenization_qwen.py _fetch_all_box_with_ref: ['ref'].strip()
            out.append(current)
            continue
        if current is None or between.strip():
            current = Decoded(None)
            out.append(current)
        current.boxes.append(_decode(body, width, height))
    leftover = TAG.sub("", text)
    for tag in SPECIAL_TAGS[2:6]:
        if tag in leftover:
            raise RecordError("bad-box", f"unbalanced {tag} in {text!r}", text)
    return out


def _decode(body: str, width: int, height: int) -> Box:
    match = BOX_BODY.fullmatch(body)
    if match is None:
        raise RecordError("bad-box", f"box {body!r} is not '(x1,y1),(x2,y2)' with integer coordinates", body)
    q = [int(v) for v in match.groups()]
    if not all(QUANTIZER.in_range(v) for v in q):
        raise RecordError("bad-box", f"box {body!r} has a coordinate outside 0..{QUANTIZER.max_index}", body)
    if q[0] > q[2] or q[1] > q[3]:
        raise RecordError("bad-box", f"box {body!r} has its corners the wrong way round", body)
    return QUANTIZER.decode_box(q, width, height)


def _path_bytes(path: str) -> int:
    return len(path.encode("utf-8"))


def _image(path: str, sample: Sample) -> str:
    """The ``<img>`` content: no tags, and at most 256 UTF-8 bytes (tokenization_qwen.py ``_encode_imgurl``
    raises ``ValueError`` beyond ``IMG_TOKEN_SPAN = 256``; 256 itself is allowed)."""
    size = _path_bytes(path)
    if size > IMG_TOKEN_SPAN:
        raise RecordError(
            "render-failed",
            f"image path is {size} bytes; Qwen-VL's tokenizer allows {IMG_TOKEN_SPAN} inside <img></img>",
        )
    return _clean(path, sample)


def _clean(text: str, sample: Sample) -> str:
    """Refuse source text holding Qwen-VL's own tags: the record could not be parsed back."""
    if "<" not in text:  # every tag starts with "<": most text needs no further look
        return text
    for tag in SPECIAL_TAGS:
        if tag in text:
            raise RecordError("render-failed", f"sample {sample.id}: text {text!r} contains the tag {tag}")
    return text
