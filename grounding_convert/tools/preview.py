"""``preview``: draw the boxes of written records on their images, to see a conversion with one's own eyes.

Boxes come from the records themselves, through the writer's ``parse`` (never from the source), so the
picture shows what a model will be trained on.  Each record becomes a tile: the image scaled by an exact
per-axis factor (display size / record size), the decoded boxes outlined 2 px wide *inside* their edges
and labelled with their phrase.  Tiles go on one PNG contact sheet, or one card each in a self-contained
HTML page (images inline as ``data:`` URIs, so the file can be mailed or attached to an issue).
"""

from __future__ import annotations

import base64
import html
import io
import posixpath
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..boxes import normalize, normalized_to_pixels
from ..errors import RecordError, UsageError
from ..images import open_image
from ..option_types import COLUMNS, PREVIEW_RECORDS, SCALE, SEED, TILE, check
from ..output.finalize import MANIFEST
from ..output.storage import Store
from ..plugins import get_writer
from ..safe_paths import UnsafePath, is_remote, join_under, resolve_under, safe_relative
from ..schema import Box
from ..writers.base import COMMON_FIELDS, Decoded, Writer
from .validate import iter_records, unpacked

#: distinct, saturated outline colours (one per phrase of a record, cycling)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
)
OUTLINE = 2
MISSING_GREY = (160, 160, 160)
PAD = 8
LINE = 13
CAPTION_LINES = 3
MIN_CELL_WIDTH = 200
FORMATS = {".png": "png", ".html": "html", ".htm": "html"}
_COMMON = {name for name, _ in COMMON_FIELDS}


@dataclass
class Tile:
    """One record as drawn: where its image sits on the sheet and the exact scale of its boxes."""

    record_id: str
    task: str | None
    image_path: str
    record_size: tuple[int, int]  # width, height the record's boxes refer to
    size: tuple[int, int]  # display width, height
    decoded: list[Decoded] = field(default_factory=list)
    missing: bool = False
    unsafe: bool = False  # the image name would leave the image root: refused, not read
    error: str | None = None
    origin: tuple[int, int] | None = None  # top-left of the image on the PNG sheet
    texts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def scale(self) -> tuple[float, float]:
        """Display pixels per record pixel, x and y."""
        return self.size[0] / self.record_size[0], self.size[1] / self.record_size[1]

    def display_box(self, box: Box) -> Box:
        """A decoded box in tile pixels (continuous edges): the same fractions of the displayed image."""
        return normalized_to_pixels(normalize(box, *self.record_size), *self.size)


@dataclass
class PreviewResult:
    out_path: str
    format: str
    writer: str
    tiles: list[Tile] = field(default_factory=list)

    @property
    def records(self) -> int:
        return len(self.tiles)

    @property
    def missing_images(self) -> list[str]:
        return [t.image_path for t in self.tiles if t.missing]

    @property
    def unparsable(self) -> list[str]:
        return [f"{t.record_id}: {t.error}" for t in self.tiles if t.error and not t.unsafe]

    @property
    def unsafe_paths(self) -> list[str]:
        """Tiles whose image name was refused (``unsafe-path``): record id and the refusal."""
        return [f"{t.record_id}: {t.error}" for t in self.tiles if t.unsafe]


def render_preview(
    output_dir: str,
    image_root: str | None,
    out_path: str | Path,
    n: int = 24,
    task: str | None = None,
    seed: int | None = None,
    tile: int = 256,
    scale: float | None = None,
    columns: int | None = None,
    labels: bool = True,
) -> PreviewResult:
    """Draw ``n`` records of ``output_dir`` (the first ones, or a seeded random choice) into ``out_path``.

    ``scale`` fixes display pixels per image pixel (1 = native); otherwise each image is fitted into a
    ``tile``-pixel square.  The format follows the suffix of ``out_path`` (.png or .html).
    """
    out = Path(out_path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(f"--out must end in .png or .html, not {out.name!r}")
    n = check("--n", PREVIEW_RECORDS, n)
    tile = check("--tile", TILE, tile)
    if scale is not None:
        scale = check("--scale", SCALE, scale)
    if columns is not None:
        columns = check("--columns", COLUMNS, columns)
    if seed is not None:
        seed = check("--seed", SEED, seed)
    store = Store(output_dir)
    if not store.exists(MANIFEST):
        raise UsageError(f"{output_dir} has no {MANIFEST}: not a finished grounding-convert output")
    manifest = store.read_json(MANIFEST)
    job = manifest["job"]
    if job["format"] not in ("parquet", "jsonl", "json"):
        raise UsageError(f"preview reads parquet, jsonl or json outputs, not {job['format']} (it has no image sizes)")
    writer_options = dict(job.get("writer_options", {}))
    writer = get_writer(job["writer"]).from_mapping(writer_options)
    if task is not None and task not in writer.tasks:
        raise UsageError(f"writer {writer.name!r} has no task {task!r} (it has: {', '.join(writer.tasks)})")
    shards = iter_records(store, manifest["shards"], job["format"])
    records = (r for _, r in unpacked(shards, writer, int(job.get("turns", 1))))
    chosen = _choose((r for r in records if task is None or _task(r) == task), n, seed)
    prefix = writer_options.get("image_prefix")
    result = PreviewResult(str(out), fmt, writer.name)
    font = _font(11)
    images: list[Image.Image] = []
    for record in chosen:
        t, image = _tile(record, writer, image_root, prefix, tile, scale, labels, font)
        result.tiles.append(t)
        images.append(image)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        _contact_sheet(result.tiles, images, columns, font).save(out, format="PNG")
    else:
        out.write_text(_html_page(output_dir, result, images), encoding="utf-8")
    return result


# --- choosing and reading records --------------------------------------------------------------------


def _choose(records: Iterator[dict[str, Any]], n: int, seed: int | None) -> list[dict[str, Any]]:
    """The first ``n`` records, or with a seed a uniform random choice of ``n`` (reservoir, in file order)."""
    if seed is None:
        out = []
        for record in records:
            out.append(record)
            if len(out) >= n:
                break
        return out
    rng = random.Random(seed)
    reservoir: list[tuple[int, dict[str, Any]]] = []
    for i, record in enumerate(records):
        if i < n:
            reservoir.append((i, record))
        else:
            j = rng.randrange(i + 1)
            if j < n:
                reservoir[j] = (i, record)
    return [r for _, r in sorted(reservoir, key=lambda item: item[0])]


def _task(record: dict[str, Any]) -> str:
    return record.get("task") or "sample"  # canonical records are whole samples


def _record_size(record: dict[str, Any]) -> tuple[int | None, int | None]:
    if isinstance(record.get("image"), dict):  # canonical
        return record["image"].get("width"), record["image"].get("height")
    return record.get("width"), record.get("height")


def _record_image(record: dict[str, Any]) -> str:
    image = record.get("image")
    if isinstance(image, dict):
        return str(image.get("file") or "")
    return str(image or "")


def strip_prefix(path: str, prefix: str | None) -> str:
    """The dataset-relative image path of a record written with ``--image-prefix``."""
    if prefix:
        head = prefix.rstrip("/") + "/"
        if path.startswith(head):
            return path[len(head) :]
    return path


def image_location(record: dict[str, Any], image_root: str | None, prefix: str | None) -> str:
    """Where the record's image is (shown on its tile): the image root joined with the normalized name.

    The name comes from the data, so it goes through safe_paths: one that would leave the root raises
    :class:`~grounding_convert.safe_paths.UnsafePath` (the tile says so; nothing is read).
    """
    root, rel = _root(image_root), strip_prefix(_record_image(record), prefix)
    if is_remote(root):
        return join_under(root, rel)
    resolve_under(root, rel)
    return posixpath.join(root.rstrip("/") or "/", safe_relative(rel).as_posix())


def _root(image_root: str | None) -> str:
    return "." if image_root is None else str(image_root)


def _open_image(image_root: str | None, name: str) -> Image.Image | None:
    """The image as RGB, or None when it cannot be found or decoded (drawn as a grey tile instead)."""
    try:
        with open_image(_root(image_root), name) as fh:
            image = Image.open(io.BytesIO(fh.read()))
            image.load()
    except Exception:  # missing, unreadable, not an image: all shown as "image missing"
        return None
    return image.convert("RGB")


def record_texts(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The human-readable text of a record, as (label, text) pairs, whatever the writer."""
    if isinstance(record.get("conversations"), list):
        out = []
        for turn in record["conversations"]:
            if isinstance(turn, dict):
                who = turn.get("from") or turn.get("role") or "turn"
                out.append((str(who), str(turn.get("value", turn.get("content", "")))))
        return out
    for keys in (("prompt", "completion"), ("source", "target"), ("text", "answer")):
        if any(k in record for k in keys):
            return [(k, str(record[k])) for k in keys if record.get(k) is not None]
    return [(k, str(v)) for k, v in record.items() if k not in _COMMON and isinstance(v, str)]


# --- drawing -----------------------------------------------------------------------------------------


def outline_rect(box: Box) -> tuple[int, int, int, int]:
    """Pixel rectangle (inclusive) whose 2-px outline lies just inside the continuous edges of ``box``."""
    left, top = round(box[0]), round(box[1])
    right, bottom = max(left, round(box[2]) - 1), max(top, round(box[3]) - 1)
    return left, top, right, bottom


def colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _tile(
    record: dict[str, Any],
    writer: Writer,
    image_root: str | None,
    prefix: str | None,
    tile: int,
    scale: float | None,
    labels: bool,
    font: Any,
) -> tuple[Tile, Image.Image]:
    rid = str(record.get("id"))
    width, height = _record_size(record)
    texts = record_texts(record)
    try:
        location = image_location(record, image_root, prefix)
    except UnsafePath as exc:  # a hostile name: say so on the tile, read nothing
        info = Tile(rid, _task(record), _record_image(record), (tile, tile), (tile, tile), texts=texts)
        info.unsafe, info.error = True, f"{exc.reason}: {exc.message}"
        return info, _message_image((tile, tile), info.error, font)
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        info = Tile(
            rid,
            _task(record),
            location,
            (tile, tile),
            (tile, tile),
            error=f"no usable size {width}x{height}",
            texts=texts,
        )
        return info, _message_image((tile, tile), info.error, font)
    s = scale if scale is not None else min(tile / width, tile / height)
    size = (max(1, round(width * s)), max(1, round(height * s)))
    info = Tile(rid, _task(record), location, (width, height), size, texts=texts)
    try:
        info.decoded = writer.parse(record)
    except RecordError as exc:
        info.error = f"{exc.reason}: {exc.message}"
    source = _open_image(image_root, strip_prefix(_record_image(record), prefix))
    if source is None:
        info.missing = True
        image = _message_image(size, f"image missing: {location}", font)
    else:
        image = source if source.size == size else source.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for index, decoded in enumerate(info.decoded):
        for box in decoded.boxes:
            draw.rectangle(outline_rect(info.display_box(box)), outline=colour(index), width=OUTLINE)
    if labels:
        for index, decoded in enumerate(info.decoded):
            for box in decoded.boxes[:1]:  # one label per phrase is enough to name its colour
                left, top, _, _ = outline_rect(info.display_box(box))
                _label(draw, (left + OUTLINE, top + OUTLINE), _phrase(decoded, index), colour(index), font)
    if info.error:
        _write_lines(draw, (2, 2), [info.error], size[0] - 4, font, fill=(200, 0, 0))
    return info, image


def _phrase(decoded: Decoded, index: int) -> str:
    return decoded.phrase if decoded.phrase else f"#{index + 1}"


def _label(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, fill: tuple[int, int, int], font: Any) -> None:
    text = text if len(text) <= 40 else text[:39] + "…"
    x0, y0, x1, y1 = draw.textbbox(at, text, font=font)
    draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), fill=fill)
    dark = sum(fill) > 400
    draw.text(at, text, font=font, fill=(0, 0, 0) if dark else (255, 255, 255))


def _message_image(size: tuple[int, int], message: str, font: Any) -> Image.Image:
    image = Image.new("RGB", size, MISSING_GREY)
    _write_lines(ImageDraw.Draw(image), (3, 3), _wrap(message, max(8, size[0] // 6)), size[0] - 6, font)
    return image


def _wrap(text: str, chars: int) -> list[str]:
    return [text[i : i + chars] for i in range(0, len(text), chars)] or [""]


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: Any) -> str:
    """Cut ``text`` to ``width`` pixels (the sheet has room for a few lines, not for whole prompts)."""
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _write_lines(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    lines: list[str],
    width: int,
    font: Any,
    fill: tuple[int, int, int] = (0, 0, 0),
) -> None:
    x, y = at
    for line in lines:
        draw.text((x, y), _fit(draw, line, width, font), font=font, fill=fill)
        y += LINE


def _contact_sheet(tiles: list[Tile], images: list[Image.Image], columns: int | None, font: Any) -> Image.Image:
    count = max(1, len(tiles))
    cols = max(1, min(columns or 6, count))
    rows = -(-count // cols)
    cell_w = max([MIN_CELL_WIDTH] + [im.width for im in images])
    cell_h = max([16] + [im.height for im in images]) + PAD + CAPTION_LINES * LINE
    sheet = Image.new("RGB", (PAD + cols * (cell_w + PAD), PAD + rows * (cell_h + PAD)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if not tiles:
        draw.text((PAD, PAD), "no records", font=font, fill=(0, 0, 0))
    for i, (info, image) in enumerate(zip(tiles, images, strict=True)):
        x, y = PAD + (i % cols) * (cell_w + PAD), PAD + (i // cols) * (cell_h + PAD)
        sheet.paste(image, (x, y))
        info.origin = (x, y)
        caption = [f"{info.record_id} [{info.task}]"]
        if info.missing:
            caption.append(f"image missing: {info.image_path}")
        caption += [f"{who}: {text}" for who, text in info.texts]
        _write_lines(draw, (x, y + image.height + 4), caption[:CAPTION_LINES], cell_w, font)
    return sheet


# --- HTML --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;background:#f4f4f4}
.card{display:inline-block;vertical-align:top;background:#fff;margin:6px;padding:8px;border-radius:6px;
max-width:520px;box-shadow:0 1px 3px #0003}
.card h3{font-size:13px;margin:4px 0;word-break:break-all}.missing{color:#b00}
dl{font-size:12px;margin:4px 0}dt{font-weight:600}
dd{margin:0 0 4px 8px;white-space:pre-wrap;word-break:break-word}
table{font-size:12px;border-collapse:collapse}td,th{padding:1px 6px;text-align:right}td.p{text-align:left}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _box_rows(info: Tile) -> str:
    rows = []
    for index, decoded in enumerate(info.decoded):
        r, g, b = colour(index)
        swatch = f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'
        phrase = html.escape(_phrase(decoded, index)) + (f" ({html.escape(decoded.role)})" if decoded.role else "")
        if not decoded.boxes:
            rows.append(f'<tr><td class="p">{swatch}{phrase}</td><td colspan="4">no box</td></tr>')
        for box in decoded.boxes:
            cells = "".join(f"<td>{v:.2f}</td>" for v in box)
            rows.append(f'<tr><td class="p">{swatch}{phrase}</td>{cells}</tr>')
    head = "<tr><th>phrase</th><th>x1</th><th>y1</th><th>x2</th><th>y2</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _html_page(output_dir: str, result: PreviewResult, images: list[Image.Image]) -> str:
    cards = []
    for info, image in zip(result.tiles, images, strict=True):
        texts = "".join(f"<dt>{html.escape(who)}</dt><dd>{html.escape(text)}</dd>" for who, text in info.texts)
        notes = ""
        if info.missing:
            notes += f'<p class="missing">image missing: {html.escape(info.image_path)}</p>'
        if info.error:
            notes += f'<p class="missing">{html.escape(info.error)}</p>'
        cards.append(
            f'<div class="card"><img src="{_data_uri(image)}" width="{image.width}" height="{image.height}" '
            f'alt="{html.escape(info.image_path)}"><h3>{html.escape(info.record_id)} '
            f"[{html.escape(str(info.task))}]</h3>{notes}<dl>{texts}</dl>{_box_rows(info)}</div>"
        )
    title = f"grounding-convert preview: {output_dir} ({result.writer})"
    summary = f"{result.records} record(s); boxes decoded from the records (pixels of the original image)"
    if result.missing_images:
        summary += f"; {len(result.missing_images)} image(s) missing"
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h2>{html.escape(title)}</h2><p>{html.escape(summary)}</p>"
        + "".join(cards)
        + "</body></html>\n"
    )
