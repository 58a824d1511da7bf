"""Tiny real images for synthetic fixtures: a plain background with each box drawn as a filled rectangle.

Readers that need image headers (Visual7W sizes, GRIT downloads) and ``preview`` (which draws decoded
boxes back on the image) get genuine JPEG/PNG files this way, a few hundred bytes each.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw


def render_image(width: int, height: int, boxes: Sequence[Sequence[float]], seed: int = 0) -> Image.Image:
    """An RGB image whose boxes (canonical xyxy pixels) are filled rectangles in seeded colours."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    for x1, y1, x2, y2 in boxes:
        colour = (rng.randrange(40, 200), rng.randrange(40, 200), rng.randrange(40, 200))
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], fill=colour)
    return image


def jpeg_bytes(width: int, height: int, boxes: Sequence[Sequence[float]] = (), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    render_image(width, height, boxes, seed).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def write_jpeg(path: Path, width: int, height: int, boxes: Sequence[Sequence[float]] = (), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(width, height, boxes, seed))
