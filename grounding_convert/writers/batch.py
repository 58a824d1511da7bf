"""The columnar renderer of a :class:`~grounding_convert.writers.convention.Convention`: many samples at once.

The per-record path (:meth:`Writer.render_tasks`) builds a few Python dicts per record and the sink then
takes them apart again; at GRIT scale (six records per row) that is most of a run.  Here the records of a
list of samples are built as Arrow columns from the same convention: boxes are quantized in numpy with the
same IEEE operations (``Quantizer.encode_many``), values, boxes and prompts are joined by Arrow string
kernels, templates are drawn with the same splitmix64 as :class:`~grounding_convert.writers.base.RecordRandom`
(in wrapping uint64 arithmetic).  Only the caption tagging and the phrase normalization run per item in
Python, with the reference functions themselves.

It is an accelerator, never a second definition: nothing here names a model; a writer offers it for
samples it can prove need nothing special (:func:`batchable`); the result must equal the per-record path
byte for byte (``tests/writers/test_batch_render.py`` compares them on random samples for every writer,
``tests/engine/test_batch_path.py`` whole conversions); and a batch holding a sample the per-record path
would refuse (a box that quantizes to nothing, a non-finite box, a phrase empty after normalization) is
answered with those samples' positions, so the pipeline renders them one by one and they get that path's
reject and reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from zlib import crc32

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..boxes import BoxError
from ..output.arrow_json import string_bytes
from ..schema import Sample
from .base import SUFFIX_MULTIPLIER, image_id, image_id_of, ordered_spans, sample_state
from .convention import NORMALIZERS, Columns, Conversation, Field, around, fill, tag_caption

if TYPE_CHECKING:
    from ..readers.base import SampleBlock
    from .base import Writer

COLUMNAR_TASKS = ("rec", "reg", "grounded-caption")


@dataclass
class RenderedBatch:
    """Records of consecutive samples in per-record order, and how many each sample got per task."""

    batch: pa.RecordBatch
    tasks: list[str]  # the columnar tasks, in job order (the records' order within a sample)
    counts: np.ndarray  # int64 (tasks × samples): records of each task for each sample
    boxes: np.ndarray  # every box of the samples (n × 4) and the sample it belongs to: the tally's box areas
    box_sample: np.ndarray

    @property
    def per_sample(self) -> list[dict[str, int]]:
        """Each sample's records per task, tasks without records left out (what render_tasks gives)."""
        return [{t: c for t, c in zip(self.tasks, row, strict=True) if c} for row in self.counts.T.tolist()]


@dataclass
class FlatSamples:
    """The samples' grounded regions and boxes as flat arrays (region order = per-record order), and the
    per-sample values the records need: from :class:`Sample` objects (:meth:`collect`) or from a reader's
    :class:`~grounding_convert.readers.base.SampleBlock` (:meth:`from_block`), the same either way."""

    n: int  # samples
    states: np.ndarray  # uint64 per sample: sample_state(seed, id)
    widths: np.ndarray  # int64 per sample
    heights: np.ndarray
    ids: list[str]
    texts: list[str]
    files: list[str]  # image.file
    image_ids: list[str]  # image_id(): the image's id, else its file's stem
    region_sample: np.ndarray  # int64 per grounded region: which sample
    region_index: list[int]  # position of the region in sample.regions (the record id's number)
    phrases: list[str]
    spans: list[tuple[int, int] | None]  # per grounded region
    region_boxes: np.ndarray  # int32 offsets into boxes, len(regions) + 1
    boxes: np.ndarray  # float64 (n, 4)
    box_sample: np.ndarray  # int64 per box: which sample
    captioned: list[Sequence[int]]  # per sample: the regions a grounded caption tags (ordered_spans), flat indices

    @classmethod
    def collect(cls, samples: Sequence[Sample], seed: int, captions: bool = True) -> FlatSamples:
        """One Python pass over the samples: everything after it is array arithmetic."""
        widths, heights, states = [], [], []
        region_sample: list[int] = []
        region_index: list[int] = []
        phrases: list[str] = []
        spans: list[tuple[int, int] | None] = []
        counts: list[int] = []
        coords: list[float] = []
        captioned: list[list[int]] = []
        # bound methods: this loop runs for every region of every sample
        add_sample, add_index, add_phrase, add_count, add_span = (
            region_sample.append,
            region_index.append,
            phrases.append,
            counts.append,
            spans.append,
        )
        add_coords = coords.extend
        for s, sample in enumerate(samples):
            image = sample.image
            widths.append(image.width)
            heights.append(image.height)
            states.append(sample_state(seed, sample.id))
            where: dict[int, int] = {}
            for index, region in enumerate(sample.regions):
                boxes = region.boxes
                if boxes and region.role is None:
                    where[id(region)] = len(phrases)
                    add_sample(s)
                    add_index(index)
                    add_phrase(region.phrase)
                    add_span(region.span)
                    add_count(len(boxes))
                    for box in boxes:
                        add_coords(box)
            captioned.append([where[id(r)] for r in ordered_spans(sample)] if captions else [])
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        return cls(
            len(samples),
            np.array(states, dtype=np.uint64),
            np.array(widths, dtype=np.int64),
            np.array(heights, dtype=np.int64),
            [s.id for s in samples],
            [s.text for s in samples],
            [s.image.file for s in samples],
            [image_id(s) for s in samples],
            np.array(region_sample, dtype=np.int64),
            region_index,
            phrases,
            spans,
            offsets,
            np.array(coords, dtype=np.float64).reshape(-1, 4),
            np.repeat(np.array(region_sample, dtype=np.int64), counts),
            captioned,
        )

    @classmethod
    def from_block(cls, block: SampleBlock, seed: int, captions: bool = True) -> FlatSamples:
        """A reader's block as it is: its regions are in text order, none overlapping, all with boxes, so a
        grounded caption tags them all, in order (what ``ordered_spans`` picks)."""
        n = len(block)
        region_sample = np.asarray(block.region_sample, dtype=np.int64)
        firsts = np.searchsorted(region_sample, np.arange(n + 1)).tolist()
        return cls(
            n,
            np.array([sample_state(seed, i) for i in block.ids], dtype=np.uint64),
            np.asarray(block.widths, dtype=np.int64),
            np.asarray(block.heights, dtype=np.int64),
            block.ids,
            block.texts,
            block.files,
            [image_id_of(i, f) for i, f in zip(block.image_ids, block.files, strict=True)],
            region_sample,
            block.region_positions().tolist(),
            block.phrases,
            list(zip(np.asarray(block.starts).tolist(), np.asarray(block.ends).tolist(), strict=True)),
            np.asarray(block.region_boxes, dtype=np.int32),
            np.asarray(block.boxes, dtype=np.float64).reshape(-1, 4),
            np.repeat(region_sample, np.diff(block.region_boxes)),
            [range(a, b) for a, b in zip(firsts[:-1], firsts[1:], strict=True)] if captions else [[]] * n,
        )


# --- what the columnar path can render -------------------------------------------------------------


def template_pairs(writer: Writer, task: str) -> list[tuple[str, str]] | None:
    """Each phrasing of ``task`` as (text before, text after) its one placeholder; None if one is unusual."""
    name = writer.convention.placeholder(task)
    pairs = [around(pieces, name) for pieces in writer.template_pool(task)]
    return None if any(p is None for p in pairs) else pairs


def ready(writer: Writer, tasks: Sequence[str]) -> bool:
    """Whether every requested task's phrasings have the plain shape the columnar path fills in."""
    if any(t not in COLUMNAR_TASKS and t != "pointing" for t in tasks):  # pointing: QA samples are not batchable
        return False  # detection: rendered per record
    return all(template_pairs(writer, t) is not None for t in tasks if t in COLUMNAR_TASKS)


def batchable(writer: Writer, sample: Sample) -> bool:
    """Plain grounded samples of a usable integer size, with text of the expected types holding none of the
    model's markup; QA samples (pointing) and anything odd take the per-record path (which rejects)."""
    image = sample.image
    w, h = image.width, image.height
    if type(w) is not int or type(h) is not int or w <= 0 or h <= 0:
        return False
    text, file = sample.text, image.file
    if type(text) is not str or type(file) is not str or type(sample.id) is not str:
        return False
    if not plain_text(writer, text, file):
        return False
    for region in sample.regions:
        phrase = region.phrase
        if region.role is not None or type(phrase) is not str or not plain_phrase(writer, phrase):
            return False
    return True


def block_batchable(writer: Writer, block: SampleBlock) -> bool:
    """:func:`batchable` for every sample of a reader's block (whose sizes, types and roles are plain by
    construction): its texts, image paths and phrases (phrases that are the texts, as Visual Genome's, are
    not searched twice)."""
    if not all(plain_text(writer, text, file) for text, file in zip(block.texts, block.files, strict=True)):
        return False
    if block.phrases is block.texts:
        return not writer.convention.require_text or all(block.phrases)
    return all(plain_phrase(writer, phrase) for phrase in block.phrases)


def plain_text(writer: Writer, text: str, file: str) -> bool:
    """A sample's text and image path hold none of the model's markup (the path only where the layout shows
    it), and the path fits the model's limit."""
    convention = writer.convention
    markup, phrase_markup = writer._markup, writer._phrase_markup
    if phrase_markup is not None and phrase_markup.search(text):
        return False
    layout = convention.layout
    if isinstance(layout, Conversation) and "{image}" in layout.head:
        path = writer.image_file_path(file)
        if markup is not None and markup.search(path):
            return False
        limit = convention.max_image_bytes
        if limit is not None and len(path) * 4 > limit and len(path.encode("utf-8")) > limit:
            return False
    return True


def plain_phrase(writer: Writer, phrase: str) -> bool:
    """A region's phrase holds none of the model's markup, and is not empty where the model needs text."""
    phrase_markup = writer._phrase_markup
    if phrase_markup is not None and phrase_markup.search(phrase):
        return False
    return not (writer.convention.require_text and not phrase)


# --- the renderer ----------------------------------------------------------------------------------------


def render(writer: Writer, samples: Sequence[Sample], tasks: Sequence[str], seed: int) -> RenderedBatch | list[int]:
    """Records of :func:`batchable` samples as one record batch, in :meth:`Writer.render_tasks` order; or the
    positions of the samples the per-record path refuses."""
    return render_flat(writer, FlatSamples.collect(samples, seed, "grounded-caption" in tasks), tasks)


def render_flat(writer: Writer, flat: FlatSamples, tasks: Sequence[str]) -> RenderedBatch | list[int]:
    """:func:`render` of samples already flat (from objects, or a reader's block)."""
    convention = writer.convention
    wanted = [t for t in tasks if t in COLUMNAR_TASKS]
    regional = "rec" in wanted or "reg" in wanted
    captioned = flat.captioned if "grounded-caption" in wanted else [[] for _ in range(flat.n)]
    refused: set[int] = set()
    phrases = pa.array(flat.phrases, pa.string())
    if regional and convention.normalize != "none":
        phrases = normalized(convention.normalize, phrases)
    if regional and convention.require_text and len(phrases):
        empty = np.asarray(pc.equal(pc.binary_length(phrases), 0).to_numpy(zero_copy_only=False))
        refused.update(int(s) for s in np.unique(flat.region_sample[empty]))
    if regional:
        spelled = np.ones(len(flat.phrases), dtype=bool)
    else:
        spelled = np.zeros(len(flat.phrases), dtype=bool)
        for regions in captioned:
            spelled[regions] = True
    tokens, box_tokens = spell_regions(writer, flat, spelled, refused)
    sized = size_columns(writer, flat, refused, spelled)
    spans = flat.spans
    for s, regions in enumerate(captioned):
        length = len(flat.texts[s])
        if any(not (0 <= spans[k][0] < spans[k][1] <= length) for k in regions):
            refused.add(s)  # bad-span, on the per-record path
    if refused:
        return sorted(refused)
    common = {
        "sample_id": pa.array(flat.ids, pa.string()),
        "image": pa.array([writer.image_file_path(f) for f in flat.files], pa.string()),
        "width": pa.array(flat.widths, pa.int64()),
        "height": pa.array(flat.heights, pa.int64()),
    }
    if writer.uses("image_id"):
        common["image_id"] = pa.array(flat.image_ids, pa.string())
    common.update(sized)
    blocks = Blocks(flat.n)
    for task in wanted:
        if task == "grounded-caption":
            counts, columns = caption_block(writer, flat, captioned, common, tokens, box_tokens)
        else:
            counts, columns = region_block(writer, task, flat, common, tokens, box_tokens, phrases)
        columns["task"] = pa.array([task] * len(columns["sample_id"]), pa.string())
        blocks.add(task, counts, columns)
    columns, counts = blocks.assemble()
    if not columns:
        empty = pa.RecordBatch.from_pylist([], schema=writer.schema())
        return RenderedBatch(empty, blocks.tasks, counts, flat.boxes, flat.box_sample)
    arrays = [columns[name] for name in ("id", "sample_id", "task", "image", "width", "height")]
    arrays += layout_columns(writer, columns)
    arrays += [columns[name] for name in sized]
    records = pa.RecordBatch.from_arrays(arrays, schema=writer.schema())
    return RenderedBatch(records, blocks.tasks, counts, flat.boxes, flat.box_sample)


def size_columns(writer: Writer, flat: FlatSamples, refused: set[int], spelled: np.ndarray) -> dict[str, pa.Array]:
    """The grid's size columns per sample (a resized-pixel grid's resized width and height); a size it
    refuses refuses the sample, if it has records (a region the tasks spell: ``spelled``)."""
    grid = writer.convention.grid
    if not grid.columns:
        return {}
    known: dict[tuple[int, int], tuple[tuple[str, int], ...] | None] = {}
    rows = []
    recorded = set(flat.region_sample[spelled].tolist())  # a sample without records has nothing to refuse
    for s, size in enumerate(zip(flat.widths.tolist(), flat.heights.tolist(), strict=True)):
        if s not in recorded:
            rows.append([0] * len(grid.columns))
            continue
        if size not in known:
            try:
                known[size] = grid.size_columns(*size)
            except BoxError:
                known[size] = None
        if known[size] is None:
            refused.add(s)
            rows.append([0] * len(grid.columns))
        else:
            rows.append([v for _, v in known[size]])
    table = np.array(rows, dtype=np.int64).reshape(-1, len(grid.columns))
    return {name: pa.array(table[:, i], pa.int64()) for i, name in enumerate(grid.columns)}


def spell_regions(
    writer: Writer, flat: FlatSamples, spelled: np.ndarray, refused: set[int]
) -> tuple[pa.Array, pa.Array | None]:
    """Each region's boxes in the convention's spelling (one string per region), and each box's alone (a
    one-box group; None under ``union_boxes``); samples whose spelled boxes the per-record path refuses (not
    finite, empty, overflowing, collapsed) are added to ``refused``."""
    convention = writer.convention
    boxes, box_sample, offsets = flat.boxes, flat.box_sample, flat.region_boxes
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        good = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if convention.union_boxes and len(boxes):  # one box per region: the union (only of finite boxes)
        starts = offsets[:-1]
        region_finite = np.logical_and.reduceat(finite, starts) if len(starts) else finite[:0]
        safe = np.where(finite[:, None], boxes, 0.0)
        boxes = np.concatenate(
            [np.minimum.reduceat(safe[:, :2], starts), np.maximum.reduceat(safe[:, 2:], starts)], axis=1
        )
        with np.errstate(invalid="ignore"):
            good = region_finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        box_sample = flat.region_sample
        offsets = np.arange(len(starts) + 1, dtype=np.int32)
        box_spelled = spelled
    else:
        box_spelled = np.repeat(spelled, np.diff(offsets))
    grid = convention.grid
    safe = np.where(np.isfinite(boxes), boxes, 0.0)
    q, ok = grid.encode_many(safe, flat.widths[box_sample], flat.heights[box_sample])
    bad = (~good | ~ok | grid.collapsed(q)) & box_spelled
    if bad.any():
        refused.update(int(s) for s in np.unique(box_sample[bad]))
        return pa.nulls(len(spelled), pa.string()), None
    spelling = convention.spelling
    values = [as_strings(q[:, i]) for i in range(q.shape[1])]
    if spelling.pad:
        values = [pc.utf8_lpad(v, width=spelling.pad, padding="0") for v in values]
    one = join(*[piece if isinstance(piece, str) else values[piece] for piece in spelling.box])
    alone = None if convention.union_boxes else one
    if len(one) != len(spelled):  # several boxes in some region
        one = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), one), spelling.joiner)
    if spelling.group != ("", ""):
        one = join(spelling.group[0], one, spelling.group[1])
        alone = join(spelling.group[0], alone, spelling.group[1]) if alone is not None else None
    return one, alone


def objects_column(
    writer: Writer, labels: list[str], tokens: pa.Array, box_tokens: pa.Array, offsets: np.ndarray
) -> pa.Array:
    """``{objects}`` of each region under its label: ``Writer.objects`` as columns."""
    listing = writer.convention.listing
    if listing.json_labels:
        labels = [orjson.dumps(label).decode() for label in labels]
    label = pa.array(labels, pa.string())
    item = listing.compiled()
    if listing.per_box:
        owner = pa.array(np.repeat(np.arange(len(labels)), np.diff(offsets)))
        items = fill_columns(item, {"label": label.take(owner), "boxes": box_tokens}, len(box_tokens))
        items = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items), listing.joiner)
    else:
        items = fill_columns(item, {"label": label, "boxes": tokens}, len(labels))
    return join(listing.group[0], items, listing.group[1]) if listing.group != ("", "") else items


def region_block(
    writer: Writer,
    task: str,
    flat: FlatSamples,
    common: dict[str, pa.Array],
    tokens: pa.Array,
    box_tokens: pa.Array | None,
    phrase: pa.Array,
) -> tuple[list[int], dict[str, pa.Array]]:
    """REC or REG records, one per grounded region: ``Writer.region_values`` as columns."""
    take = pa.array(flat.region_sample)
    columns = {name: column.take(take) for name, column in common.items()}
    numbers = pa.array([str(i) for i in flat.region_index], pa.string())
    columns["id"] = join(columns["sample_id"], f"/{task}/", numbers)
    crcs = suffix_crcs(task, flat.region_index)
    before, after = draw_pairs(template_pairs(writer, task), flat.states[flat.region_sample], crcs)
    slots = {"phrase": phrase, "boxes": tokens}
    if writer.convention.listing is not None:
        slots["objects"] = objects_column(writer, phrase.to_pylist(), tokens, box_tokens, flat.region_boxes)
    columns["prompt"] = join(before, slots[{"rec": "phrase", "reg": "boxes"}[task]], after)
    columns["answer"] = fill_columns(writer.convention.answer(task), slots, len(phrase))
    columns["text"] = pa.array(flat.phrases, pa.string())
    if writer.uses("region_coord"):
        columns["region_coord"] = region_coords(flat)
    counts = np.bincount(flat.region_sample, minlength=flat.n).tolist()
    return counts, columns


def caption_block(
    writer: Writer,
    flat: FlatSamples,
    captioned: list[list[int]],
    common: dict[str, pa.Array],
    tokens: pa.Array,
    box_tokens: pa.Array | None,
) -> tuple[list[int], dict[str, pa.Array]]:
    """One grounded caption per sample that has a span to tag: ``Writer.caption_values`` as columns."""
    task = "grounded-caption"
    convention = writer.convention
    rows = [s for s, regions in enumerate(captioned) if regions]
    take = pa.array(rows, pa.int64())
    columns = {name: column.take(take) for name, column in common.items()}
    columns["id"] = join(columns["sample_id"], f"/{task}")
    states = flat.states[np.array(rows, dtype=np.int64)]
    before, after = draw_pairs(template_pairs(writer, task), states, suffix_crcs(task, None))
    spelled = tokens.to_pylist()
    texts = pa.array([flat.texts[s] for s in rows], pa.string())
    spans = flat.spans
    captions = [
        tag_caption(flat.texts[s], convention.tagging, [(spans[k], spelled[k]) for k in captioned[s]]) for s in rows
    ]
    caption = pa.array(captions, pa.string())
    if convention.normalize_caption:
        caption = normalized(convention.normalize, caption)
    values = {"caption": caption}
    slots = {"caption": texts}
    if convention.listing is not None:
        values["objects"], slots["phrases"] = listed_captions(writer, flat, rows, captioned, spelled, box_tokens)
    name = convention.placeholder(task)
    columns["prompt"] = join(before, slots[name], after) if name else before
    columns["answer"] = fill_columns(convention.answer(task), values, len(caption))
    columns["text"] = texts
    if writer.uses("region_coord"):
        columns["region_coord"] = pa.array([""] * len(rows), pa.string())
    return [1 if regions else 0 for regions in captioned], columns


def listed_captions(
    writer: Writer,
    flat: FlatSamples,
    rows: list[int],
    captioned: list[list[int]],
    spelled: list[str],
    box_tokens: pa.Array | None,
) -> tuple[pa.Array, pa.Array]:
    """``{objects}`` of each caption's tagged spans and its ``{phrases}`` (``Writer.caption_values``), per item in
    Python with the reference ``fill``, as the caption tagging."""
    listing = writer.convention.listing
    item = listing.compiled()
    alone = box_tokens.to_pylist() if listing.per_box else None
    offsets = flat.region_boxes
    objects, names = [], []
    for s in rows:
        text = flat.texts[s]
        labels, items = [], []
        for k in captioned[s]:
            start, end = flat.spans[k]
            label = text[start:end]
            labels.append(label)
            shown = orjson.dumps(label).decode() if listing.json_labels else label
            groups = alone[offsets[k] : offsets[k + 1]] if alone is not None else [spelled[k]]
            items += [fill(item, {"label": shown, "boxes": g}) for g in groups]
        objects.append(listing.group[0] + listing.joiner.join(items) + listing.group[1])
        names.append(listing.joiner.join(dict.fromkeys(labels)))
    return pa.array(objects, pa.string()), pa.array(names, pa.string())


def layout_columns(writer: Writer, columns: dict[str, pa.Array]) -> list[pa.Array]:
    """The model's own columns, from the record values, as the convention's layout says."""
    layout = writer.convention.layout
    if isinstance(layout, Conversation):
        user = columns["prompt"]
        if layout.head:
            head = layout.head
            if "{image}" in head:
                before, _, after = head.partition("{image}")
                user = join(before, columns["image"], after, user)
            else:
                user = join(head, user)
        turn_type = writer.schema().field("conversations").type.value_type
        return [two_turns(user, columns["answer"], turn_type, layout.roles)]
    assert isinstance(layout, Columns)
    values = {**columns, "id": columns["id"]}
    out = []
    for _, parts in layout.columns:
        out.append(values[parts[0]] if len(parts) == 1 else join(*[values[p] for p in parts]))
    return out


def fill_columns(pieces: Sequence[Any], values: dict[str, pa.Array], size: int) -> pa.Array:
    """A compiled answer template filled with columns (its fields are always plain)."""
    parts = [values[p.name] if isinstance(p, Field) else p for p in pieces]
    if len(parts) == 1 and not isinstance(parts[0], str):
        return parts[0]
    if not any(not isinstance(p, str) for p in parts):
        return pa.array(["".join(parts)] * size, pa.string())
    return join(*parts)


# --- text and numbers as columns (each equal to its Python reference, tested on random values) --------------

_ASCII_SPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"  # what str.strip() and re's \s take out of ASCII text


def normalized(kind: str, texts: pa.Array) -> pa.Array:
    """``convention.NORMALIZERS[kind]`` of every string: Arrow kernels on ASCII rows (where they agree with
    Python's ``lower``/``strip``/``\\s``), the Python reference on the others."""
    if kind == "none" or not len(texts):
        return texts
    if kind == "strip":
        out = pc.utf8_trim(texts, characters=_ASCII_SPACE)
    else:  # pre_caption, step by step as convention.pre_caption (each replacement only where it can apply)
        out = pc.utf8_ltrim(pc.utf8_lower(texts), characters=",.!?*#:;~")
        _, data = string_bytes(out)
        for old, new in (("-", " "), ("/", " "), ("<person>", "person")):
            if (data == ord(old[0])).any():
                out = pc.replace_substring(out, old, new)
        spaces = _SPACE_BYTES[string_bytes(out)[1]]
        if (spaces[1:] & spaces[:-1]).any():  # two whitespace bytes in a row somewhere: a run to squeeze
            out = pc.replace_substring_regex(out, r"[\t\n\x0b\x0c\r\x1c-\x1f ]{2,}", " ")
        out = pc.utf8_trim(pc.utf8_rtrim(out, characters="\n"), characters=" ")
    other = pc.invert(pc.string_is_ascii(texts))
    if pc.any(other).as_py():
        reference = NORMALIZERS[kind]
        out = pc.replace_with_mask(out, other, pa.array([reference(t) for t in texts.filter(other).to_pylist()]))
    return out


def two_decimals(values: np.ndarray) -> pa.Array:
    """``f"{v:.2f}"`` of each value (see :func:`decimal_columns`)."""
    return decimal_columns(values[:, None])


def decimal_columns(values: np.ndarray, separator: str = ",") -> pa.Array:
    """``separator.join(f"{v:.2f}" for v in row)`` of each row of ``values``, in one join: ``rint(v * 100)``
    where the product is clearly off a .5 tie (its float error is far below the margin), Python's own
    formatting for rows holding a tie, a negative, a huge or an odd value."""
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * 100
        cents = np.rint(np.where(np.isfinite(scaled), scaled, 0.0))
        sure = ~np.signbit(values) & (values < 1e6) & (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6)
    cents = np.where(sure, cents, 0.0).astype(np.int64)
    parts: list[Any] = []
    for column in range(values.shape[1]):
        units, hundredths = as_strings(cents[:, column] // 100), _hundredths().take(pa.array(cents[:, column] % 100))
        parts += [separator] * bool(column) + [units, ".", hundredths]
    text = join(*parts)
    unsure = ~sure.all(axis=1)
    if unsure.any():
        exact = [separator.join(f"{v:.2f}" for v in row) for row in values[unsure].tolist()]
        text = pc.replace_with_mask(text, pa.array(unsure), pa.array(exact, pa.string()))
    return text


def region_coords(flat: FlatSamples) -> pa.Array:
    """``base.region_coord`` of every grounded region: its boxes' union, two decimals, comma separated."""
    boxes, starts = flat.boxes, flat.region_boxes[:-1]
    if not len(starts):
        return pa.array([], pa.string())
    low = np.minimum.reduceat(boxes[:, :2], starts)
    high = np.maximum.reduceat(boxes[:, 2:], starts)
    return decimal_columns(np.column_stack([low[:, 0], low[:, 1], high[:, 0], high[:, 1]]))


@cache
def _hundredths() -> pa.Array:
    """``"00"`` … ``"99"`` (made on first use: pyarrow's first list conversion imports pandas, ~0.2 s)."""
    return pa.array([f"{i:02d}" for i in range(100)], pa.string())


_SPACE_BYTES = np.zeros(256, dtype=bool)  # by byte value: ASCII whitespace as Python's str.split sees it
_SPACE_BYTES[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True


def first_draws(states: np.ndarray, suffix_crcs: np.ndarray, n: int) -> np.ndarray:
    """``record_rng(state, suffix).randrange(n)`` for many records: splitmix64 in wrapping uint64."""
    with np.errstate(over="ignore"):
        z = states ^ (suffix_crcs * np.uint64(SUFFIX_MULTIPLIER))
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n)).astype(np.int64)


_SUFFIX_CRCS: dict[str, np.ndarray] = {}


def suffix_crcs(task: str, indexes: Sequence[int] | None) -> np.ndarray:
    """CRC-32 of each record's id suffix (``rec/3``; just the task for one-per-sample tasks)."""
    if indexes is None:
        return np.array([crc32(task.encode())], dtype=np.uint64)
    table = _SUFFIX_CRCS.get(task)
    top = max(indexes, default=-1) + 1
    if table is None or len(table) < top:  # CRCs of "task/0" … "task/N" computed once and kept
        table = _SUFFIX_CRCS[task] = np.array(
            [crc32(f"{task}/{i}".encode()) for i in range(max(top, 64))], dtype=np.uint64
        )
    return table[np.asarray(indexes, dtype=np.int64)]


def as_strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def draw_pairs(pairs: list[tuple[str, str]], states: np.ndarray, crcs: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Each record's template, as the text before and after its placeholder."""
    chosen = pa.array(first_draws(states, crcs, len(pairs)))
    before = pa.array([p[0] for p in pairs], pa.string()).take(chosen)
    return before, pa.array([p[1] for p in pairs], pa.string()).take(chosen)


def two_turns(user: pa.Array, reply: pa.Array, turn_type: pa.StructType, roles: tuple[str, str]) -> pa.Array:
    """``[{speaker: user}, {speaker: reply}]`` per record, as a list<struct<speaker, text>> column."""
    total = len(user)
    values = pa.concat_arrays([user, reply]).take(
        pa.array(np.stack([np.arange(total), np.arange(total) + total], 1).reshape(-1))
    )
    speaker_field, text_field = list(turn_type)
    speakers = pa.array(list(roles), pa.string()).take(pa.array(np.tile([0, 1], total)))
    turns = pa.StructArray.from_arrays([speakers, values], fields=[speaker_field, text_field])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * total + 1, 2, dtype=np.int32)), turns)


def join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


class Blocks:
    """Records of each task, in sample order per task; :meth:`assemble` puts them in per-record order."""

    def __init__(self, n: int):
        self.n = n
        self.tasks: list[str] = []
        self.columns: list[dict[str, pa.Array]] = []
        self.counts: list[list[int]] = []

    def add(self, task: str, counts: list[int], columns: dict[str, pa.Array]) -> None:
        """``counts[s]`` records of sample ``s`` for ``task``; every column holds ``sum(counts)`` rows."""
        self.tasks.append(task)
        self.counts.append(counts)
        self.columns.append(columns)

    def assemble(self) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Columns in per-record order (sample by sample, tasks in order) and the counts (tasks × samples)."""
        matrix = np.array(self.counts, dtype=np.int64).reshape(len(self.counts), self.n)
        if not self.columns:
            return {}, matrix
        order = pa.array(interleave(matrix))
        names = list(self.columns[0])
        columns = {name: pa.concat_arrays([block[name] for block in self.columns]).take(order) for name in names}
        return columns, matrix


def interleave(counts: np.ndarray) -> np.ndarray:
    """Row order that takes per-task blocks (concatenated, each in sample order) sample by sample.

    ``counts[t, s]`` is how many records task ``t`` has for sample ``s``.  Output segment (s, t) is the
    run of block ``t`` rows belonging to sample ``s``; each output row is its segment's source start plus
    its place in the segment.
    """
    tasks, samples = counts.shape
    sizes = counts.sum(axis=1)
    block_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # where each task's block begins
    within = np.cumsum(counts, axis=1) - counts  # where sample s begins inside block t
    source = (block_start[:, None] + within).T.reshape(-1)  # segments in output order: s-major, t-minor
    lengths = counts.T.reshape(-1)
    target = np.cumsum(lengths) - lengths  # where each segment begins in the output
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(source - target, lengths)
