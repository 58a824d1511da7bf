"""``--layout ms-swift-objects``: ms-swift's generic grounding records, boxes left to ms-swift (FORMATS_NEXT §8).

The text holds placeholders and an ``objects`` column holds what fills them; ms-swift spells the boxes in the
model's own tokens at training time.  [doc] modelscope/ms-swift ``3602360a5``
``docs/source_en/Customization/Custom-dataset.md`` L307–321::

    {"messages": [{"role": "user", "content": "<image>Find the <ref-object> in the image"},
                  {"role": "assistant", "content": "<bbox><bbox>"}],
     "images": ["/xxx/x.jpg"], "objects": {"ref": ["sheep"], "bbox": [[90.9, 160.8, 135, 212.8], [360.9, …]]}}

``ref`` fills ``<ref-object>`` and ``bbox`` fills ``<bbox>``, each in order over the whole conversation and
independently of each other; ``bbox_type`` ``real`` (the default) means pixels of the original image.
What ms-swift does with it (read in ``swift/template/base.py`` at that commit):

* L290–297 ``_get_height_width``: width/height of each loaded image, taken in ``_preprocess_inputs``
  (L420–435) *before* any ``max_pixels`` rescale ("Scale the image proportionally without affecting the
  scaled objects");
* L299–319 ``normalize_bbox``: ``bbox[2 * i] = int(round(x / width * norm_width))`` with ``norm_width`` 1000
  (``norm_bbox = 'norm1000'``, the default, L67) or the fed image's width (``'none'``: Qwen2.5-VL,
  ``templates/qwen.py`` L526–528);
* L1055–1102 ``_pre_tokenize``: the i-th ``<ref-object>`` becomes ``replace_ref(ref[i])``, the j-th ``<bbox>``
  ``replace_bbox(bbox[j])`` (a placeholder past the end of its list stays literal text);
  ``templates/qwen.py`` L369–380 (Qwen2/2.5/3-VL): ``<|object_ref_start|>{ref}<|object_ref_end|>`` and
  ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``; L222–226 (Qwen-VL) ``<ref>…</ref><box>(x1,y1),(x2,y2)</box>``;
  ``templates/internvl.py`` L121–125 ``<box>[{bbox}]</box>``; other templates fall back to base L1015–1034
  ``[(x1,y1),(x2,y2)]`` on 0–1000;
* ``swift/dataset/preprocessor/core.py`` L286–291: the Arrow type it gives the column,
  ``{ref: list<string>, bbox: list<list<float64>>, bbox_type: string, image_id: list<int64>}``.

Records here, per task (the prompt wording from ``configs/templates/ms-swift-objects.yaml``):

* ``rec``: user ``<image>`` + prompt with ``<ref-object>`` for the phrase; assistant ``<bbox>`` once per box
  (the docs' ``"<bbox><bbox>"`` for one ref with two boxes);
* ``reg``: user prompt with ``<bbox>`` per box; assistant ``<ref-object>`` (as ms-swift's own REG prompts,
  ``swift/dataset/preprocessor/extra.py`` L25–44 ``('The object at position <bbox>', '<ref-object>')``);
* ``grounded-caption``: the caption with each grounded phrase replaced by ``<ref-object>`` and followed by
  one ``<bbox>`` per box (``swift/dataset/dataset/mllm.py`` L1100–1109 ``replace_intervals_with_tags`` for
  GRIT does the same with one box), so the model reads the phrase once, tagged;
* ``pointing`` (Qwen-VL): the question with one ``<bbox>`` per candidate; assistant ``<ref-object>`` (the
  answer's name, when it has one) and the answer's ``<bbox>``.

Boxes are the canonical boxes unchanged (``bbox_type: real``, no rounding), so ``parse`` gives them back
exactly.  The ``--to`` writer names the model: only models whose ms-swift template spells boxes the way the
model was trained are accepted (:data:`SWIFT_TEMPLATES`); the writer's own box options do not apply (ms-swift
spells and resizes) and are refused.  Text holding one of ms-swift's tags (``<image>``, ``<bbox>``,
``<ref-object>``, …) or the markup ms-swift will wrap it in is refused (``render-failed``), never mangled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from .errors import RecordError, UsageError
from .layouts import IMAGE_TOKEN as IMAGE
from .layouts import MESSAGES, message_texts
from .schema import Box, Sample
from .writers.base import (
    COMMON_FIELDS,
    Decoded,
    Writer,
    WriterOptions,
    grounded_regions,
    ordered_spans,
    pointing_candidates,
    record_rng,
    record_size,
)
from .writers.convention import Field, Piece

REF, BBOX = "<ref-object>", "<bbox>"
#: every tag ms-swift splits the text on (``swift/template/base.py`` L56, ``Template.special_tokens``)
SWIFT_TAGS = ("<image>", "<video>", "<audio>", "<bbox>", "<ref-object>", "<cot-process>", "<start-image>")
OBJECTS = pa.struct(
    [("ref", pa.list_(pa.string())), ("bbox", pa.list_(pa.list_(pa.float64()))), ("bbox_type", pa.string())]
)

#: writers whose model ms-swift spells in its own tokens (legacy ``QWENVL_BBOX_FORMAT``, the default):
#: the markup its ``replace_ref``/``replace_bbox`` write around our text (refused inside phrases) and where.
SWIFT_TEMPLATES: dict[str, tuple[tuple[str, ...], str]] = {
    "qwen-vl": (("<ref>", "</ref>", "<box>", "</box>"), "templates/qwen.py L222-226 (rounds; Qwen-VL truncates)"),
    "qwen2-vl": (
        ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"),
        "templates/qwen.py L369-380, norm1000",
    ),
    "qwen2.5-vl": (
        ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"),
        "templates/qwen.py L369-380, L526-528 norm_bbox 'none': pixels of the image ms-swift resized",
    ),
    "qwen3-vl": (
        ("<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>"),
        "templates/qwen.py L369-380, L540 (Qwen2-VL's norm1000)",
    ),
    "internvl": (("<ref>", "</ref>", "<box>", "</box>"), "templates/internvl.py L121-125, norm1000"),
}
#: options of the ``--to`` writers that choose their own box spelling: ms-swift spells the boxes instead
SPELLING_OPTIONS = ("box_format", "json_fence", "max_coord", "resize_profile", "min_pixels", "max_pixels", "factor")
#: the one placeholder each task's prompt must hold exactly once (pointing: both)
PROMPT_FIELDS = {"rec": ("phrase",), "reg": ("boxes",), "grounded-caption": (), "pointing": ("question", "candidates")}


class SwiftObjects(Writer):
    """ms-swift generic grounding records for the model the ``--to`` writer names (module docstring)."""

    template_name = "ms-swift-objects"

    def __init__(self, target: type[Writer], options: WriterOptions, given: Sequence[str] = ()):
        markup = SWIFT_TEMPLATES.get(target.name)
        if markup is None:
            spelled = ", ".join(SWIFT_TEMPLATES)
            raise UsageError(
                f"--layout ms-swift-objects: ms-swift spells {target.name} boxes as [(x1,y1),(x2,y2)] on 0-1000, "
                f"not as {target.name} was trained (it spells its own tokens for {spelled}); use --layout "
                "ms-swift, whose text holds the model's own spelling"
            )
        moot = sorted({key.replace("-", "_") for key in given} & set(SPELLING_OPTIONS))
        if moot:
            raise UsageError(
                f"--{moot[0].replace('_', '-')} does not apply with --layout ms-swift-objects: ms-swift spells and "
                "resizes the boxes at training time (QWENVL_BBOX_FORMAT, MAX_PIXELS); leave it out"
            )
        self.name = target.name  # type: ignore[misc]  # the model: manifests and messages name it
        self.tasks = tuple(t for t in target.tasks if t in PROMPT_FIELDS)  # type: ignore[misc]
        self.description = f"ms-swift generic grounding records (<ref-object>/<bbox> + objects) for {target.name}"
        self.target = target
        self._reserved = re.compile("|".join(re.escape(t) for t in SWIFT_TAGS + markup[0]))
        super().__init__(options)
        for task in self.tasks:  # a bad phrasing is a usage error now, not at the first record
            if self.templates is not None and task in self.templates.table:
                self.template_pool(task)

    # --- the writer's shape ---------------------------------------------------------------------------

    def schema(self) -> pa.Schema:
        return pa.schema(
            COMMON_FIELDS + [("messages", MESSAGES), ("images", pa.list_(pa.string())), ("objects", OBJECTS)]
        )

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        return 1e-9, 1e-9  # the canonical boxes themselves (bbox_type real): no step

    def prompt_names(self, task: str) -> tuple[str, ...]:
        return PROMPT_FIELDS[task]

    def template_pool(self, task: str) -> list[tuple[Piece, ...]]:
        """The phrasings, checked when first compiled: each placeholder exactly once, plain, and no ms-swift tag
        (or the model's markup) in the wording (it would take a ref or bbox that belongs elsewhere)."""
        if task in self._pools:
            return self._pools[task]
        pool = super().template_pool(task)
        del self._pools[task]  # kept only once checked
        for pieces in pool:
            names = sorted(p.name for p in pieces if isinstance(p, Field))
            found = self._reserved.search("".join(p for p in pieces if isinstance(p, str)))
            plain = all(p.plain for p in pieces if isinstance(p, Field))
            if names != sorted(PROMPT_FIELDS[task]) or found is not None or not plain:
                shown = "".join(p if isinstance(p, str) else "{" + p.name + "}" for p in pieces)
                wanted = " and ".join("{" + n + "}" for n in PROMPT_FIELDS[task]) or "no placeholder"
                why = f"holds {found.group(0)!r}" if found is not None else f"needs {wanted}, each exactly once"
                source = self.templates.source if self.templates is not None else "templates"
                raise UsageError(f"{source}: {task} template {shown!r} {why} (--layout ms-swift-objects)")
        self._pools[task] = pool
        return pool

    # --- rendering -----------------------------------------------------------------------------------------

    def render_seeded(self, sample: Sample, task: str, state: int) -> list[dict[str, Any]]:
        if task in ("rec", "reg"):
            regions = grounded_regions(sample)
            if not regions:
                return []
            self._check_size(sample)
            out = []
            for index, region in regions:
                suffix = f"{task}/{index}"
                phrase = self.plain(region.phrase, sample, "phrase")
                if not phrase.strip():
                    raise RecordError("bad-text", f"sample {sample.id}: region {index} has an empty phrase")
                boxes = self.real(region.boxes)
                rng = record_rng(state, suffix)
                if task == "rec":
                    user, reply = self.prompt("rec", rng, phrase=REF), BBOX * len(boxes)
                else:
                    user, reply = self.prompt("reg", rng, boxes=BBOX * len(boxes)), REF
                out.append(self.make_record(sample, task, f"{sample.id}/{suffix}", user, reply, [phrase], boxes))
            return out
        if task == "grounded-caption":
            chosen = ordered_spans(sample)
            if not chosen:
                return []
            self._check_size(sample)
            text = self.plain(sample.text, sample, "caption")
            parts, refs, boxes, cursor = [], [], [], 0
            for region in chosen:
                start, end = region.span
                if not (0 <= start < end <= len(text)):
                    raise RecordError("bad-span", f"span {[start, end]} does not fit text of {len(text)} chars")
                group = self.real(region.boxes)
                parts += [text[cursor:start], REF, BBOX * len(group)]
                refs.append(text[start:end])
                boxes += group
                cursor = end
            parts.append(text[cursor:])
            user = self.prompt("grounded-caption", record_rng(state, task))
            return [self.make_record(sample, task, f"{sample.id}/{task}", user, "".join(parts), refs, boxes)]
        if task == "pointing":
            return self.pointing(sample, state)
        raise ValueError(f"unknown task {task!r}")

    def pointing(self, sample: Sample, state: int) -> list[dict[str, Any]]:
        """Visual7W: the question and one ``<bbox>`` per candidate (region order) → the answer's name and box."""
        if not any(r.role == "answer" and r.boxes for r in sample.regions):
            return []
        self._check_size(sample)
        candidates, answer = pointing_candidates(sample)
        question = self.plain(sample.text, sample, "question")
        name = self.plain(answer.phrase, sample, "phrase")
        boxes = self.real([r.boxes[0] for r in candidates] + answer.boxes)
        listed = ", ".join([BBOX] * len(candidates))
        user = self.prompt("pointing", record_rng(state, "pointing"), question=question, candidates=listed)
        reply = (REF if name else "") + BBOX
        record_id = f"{sample.id}/pointing"
        return [self.make_record(sample, "pointing", record_id, user, reply, [name] if name else [], boxes)]

    def plain(self, text: str, sample: Sample, what: str) -> str:
        """``text``, unless ms-swift would read part of it as a tag or the model's markup (render-failed)."""
        found = self._reserved.search(text)
        if found is not None:
            raise RecordError(
                "render-failed",
                f"sample {sample.id}: {what} {text!r} contains {found.group(0)!r}, which ms-swift would replace "
                f"or read as {self.name} markup",
            )
        return text

    @staticmethod
    def real(boxes: Sequence[Box]) -> list[list[float]]:
        """The canonical boxes as ``bbox`` entries (``real``: original-image pixels), refusing unusable ones."""
        if not boxes:
            raise RecordError("empty-box", "a grounded phrase has no boxes")
        out = []
        for box in boxes:
            try:
                values = [float(v) for v in box]
            except (TypeError, ValueError):
                raise RecordError("bad-box", f"box {box!r} is not four finite numbers", box) from None
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise RecordError("bad-box", f"box {list(box)!r} is not four finite numbers", list(box))
            if not (values[2] > values[0] and values[3] > values[1]):
                raise RecordError("empty-box", f"box {values} has no area (x2 <= x1 or y2 <= y1)", values)
            out.append(values)
        return out

    def make_record(
        self,
        sample: Sample,
        task: str,
        record_id: str,
        prompt: str,
        reply: str,
        refs: list[str],
        boxes: list[list[float]],
    ) -> dict[str, Any]:
        return {
            **self.common_values(sample, task, record_id),
            "messages": [{"role": "user", "content": IMAGE + prompt}, {"role": "assistant", "content": reply}],
            "images": [self.image_path(sample)],
            "objects": {"ref": refs, "bbox": boxes, "bbox_type": "real"},
        }

    # --- parsing ----------------------------------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        """Phrases and pixel boxes of a record: each placeholder filled from ``objects`` in ms-swift's order."""
        record_size(record)
        user, reply = message_texts(record)
        refs, boxes = objects_of(record)
        text = user + "\n" + reply  # ms-swift cuts each message apart: no tag spans the two (none holds "\n")
        counts = (text.count(REF), text.count(BBOX))
        if counts != (len(refs), len(boxes)):
            raise RecordError(
                "bad-record",
                f"record {record.get('id')!r}: {counts[0]} {REF} and {counts[1]} {BBOX} in the messages for "
                f"{len(refs)} ref(s) and {len(boxes)} bbox(es) in objects",
            )
        task = record.get("task")
        if task in ("rec", "reg"):
            if len(refs) != 1 or not boxes:
                raise RecordError(
                    "bad-record", f"record {record.get('id')!r}: a {task} record has one ref and its boxes"
                )
            return [Decoded(refs[0], boxes)]
        if task == "pointing":
            from .writers.qwen_vl import _pointing

            asked = [Decoded(None, [b]) for b in boxes[: user.count(BBOX)]]
            name = refs[0] if refs else None
            return _pointing(asked, [Decoded(name, boxes[user.count(BBOX) :])])
        return placeholder_groups(text, refs, boxes)

    def caption_entities(self, record: dict[str, Any]) -> tuple[str, list[tuple[int | None, int]]]:
        """The caption of a grounded-caption record with each ``<ref-object>`` filled back in, and where each
        filled phrase sits (``--from records`` rebuilds the sample's text and spans from it)."""
        _, reply = message_texts(record)
        refs, _ = objects_of(record)
        pieces = reply.replace(BBOX, "").split(REF)
        if len(pieces) != len(refs) + 1:
            raise RecordError("bad-record", f"record {record.get('id')!r}: {len(pieces) - 1} {REF} for {len(refs)}")
        text, entities = pieces[0], []
        for ref, piece in zip(refs, pieces[1:], strict=True):
            entities.append((len(text), len(text) + len(ref)))
            text += ref + piece
        return text, entities


def objects_of(record: dict[str, Any]) -> tuple[list[str], list[Box]]:
    """``objects.ref`` and ``objects.bbox`` of a record, checked (``real`` pixel boxes of the one image)."""
    objects = record.get("objects")
    where = f"record {record.get('id')!r}"
    if not isinstance(objects, dict):
        raise RecordError("missing-key", f"{where} needs an 'objects' mapping with 'ref' and 'bbox'")
    refs, boxes = objects.get("ref") or [], objects.get("bbox") or []
    if not (isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
        raise RecordError("wrong-type", f"{where}: objects.ref is not a list of strings: {refs!r}")
    kind = objects.get("bbox_type") or "real"
    if kind != "real":
        raise RecordError("bad-record", f"{where}: objects.bbox_type {kind!r} (this tool writes and reads 'real')")
    if any(i != 0 for i in objects.get("image_id") or []):
        raise RecordError("bad-record", f"{where}: objects.image_id names an image other than the one image")
    if not isinstance(boxes, list):
        raise RecordError("wrong-type", f"{where}: objects.bbox is not a list: {boxes!r}")
    out: list[Box] = []
    for box in boxes:
        ok = isinstance(box, list) and len(box) == 4
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        if not ok:
            raise RecordError("bad-box", f"{where}: objects.bbox entry {box!r} is not four finite numbers", box)
        if box[0] > box[2] or box[1] > box[3]:
            raise RecordError("bad-box", f"{where}: box {box} has its corners the wrong way round", box)
        out.append([float(v) for v in box])
    return refs, out


def placeholder_groups(text: str, refs: list[str], boxes: list[Box]) -> list[Decoded]:
    """Each ``<ref-object>`` with the ``<bbox>``es after it, in text order (boxes before any ref: phrase None)."""
    out: list[Decoded] = []
    current: Decoded | None = None
    r = b = 0
    for match in re.finditer(re.escape(REF) + "|" + re.escape(BBOX), text):
        if match.group(0) == REF:
            current = Decoded(refs[r], [])
            out.append(current)
            r += 1
            continue
        if current is None:
            current = Decoded(None, [])
            out.append(current)
        current.boxes.append(boxes[b])
        b += 1
    return out
