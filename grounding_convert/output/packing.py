"""Multi-turn packing (``--turns N``): several records of one image and task in one conversation.

Official fine-tuning data of conversation models is multi-turn: QwenLM/Qwen-VL README.md L912-947 shows
one conversation asking two questions about one picture, with ``Picture 1: <img>…</img>`` in the first
user turn only; THUDM/CogVLM2 ``finetune_demo/peft_lora.py`` L84-85 reads rounds
``conversations[2 * i]["content"]`` / ``[2 * i + 1]``.  Packing also encodes each image once per
conversation instead of once per record.

Rules (deterministic: they depend on the partition's records only, never on workers or time):

* records are grouped by (split, image, image size, task) within one partition, in record order; a group
  becomes a conversation as soon as it holds N records, the rest at the end of the partition, so samples
  of one image (five Flickr30K captions) share conversations even though each is its own sample;
* the first user turn keeps the writer's image placeholder, later user turns lose it
  (:class:`~grounding_convert.writers.base.ConversationLayout`);
* the conversation's ``id`` is ``{sample_id}/{task}/turns-{k}``: the sample of its first record, and
  ``k`` counting the conversations that start with that sample's records (0, 1, …); ``sample_id`` is that
  sample; ``turn_ids`` lists the ids of the records it holds, so :func:`unpack` gives them back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ..errors import RecordError, UsageError
from ..writers.base import ConversationLayout, Writer

TURN_IDS = "turn_ids"


def check_turns(turns: int, writer: type[Writer]) -> None:
    if not isinstance(turns, int) or turns < 1:
        raise UsageError(f"--turns must be a whole number of at least 1, not {turns!r}")
    if turns > 1 and writer.conversation is None:
        raise UsageError(
            f"--turns packs conversations; writer {writer.name!r} does not write them (qwen-vl and cogvlm do)"
        )


def packed_schema(schema: pa.Schema) -> pa.Schema:
    """The writer's schema plus ``turn_ids`` (the ids of the packed records, in turn order)."""
    return schema.append(pa.field(TURN_IDS, pa.list_(pa.string())))


class Packer:
    """Collects one partition's records and hands each finished conversation to ``emit(split, record)``."""

    def __init__(self, layout: ConversationLayout, turns: int, emit: Callable[[str, dict[str, Any]], None]):
        self.layout, self.turns, self.emit = layout, turns, emit
        self.open: dict[tuple[Any, ...], tuple[str, list[dict[str, Any]]]] = {}
        self.started: Counter[tuple[str, str]] = Counter()
        self.packed = 0

    def add(self, split: str, records: list[dict[str, Any]]) -> None:
        for record in records:
            key = (split, record["image"], record["width"], record["height"], record["task"])
            entry = self.open.get(key)
            if entry is None:
                entry = self.open[key] = (split, [])
            entry[1].append(record)
            if len(entry[1]) >= self.turns:
                del self.open[key]
                self.emit(split, self.pack(entry[1]))

    def close(self) -> None:
        """The partly filled conversations, in the order their first records came."""
        entries, self.open = list(self.open.values()), {}
        for split, records in entries:
            self.emit(split, self.pack(records))

    def pack(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        first = records[0]
        sample, task = first["sample_id"], first["task"]
        k = self.started[sample, task]
        self.started[sample, task] += 1
        self.packed += 1
        text_key = self.layout.text_key
        turns = list(first["conversations"])
        for record in records[1:]:
            user, *rest = record["conversations"]
            turns.append({**user, text_key: self._without_head(user[text_key], record)})
            turns.extend(rest)
        packed = dict(first)
        packed["id"] = f"{sample}/{task}/turns-{k}"
        packed["conversations"] = turns
        packed[TURN_IDS] = [record["id"] for record in records]
        return packed

    def _without_head(self, text: str, record: dict[str, Any]) -> str:
        head = image_head(self.layout, record)
        if head and not text.startswith(head):
            raise RecordError("render-failed", f"record {record['id']!r}: user turn does not start with {head!r}")
        return text[len(head) :]


def image_head(layout: ConversationLayout, record: dict[str, Any]) -> str:
    return layout.image_head.replace("{image}", str(record["image"])) if layout.image_head else ""


def unpack(record: dict[str, Any], layout: ConversationLayout) -> list[dict[str, Any]]:
    """The two-turn records a packed conversation was made of (image placeholder restored), for validate
    and preview."""
    ids, turns = record.get(TURN_IDS), record.get("conversations")
    if not isinstance(ids, list) or not isinstance(turns, list) or len(turns) != 2 * len(ids) or not ids:
        raise RecordError("bad-record", f"record {record.get('id')!r}: {TURN_IDS} does not match its turns")
    head, text_key, task = image_head(layout, record), layout.text_key, str(record.get("task"))
    out = []
    for i, record_id in enumerate(ids):
        user, reply = turns[2 * i], turns[2 * i + 1]
        if i and head and isinstance(user, dict) and isinstance(user.get(text_key), str):
            user = {**user, text_key: head + user[text_key]}
        one = {key: value for key, value in record.items() if key != TURN_IDS}
        one["id"] = record_id
        one["sample_id"] = sample_of(str(record_id), task)
        one["conversations"] = [user, reply]
        out.append(one)
    return out


def sample_of(record_id: str, task: str) -> str:
    """``{sample}/{task}/{n}`` or ``{sample}/{task}`` → ``{sample}``."""
    cut = record_id.rfind(f"/{task}")
    return record_id[:cut] if cut > 0 else record_id
