"""``preview``: the outlines on the picture lie where the records' decoded boxes say (within 1 px)."""

from __future__ import annotations

import base64
import io
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import UsageError
from grounding_convert.synth import generate
from grounding_convert.tools.preview import MISSING_GREY, Tile, colour, render_preview, strip_prefix

WRITERS = ("qwen-vl", "kosmos-2", "ofa", "cogvlm", "canonical")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flickr")
    generate("flickr30k-entities", root, images=3, seed=1)
    return root


@pytest.fixture(scope="module")
def images(dataset: Path) -> str:
    return str(dataset / "flickr30k-images")


@pytest.fixture(scope="module")
def outputs(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One conversion per writer (parquet and jsonl alternate, so both shard readers are exercised)."""
    out = {}
    for i, writer in enumerate(WRITERS):
        target = tmp_path_factory.mktemp(writer)
        job = make_job(
            input=str(dataset),
            output=str(target),
            writer=writer,
            reader="flickr30k-entities",
            format="parquet" if i % 2 == 0 else "jsonl",
        )
        convert(job, RunOptions(progress=False, overwrite=True))
        out[writer] = str(target)
    return out


def _first_hit(pixels, points, rgb) -> int | None:
    """Index of the first of ``points`` whose pixel has exactly ``rgb``."""
    for i, point in enumerate(points):
        if pixels[point] == rgb:
            return i
    return None


def assert_outline(sheet: Image.Image, tile: Tile, box: list[float], rgb: tuple[int, int, int]) -> None:
    """Scan from 4 px outside each decoded edge inward: the first outline pixel is within 1 px of the edge."""
    pixels = sheet.load()
    ox, oy = tile.origin
    w, h = tile.size
    x1, y1, x2, y2 = tile.display_box(box)
    inner_rows = range(math.ceil(y1) + 3, math.floor(y2) - 3)
    inner_cols = range(math.ceil(x1) + 3, math.floor(x2) - 3)
    assert len(inner_rows) or len(inner_cols)
    for y in inner_rows:
        start = max(0, math.floor(x1) - 4)
        hit = _first_hit(pixels, [(ox + x, oy + y) for x in range(start, w)], rgb)
        assert hit is not None and abs(start + hit - x1) <= 1, (tile.record_id, "left", y, start, hit, x1)
        start = min(w - 1, math.ceil(x2) + 4)
        hit = _first_hit(pixels, [(ox + x, oy + y) for x in range(start, -1, -1)], rgb)
        assert hit is not None and abs(start - hit + 1 - x2) <= 1, (
            tile.record_id,
            "right",
            y,
            start,
            hit,
            x2,
        )
    for x in inner_cols:
        start = max(0, math.floor(y1) - 4)
        hit = _first_hit(pixels, [(ox + x, oy + y) for y in range(start, h)], rgb)
        assert hit is not None and abs(start + hit - y1) <= 1, (tile.record_id, "top", x, start, hit, y1)
        start = min(h - 1, math.ceil(y2) + 4)
        hit = _first_hit(pixels, [(ox + x, oy + y) for y in range(start, -1, -1)], rgb)
        assert hit is not None and abs(start - hit + 1 - y2) <= 1, (
            tile.record_id,
            "bottom",
            x,
            start,
            hit,
            y2,
        )


@pytest.mark.parametrize("writer", ["qwen-vl", "kosmos-2", "ofa", "cogvlm"])
@pytest.mark.parametrize("scale", [1.0, None])
def test_outlines_lie_on_the_decoded_boxes(writer, scale, outputs, images, tmp_path):
    out = tmp_path / "sheet.png"
    result = render_preview(outputs[writer], images, out, n=40, task="rec", scale=scale, tile=230, labels=False)
    assert result.records == 26 and not result.missing_images and not result.unparsable
    sheet = Image.open(out).convert("RGB")
    checked = 0
    for tile in result.tiles:
        assert tile.task == "rec"
        if scale == 1.0:
            assert tile.size == tile.record_size and tile.scale == (1.0, 1.0)
        else:
            assert max(tile.size) == 230
        boxes = [b for d in tile.decoded for b in d.boxes]
        if len(boxes) == 1:  # several boxes of one phrase share a colour and may cross each other's scans
            assert_outline(sheet, tile, boxes[0], colour(0))
            checked += 1
    assert checked >= 10


def test_labels_stay_inside_the_top_left_corner(outputs, images, tmp_path):
    """With labels on, left and top edges are still exact (labels are drawn inside the box)."""
    out = tmp_path / "labels.png"
    result = render_preview(outputs["kosmos-2"], images, out, n=40, task="rec", scale=2)
    sheet = Image.open(out).convert("RGB")
    pixels = sheet.load()
    for tile in result.tiles:
        boxes = [b for d in tile.decoded for b in d.boxes]
        if len(boxes) != 1:
            continue
        x1, y1, x2, y2 = tile.display_box(boxes[0])
        ox, oy = tile.origin
        for y in range(math.ceil(y1) + 3, math.floor(y2) - 3):
            start = max(0, math.floor(x1) - 4)
            row = [pixels[ox + x, oy + y] for x in range(start, tile.size[0])]
            assert abs(start + row.index(colour(0)) - x1) <= 1


def test_grounded_caption_phrases_get_distinct_colours(outputs, images, tmp_path):
    out = tmp_path / "gc.png"
    result = render_preview(outputs["qwen-vl"], images, out, n=12, task="grounded-caption", scale=1, labels=False)
    sheet = Image.open(out).convert("RGB")
    several = 0
    for tile in result.tiles:
        crop = sheet.crop((*tile.origin, tile.origin[0] + tile.size[0], tile.origin[1] + tile.size[1]))
        used = Counter(crop.get_flattened_data())
        for i, decoded in enumerate(tile.decoded):
            later = [b for d in tile.decoded[i + 1 :] for b in d.boxes]
            if any(b not in later for b in decoded.boxes):  # a box shared with a later phrase is drawn over
                assert used[colour(i)] > 0, (tile.record_id, decoded.phrase)
        several += len(tile.decoded) >= 2
    assert result.records == 12 and several >= 5
    assert len({colour(i) for i in range(12)}) == 12


@pytest.mark.parametrize("writer", WRITERS)
def test_html_is_self_contained_with_phrases_and_numbers(writer, outputs, images, tmp_path):
    out = tmp_path / "preview.html"
    result = render_preview(outputs[writer], images, out, n=5)
    page = out.read_text(encoding="utf-8")
    assert result.records == 5 and not result.missing_images and not result.unparsable
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 5
    first = Image.open(io.BytesIO(base64.b64decode(uris[0])))
    assert first.format == "PNG" and first.size == result.tiles[0].size
    assert "two girl" in page
    box = result.tiles[0].decoded[0].boxes[0]
    assert "".join(f"<td>{v:.2f}</td>" for v in box) in page
    assert "http://" not in page.replace("http://www.w3", "") and "<script" not in page


def test_missing_images_become_grey_tiles(outputs, tmp_path):
    out = tmp_path / "missing.png"
    result = render_preview(outputs["cogvlm"], str(tmp_path / "nowhere"), out, n=4, scale=1)
    assert result.records == 4 and len(result.missing_images) == 4
    assert result.missing_images[0].endswith("/nowhere/9168024629.jpg")
    sheet = Image.open(out).convert("RGB")
    tile = result.tiles[0]
    crop = sheet.crop((*tile.origin, tile.origin[0] + tile.size[0], tile.origin[1] + tile.size[1]))
    assert Counter(crop.get_flattened_data()).most_common(1)[0][0] == MISSING_GREY
    html = render_preview(outputs["cogvlm"], str(tmp_path / "nowhere"), tmp_path / "m.html", n=2)
    assert "image missing: " in (tmp_path / "m.html").read_text() and len(html.missing_images) == 2


def test_seeded_choice_is_reproducible(outputs, images, tmp_path):
    a = render_preview(outputs["ofa"], images, tmp_path / "a.png", n=4, seed=7)
    b = render_preview(outputs["ofa"], images, tmp_path / "b.png", n=4, seed=7)
    first = render_preview(outputs["ofa"], images, tmp_path / "c.png", n=4)
    ids = [t.record_id for t in a.tiles]
    assert ids == [t.record_id for t in b.tiles] and len(set(ids)) == 4
    assert ids != [t.record_id for t in first.tiles]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_image_prefix_is_stripped(dataset, images, tmp_path):
    target = tmp_path / "prefixed"
    job = make_job(
        input=str(dataset),
        output=str(target),
        writer="qwen-vl",
        reader="flickr30k-entities",
        format="jsonl",
        writer_options={"image_prefix": "s3://bucket/flickr/"},
    )
    convert(job, RunOptions(progress=False))
    result = render_preview(str(target), images, tmp_path / "p.png", n=2)
    assert not result.missing_images and result.tiles[0].image_path == f"{images}/9168024629.jpg"
    assert strip_prefix("s3://bucket/flickr/a/b.jpg", "s3://bucket/flickr") == "a/b.jpg"
    assert strip_prefix("other/b.jpg", "s3://bucket/flickr") == "other/b.jpg"


def test_bad_requests_are_usage_errors(outputs, images, tmp_path):
    with pytest.raises(UsageError, match="png or .html"):
        render_preview(outputs["ofa"], images, tmp_path / "x.gif")
    with pytest.raises(UsageError, match="has no task 'pointing'"):
        render_preview(outputs["ofa"], images, tmp_path / "x.png", task="pointing")
    with pytest.raises(UsageError, match="manifest.json"):
        render_preview(str(tmp_path), images, tmp_path / "x.png")


def test_cli(outputs, images, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.png"
    result = runner.invoke(
        app,
        [
            "preview",
            outputs["kosmos-2"],
            "--image-root",
            images,
            "--out",
            str(out),
            "--n",
            "3",
            "--task",
            "reg",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 3 kosmos-2 record(s)" in result.output
    assert Image.open(out).format == "PNG"
    missing = runner.invoke(
        app,
        [
            "preview",
            outputs["kosmos-2"],
            "--image-root",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "m.html"),
            "--n",
            "2",
        ],
    )
    assert missing.exit_code == 0 and "2 image(s) missing" in missing.output
    bad = runner.invoke(app, ["preview", str(tmp_path / "none"), "--image-root", images, "--out", str(out)])
    assert bad.exit_code == 2 and "error:" in bad.output and "Traceback" not in bad.output
