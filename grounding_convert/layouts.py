"""Trainer layouts: how a conversation writer's records are packed for LLaMA-Factory or ms-swift (DESIGN §7).

A layout knows nothing of boxes: it takes the (prompt, reply) a conversation writer produced and re-packs
them as the trainer's own record, keeping the common columns (``id``, ``task``, ``image``, ``width``,
``height``, and a writer's extra columns such as Qwen2.5-VL's ``resized_width``).  ``parse`` undoes the
packing and hands the writer's own record back to the writer, so ``validate`` still decodes every box.

* ``llamafactory``: sharegpt with OpenAI-style tags, hiyouga/LLaMA-Factory ``ff6d4d12e`` ``data/README.md``
  L310–346: ``{"messages": [{"role": "user", "content": "<image>…"}, {"role": "assistant", …}], "images":
  [path]}``; one ``<image>`` per image (the loader refuses a mismatch), and a ready ``dataset_info.json``
  beside the shards (``formatting: sharegpt``, ``columns``, ``tags``) naming each shard.
* ``ms-swift``: modelscope/ms-swift ``3602360a5`` ``docs/source_en/Customization/Custom-dataset.md``: the same
  ``messages`` + ``images``, read by ``swift sft --dataset <file>``.
* ``ms-swift-objects``: ms-swift's generic grounding format (``<ref-object>``/``<bbox>`` placeholders and an
  ``objects`` column of pixel boxes that ms-swift spells for the model): not a re-packing of the writer's text
  but records of their own, :mod:`grounding_convert.swift_objects`.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .errors import RecordError, UsageError
from .writers import batch
from .writers.base import COMMON_FIELDS, Decoded, Writer
from .writers.convention import Conversation

LAYOUTS = ("native", "llamafactory", "ms-swift", "ms-swift-objects")
IMAGE_TOKEN = "<image>"
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


class LaidOut:
    """A conversation writer whose records are re-packed by a trainer layout (everything else delegated)."""

    conversation = None  # --turns packs native conversations only (make_job refuses --turns with --layout)

    def __init__(self, writer: Writer, layout: str):
        if layout not in ("llamafactory", "ms-swift"):
            raise UsageError(f"unknown --layout {layout!r} (layouts: {', '.join(LAYOUTS)})")
        if writer.conversation is None:
            raise UsageError(f"--layout {layout} packs conversation records; writer {writer.name!r} has none")
        self.writer, self.layout = writer, layout

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)

    # the writer's columns: the common ones, the layout's, then the writer's extras (after "conversations")
    def extra_fields(self) -> list[tuple[str, pa.DataType]]:
        return [(n, t) for n, t in self.writer.model_fields() if n != "conversations"]

    def schema(self) -> pa.Schema:
        return pa.schema(
            COMMON_FIELDS + [("messages", MESSAGES), ("images", pa.list_(pa.string()))] + self.extra_fields()
        )

    # --- the columnar path: the writer's own, with the messages as the conversation ----------------------

    @cached_property
    def _messages_writer(self) -> Writer:
        """The writer with ``messages`` as its conversation: role/content keys and ``<image>`` as the head, so
        its columnar path (writers/batch.py) builds this layout's messages column itself."""
        proxy = copy.copy(self.writer)
        proxy.convention = replace(
            self.writer.convention, layout=Conversation(("role", "content"), ("user", "assistant"), IMAGE_TOKEN)
        )
        return proxy

    def block_ready(self, tasks: Any) -> bool:
        return False  # a reader's blocks come as samples (render_batch re-packs the writer's records)

    def batch_ready(self, tasks: Any) -> bool:
        """The writer's columnar path, unless a phrasing holds ``<image>`` (every such record is refused, per
        record, with the reason)."""
        if not self.writer.batch_ready(tasks):
            return False
        convention = self.writer.convention
        for task in tasks:
            if task not in batch.COLUMNAR_TASKS:
                continue
            pieces = [p for pair in batch.template_pairs(self.writer, task) for p in pair]
            pieces += [p for p in convention.answer(task) if isinstance(p, str)]
            if any(IMAGE_TOKEN in piece for piece in pieces):
                return False
        return True

    def batchable(self, sample: Any) -> bool:
        """The writer's batchable samples whose text and phrases hold no ``<image>`` (per record: refused)."""
        if not self.writer.batchable(sample) or IMAGE_TOKEN in sample.text:
            return False
        return not any(IMAGE_TOKEN in region.phrase for region in sample.regions)

    def render_batch(self, samples: Any, tasks: Any, seed: int) -> Any:
        """The writer's columnar records with the messages as the conversation, plus ``images``."""
        result = self._messages_writer.render_batch(samples, tasks, seed)
        if isinstance(result, list):
            return result
        rendered = result.batch
        stray = self._stray_image_tokens(rendered.column("conversations"), result.counts)
        if stray:
            return stray
        image = rendered.column("image")
        images = pa.ListArray.from_arrays(pa.array(np.arange(len(image) + 1, dtype=np.int32)), image)
        arrays = [rendered.column(name) for name, _ in COMMON_FIELDS]
        arrays += [rendered.column("conversations"), images]
        arrays += [rendered.column(name) for name, _ in self.extra_fields()]
        return replace(result, batch=pa.RecordBatch.from_arrays(arrays, schema=self.schema()))

    @staticmethod
    def _stray_image_tokens(messages: pa.Array, counts: np.ndarray) -> list[int]:
        """Samples with a record whose messages hold ``<image>`` anywhere but at the head of the user turn
        (a phrase and a phrasing meeting to spell it): the per-record path refuses them, with the reason."""
        hits = pc.count_substring(messages.flatten().field("content"), IMAGE_TOKEN).to_numpy(zero_copy_only=False)
        expected = np.tile(np.array([1, 0]), len(messages))
        if len(hits) == len(expected) and (hits == expected).all():
            return []
        per_record = np.repeat(np.arange(counts.shape[1]), counts.sum(axis=0))
        offsets = messages.offsets.to_numpy() - messages.offsets[0].as_py()
        bad = [r for r in range(len(messages)) if hits[offsets[r] : offsets[r + 1]].tolist() != [1, 0]]
        return sorted({int(per_record[r]) for r in bad})

    def render(self, sample: Any, task: str, seed: int) -> list[dict[str, Any]]:
        return [self.pack(r) for r in self.writer.render(sample, task, seed)]

    def render_tasks(self, sample: Any, tasks: Any, seed: int) -> list[tuple[str, list[dict[str, Any]]]]:
        return [
            (task, [self.pack(r) for r in records]) for task, records in self.writer.render_tasks(sample, tasks, seed)
        ]

    def pack(self, record: dict[str, Any]) -> dict[str, Any]:
        prompt, reply = self.writer.turns(record)
        if IMAGE_TOKEN in prompt or IMAGE_TOKEN in reply:
            raise RecordError(
                "render-failed",
                f"record {record['id']!r}: text holds {IMAGE_TOKEN!r}, which the trainer counts as an image",
            )
        out = {name: record[name] for name, _ in COMMON_FIELDS}
        out["messages"] = [{"role": "user", "content": IMAGE_TOKEN + prompt}, {"role": "assistant", "content": reply}]
        out["images"] = [record["image"]]
        out.update({name: record[name] for name, _ in self.extra_fields()})
        return out

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        return self.writer.parse(self.unpack(record))

    def unpack(self, record: dict[str, Any]) -> dict[str, Any]:
        """The writer's own record back from a packed one (checks the placeholder count on the way)."""
        prompt, reply = message_texts(record)
        native = {k: v for k, v in record.items() if k not in ("messages", "images")}
        return self.writer.native(native, prompt, reply)

    def companion_files(self, shards: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, bytes]:
        files = dict(getattr(self.writer, "companion_files", lambda *_: {})(shards, job))
        if self.layout == "llamafactory":
            files["dataset_info.json"] = orjson.dumps(dataset_info(shards, job), option=orjson.OPT_INDENT_2)
        return files


def dataset_info(shards: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory ``dataset_info.json`` entries, one per shard (``file_name`` relative to this folder).

    Named ``{reader}_{writer}_{split}`` (``_{i}`` when a split has several shards): pass them all to
    ``dataset:`` (README, "Training with it").
    """
    base = f"{job.get('reader', 'grounding')}_{job.get('writer', 'records')}".replace("-", "_").replace(".", "")
    per_split: dict[str, int] = {}
    for shard in shards:
        per_split[shard["split"]] = per_split.get(shard["split"], 0) + 1
    entries, seen = {}, dict.fromkeys(per_split, 0)
    for shard in shards:
        split = shard["split"]
        name = f"{base}_{split}" if per_split[split] == 1 else f"{base}_{split}_{seen[split]}"
        seen[split] += 1
        entries[name] = {
            "file_name": shard["file"],
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        }
    return entries


def message_texts(record: dict[str, Any]) -> tuple[str, str]:
    """(user text after its leading ``<image>``, assistant text) of a two-message, one-image record."""
    messages, images = record.get("messages"), record.get("images")
    if not (isinstance(messages, list) and len(messages) == 2 and isinstance(images, list)):
        raise RecordError("missing-key", f"record {record.get('id')!r} needs two 'messages' and an 'images' list")
    texts = []
    for message, role in zip(messages, ("user", "assistant"), strict=True):
        if not (isinstance(message, dict) and message.get("role") == role and isinstance(message.get("content"), str)):
            raise RecordError(
                "wrong-type", f"record {record.get('id')!r}: expected a {role!r} message, got {message!r}"
            )
        texts.append(message["content"])
    user, reply = texts
    placeholders = user.count(IMAGE_TOKEN) + reply.count(IMAGE_TOKEN)
    if placeholders != len(images) or len(images) != 1 or not user.startswith(IMAGE_TOKEN):
        raise RecordError(
            "bad-record", f"record {record.get('id')!r}: {placeholders} {IMAGE_TOKEN} for {len(images)} image(s)"
        )
    return user[len(IMAGE_TOKEN) :], reply


def laid_out(cls: type[Writer], options: Any, given: Any = ()) -> Writer | LaidOut:
    """The ``cls`` writer with these options, packed by the layout they name (``given``: the option names set
    explicitly; ms-swift-objects refuses the writer's own box options)."""
    layout = getattr(options, "layout", "native")
    if layout == "ms-swift-objects":
        from .swift_objects import SwiftObjects

        return SwiftObjects(cls, options, given)
    writer = cls(options)
    return writer if layout == "native" else LaidOut(writer, layout)
