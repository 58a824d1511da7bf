"""CogVLM grounding models: ``[[x1,y1,x2,y2]]`` per-mille boxes in plain text (CONFORMANCE.md §4).

What upstream says (see the comments at each formula):

* boxes are plain text, no special tokens: ``[[x1,y1,x2,y2]]``, corners in xyxy order, each value the
  coordinate as a fraction of the image side times 1000, zero-padded to three digits, ``000``–``999``
  (THUDM/CogVLM README.md L586–591);
* several boxes for one phrase go in one pair of brackets separated by ``;``: ``[[a,b,c,d;e,f,g,h]]``;
* the live fine-tune loader (THUDM/CogVLM2 ``finetune_demo/peft_lora.py`` L46, L73, L84–85) reads
  ``{"conversations": [{"role": "user", "content": …}, {"role": "assistant", "content": …}]}``, one file
  per image under ``labels_en/``; our record is one such round plus ``id``/``image`` columns (regrouping
  per image is an export layout, not the writer's job).

Decided doubts (CONFORMANCE.md ⚠️):

* C2 grounded captions put no space between a phrase and its ``[[``: shikra's ``phrase<boxes>``
  (``mllm/dataset/single_image_dataset/flickr.py`` L50, CogVLM's grounding data per CogVLM#25) filled by
  CogCoM ``boxes2txt`` → ``get_text_by_box(..., sep="")`` (``cogcom/utils/instr_dataset.py`` L54–55).
  CogVLM's own formatter is unreleased; its parser accepts both.
* C4 far edges stay continuous (our canonical boxes); shikra's inclusive ``xmax - 1`` would move them in
  by one more pixel for Flickr30K only.
* C5 ``"What is in the region {boxes}?"`` is FORMATS.md's phrasing, not CogVLM's (the YAML says so).

Pointing (Visual7W) has no published CogVLM prompt: the user turn is the question plus the candidate
boxes in a random (seeded) order, and the answer is the chosen box.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .. import boxes as B
from ..errors import RecordError
from ..schema import Box, Sample
from .base import ConversationOptions, Decoded, RecordRandom, Writer, conversation_turns, record_size
from .convention import Convention, Conversation, Spelling, Tagging

# Encoding: THUDM/CogVLM README.md L588-591 (relative coordinate x 1000, zero-padded to three digits, xyxy).
# CogVLM ships only a decoder; the one released encoder is THUDM/CogCoM cogcom/utils/grounding_parser.py
# refine_box L23-28, labelled "# using CogVLM transformation" (cogcom/utils/com_dataset.py L233):
#   box = [min(box[0], new_width-1), ...]           pixels clamped to size - 1 first   (pre_clamp)
#   box = [box[0]/new_width, ...]; math.floor(x*1000)   truncation, v / size * 1000
#   if any value >= 1000: min(b, 999)                 (max_index)
# so a box touching the right/bottom border gets floor((size-1)/size*1000): 996 on a 333-px side, 998 on
# 500 or 640 px; the gap to the border is one pixel.  Zero padding: grounding_parser.py L32 f"{box[0]:03d}".
# THUDM/CogVLM#165 (maintainer): values run from 000 to 999.
# Decoding: THUDM/CogVLM utils/utils/grounding_parser.py boxstr_to_boxes reads int(v) / 1000 * size; our
# Quantizer returns the centre of the truncated cell instead, half a step closer on average.
QUANTIZER = B.Quantizer(scale=1000, rounding="floor", max_index=999, pre_clamp=True)

COGVLM = Convention(
    grid=QUANTIZER,
    # CogCoM grounding_parser.py L32 f"{box[0]:03d},…" and L34 "{}[[{}]]".format(sep, ";".join(strs));
    # CogVLM#25 (maintainer): "[[coord_1;coord_2]]".  CogCoM shuffles the boxes; we keep the region's order.
    spelling=Spelling(box=(0, ",", 1, ",", 2, ",", 3), pad=3, joiner=";", group=("[[", "]]")),
    tagging=Tagging(),  # C2: "the red car[[156,104,468,812]]" (shikra phrase<boxes> + boxes2txt sep="")
    # CogVLM2 finetune_demo/peft_lora.py L84-85: label_data["conversations"][round * 2]["content"]
    layout=Conversation(keys=("role", "content")),
    placeholders=(("rec", "phrase"), ("reg", "boxes")),
    answers=(("rec", "{boxes}"), ("reg", "{phrase}"), ("grounded-caption", "{caption}")),
    reserved=("[[", "]]"),
)

GROUP = re.compile(r"\[\[([^\[\]]*)\]\]")
BOX = re.compile(r"\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*")
#: format hints that CogVLM's own prompts spell in brackets (utils/utils/template.py caption_with_box)
FORMAT_HINTS = frozenset({"x0,y0,x1,y1", "x1,y1,x2,y2", "xmin,ymin,xmax,ymax"})


class CogVlmWriter(Writer):
    """CogVLM grounding conversations: one user turn, one assistant turn per record."""

    name = "cogvlm"
    description = "CogVLM grounding: [[x1,y1,x2,y2]] per-mille boxes (000-999) in user/assistant conversations"
    tasks = ("rec", "reg", "grounded-caption", "pointing")
    template_name = "cogvlm"
    convention = COGVLM
    Options = ConversationOptions  # --layout llamafactory|ms-swift
    pointing_placeholders = ("question", "boxes")

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, str]:
        """The question and the candidate boxes in a seeded order (the answer is not always first) → its box."""
        question = self.check_markup(sample.text, sample, self._markup)
        answers = [r for r in sample.regions if r.role == "answer" and r.boxes]
        if len(answers) != 1:
            raise RecordError(
                "render-failed", f"sample {sample.id}: pointing needs one answer region, has {len(answers)}"
            )
        candidates = [r for r in sample.regions if r.role in ("answer", "choice") and r.boxes]
        rng.shuffle(candidates)
        listed = ", ".join(self.spell(sample, r.boxes) for r in candidates)
        return {
            "prompt": self.prompt("pointing", rng, question=question, boxes=listed),
            "answer": self.spell(sample, answers[0].boxes),
        }

    # --- parsing -------------------------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        width, height = record_size(record)
        user, assistant = conversation_turns(record, "role", "content")
        task = record.get("task")
        if task == "rec":
            groups = box_groups(assistant, width, height)
            if len(groups) != 1:
                raise RecordError("bad-box", f"REC answer {assistant!r} holds {len(groups)} box groups (expected 1)")
            return [Decoded(self._phrase(user), groups[0][1])]
        if task == "reg":
            groups = box_groups(user, width, height)
            if len(groups) != 1:
                raise RecordError("bad-box", f"REG question {user!r} holds {len(groups)} box groups (expected 1)")
            return [Decoded(assistant, groups[0][1])]
        if task == "grounded-caption":
            return [Decoded(None, boxes) for _, boxes in box_groups(assistant, width, height)]
        if task == "pointing":
            answer = box_groups(assistant, width, height)
            if len(answer) != 1:
                raise RecordError("bad-box", f"pointing answer {assistant!r} holds {len(answer)} box groups")
            choices = box_groups(user, width, height)
            spelled = [text for text, _ in choices]
            if answer[0][0] in spelled:  # the candidates list the answer too; the rest are the choices
                del choices[spelled.index(answer[0][0])]
            return [Decoded(None, answer[0][1], "answer")] + [Decoded(None, b, "choice") for _, b in choices]
        raise RecordError("bad-record", f"record {record.get('id')!r} has unknown task {task!r}")

    def _phrase(self, user: str) -> str | None:
        """The phrase a REC question was made from: the most specific ``rec`` template that fits it."""
        assert self.templates is not None
        best: tuple[int, str] | None = None
        for pool in self.templates.table.get("rec", {}).values():
            for template in pool:
                head, sep, tail = template.partition("{phrase}")
                fixed = len(head) + len(tail)
                fits = sep and len(user) > fixed and user.startswith(head) and user.endswith(tail)
                if fits and (best is None or fixed > best[0]):
                    best = (fixed, user[len(head) : len(user) - len(tail)])
        return best[1] if best else None


# --- box spelling ------------------------------------------------------------------------------------


def spell(boxes: Sequence[Box], width: float, height: float) -> str:
    """Boxes of one phrase → ``[[x1,y1,x2,y2;x1,y1,x2,y2]]`` (three-digit per-mille values)."""
    return CogVlmWriter().spell_boxes(boxes, width, height)


def box_groups(text: str, width: float, height: float) -> list[tuple[str, list[Box]]]:
    """Every ``[[…]]`` group in ``text`` (format hints skipped) → (its spelling, its pixel boxes)."""
    matches = list(GROUP.finditer(text))
    if text.count("[[") != len(matches) or text.count("]]") != len(matches):
        raise RecordError("bad-box", f"malformed or unbalanced [[ ]] in {text!r}", text)
    groups = []
    for match in matches:
        body = match.group(1)
        if body.replace(" ", "") in FORMAT_HINTS:
            continue
        boxes = []
        for part in body.split(";"):
            found = BOX.fullmatch(part)
            if found is None:
                raise RecordError("bad-box", f"box {part!r} in {text!r} is not four integers 000..999", text)
            q = [int(v) for v in found.groups()]
            if not all(QUANTIZER.in_range(v) for v in q):
                raise RecordError("bad-box", f"box {part!r} has a value outside 000..999", text)
            boxes.append(QUANTIZER.decode_box(q, width, height))
        groups.append((match.group(0), boxes))
    return groups
