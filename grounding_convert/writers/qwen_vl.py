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
from typing import Any

from .. import boxes
from ..errors import RecordError
from ..schema import Box, Sample
from .base import (
    ConversationOptions,
    Decoded,
    RecordRandom,
    Writer,
    conversation_turns,
    pointing_candidates,
    record_size,
)
from .convention import Convention, Conversation, Spelling, Tagging

# int(v / size * 1000), clamped to 999: README.md L968 "[0, 1000)" + tokenization_qwen.py "%d" (truncation).
QUANTIZER = boxes.Quantizer(scale=1000, rounding="floor", max_index=999)

# Tags the tokenizer treats specially; source text containing them could not be parsed back.
SPECIAL_TAGS = ("<img>", "</img>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>")

QWEN_VL = Convention(
    grid=QUANTIZER,
    # tokenization_qwen.py from_list_format: box_start_tag + '(%d,%d),(%d,%d)' % box + box_end_tag; several
    # boxes of one phrase: one <box> after another (TUTORIAL.md L248)
    spelling=Spelling(box=("<box>(", 0, ",", 1, "),(", 2, ",", 3, ")</box>")),
    tagging=Tagging(open="<ref>", close="</ref>", space_inside=True),  # README.md L752, TUTORIAL.md L248
    layout=Conversation(keys=("from", "value"), head="Picture 1: <img>{image}</img>\n"),  # README.md L912-947
    placeholders=(("rec", "phrase"), ("reg", "boxes")),
    answers=(("rec", "<ref>{phrase}</ref>{boxes}"), ("reg", "{phrase}"), ("grounded-caption", "{caption}")),
    reserved=SPECIAL_TAGS,
    require_text=False,
    max_image_bytes=256,  # tokenization_qwen.py: IMG_TOKEN_SPAN = 256 (UTF-8 bytes inside <img></img>)
)

TAG = re.compile(r"<ref>(.*?)</ref>|<box>(.*?)</box>", re.S)
IMAGE_PREFIX = re.compile(r"\APicture 1: <img>(.*?)</img>\n", re.S)
BOX_BODY = re.compile(r"\(([0-9]+),([0-9]+)\),\(([0-9]+),([0-9]+)\)")


def box_tokens(box: Box, width: int, height: int) -> str:
    """One box as ``<box>(x1,y1),(x2,y2)</box>`` (per-mille, truncated, top-left then bottom-right)."""
    return QwenVlWriter().spell_boxes([box], width, height)


class QwenVlWriter(Writer):
    """Qwen-VL / Qwen-VL-Chat fine-tuning conversations."""

    name = "qwen-vl"
    description = "Qwen-VL fine-tuning conversations: <ref>phrase</ref><box>(x1,y1),(x2,y2)</box>, 0-999"
    tasks = ("rec", "reg", "grounded-caption", "pointing")
    template_name = "qwen-vl"
    convention = QWEN_VL
    Options = ConversationOptions  # --layout llamafactory|ms-swift

    def render_pointing(self, sample: Sample, rng: RecordRandom) -> dict[str, str]:
        """The question, then every candidate's ``<box>`` (region order, ``", "``, no names that would give the
        answer away) → ``<ref>{answer name}</ref><box>…</box>`` (just the box when the name is empty)."""
        candidates, answer = pointing_candidates(sample)
        spelled = ", ".join(self.spell(sample, r.boxes) for r in candidates)
        question = self.check_markup(sample.text, sample, self._markup)
        prompt = self.prompt("pointing", rng, question=question, candidates=spelled)
        name = self.check_markup(answer.phrase, sample, self._markup)
        return {"prompt": prompt, "answer": (f"<ref>{name}</ref>" if name else "") + self.spell(sample, answer.boxes)}

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
