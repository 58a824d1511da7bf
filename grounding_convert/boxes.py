"""All box arithmetic in one place (DESIGN §1): native → canonical, clipping, normalization, quantization.

Canonical boxes are ``[x1, y1, x2, y2]`` absolute pixels of the original image, 0-based, continuous
edges.  Readers call the ``*_to_xyxy`` converters; writers describe their model's spelling with a
:class:`Quantizer` (or the KOSMOS-2 patch grid) and never compute coordinates themselves, so a property
test here covers every model at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from math import isfinite
from typing import ClassVar, Literal, Protocol

import numpy as np

Box = list[float]
Rounding = Literal["floor", "round"]
#: In which order a model's own code computes ``v / size * scale`` (float results differ at bin edges):
#: ``fraction`` ``v / size * scale`` (Qwen, InternVL, PaliGemma …); ``ratio`` ``v * (scale / size)``
#: (Qwen2.5-VL's ``x1 * scale_w``); ``per-bin-f32`` ``v / (size / scale)`` in float32 (Florence-2's torch code).
Arithmetic = Literal["fraction", "ratio", "per-bin-f32"]


class BoxError(ValueError):
    """A box that cannot be represented (non-finite, inverted, empty, or the image has no size)."""


# --- native conventions → canonical ------------------------------------------------------------------


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> Box:
    """Top-left corner + size (VG, COCO/RefCOCO, Visual7W) → corners."""
    return [float(x), float(y), float(x) + float(w), float(y) + float(h)]


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def one_based_inclusive_to_xyxy(xmin: float, ymin: float, xmax: float, ymax: float) -> Box:
    """Flickr30K Entities / PASCAL VOC pixel indices (1-based, inclusive) → continuous 0-based edges.

    Pixel ``xmin`` (1-based) starts at edge ``xmin - 1``; pixel ``xmax`` ends at edge ``xmax``.
    """
    return [float(xmin) - 1.0, float(ymin) - 1.0, float(xmax), float(ymax)]


def normalized_to_pixels(box: Sequence[float], width: float, height: float) -> Box:
    """GRIT's 0–1 corners → pixels of the image the user actually has."""
    x1, y1, x2, y2 = box
    return [x1 * width, y1 * height, x2 * width, y2 * height]


def denormalize_clipped(box: Sequence[float], width: float, height: float) -> tuple[Box, bool]:
    """0–1 corners clamped into the unit square, then pixels; and whether the clamp changed anything.

    :func:`clip` to ``1 × 1`` and :func:`normalized_to_pixels` in one call (GRIT's hot path).
    """
    x1, y1, x2, y2 = box
    if x1 >= 0.0 and y1 >= 0.0 and x2 <= 1.0 and y2 <= 1.0:
        return [x1 * width, y1 * height, x2 * width, y2 * height], False
    fixed = clip(box, 1.0, 1.0)
    return normalized_to_pixels(fixed, width, height), fixed != list(box)


def denormalize_clipped_many(
    boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`denormalize_clipped` of many boxes (n × 4 floats, one size each), with the same float results.

    Python's ``max(v, 0.0)``/``min(v, 1.0)`` keep ``v`` unless the bound is strictly beyond it (so -0.0
    stays -0.0); ``np.where`` with the same comparisons does exactly that.  A box already inside the
    unit square is multiplied as it is, as the scalar version's shortcut does.
    """
    low = np.where(boxes < 0.0, 0.0, boxes)
    clamped = np.where(low > 1.0, 1.0, low)
    inside = (boxes[:, 0] >= 0.0) & (boxes[:, 1] >= 0.0) & (boxes[:, 2] <= 1.0) & (boxes[:, 3] <= 1.0)
    fixed = np.where(inside[:, None], boxes, clamped)  # the shortcut's test, exactly (it checks 4 edges)
    clipped = (fixed != boxes).any(axis=1)
    sizes = np.stack([widths, heights, widths, heights], axis=1).astype(np.float64)
    return fixed * sizes, clipped


# --- checks and repairs ------------------------------------------------------------------------------


def is_finite(box: Sequence[float]) -> bool:
    """Four real, finite numbers (hot path: unpacks instead of looping)."""
    try:
        x1, y1, x2, y2 = box
        return isfinite(x1) and isfinite(y1) and isfinite(x2) and isfinite(y2)
    except (TypeError, ValueError):  # not four items, or not numbers
        return False


def area(box: Sequence[float]) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def is_empty(box: Sequence[float]) -> bool:
    """True when the box has no area (inverted or degenerate)."""
    x1, y1, x2, y2 = box
    return not (x2 > x1 and y2 > y1)


def is_inside(box: Sequence[float], width: float, height: float) -> bool:
    x1, y1, x2, y2 = box
    return x1 >= 0.0 and y1 >= 0.0 and x2 <= width and y2 <= height


def clip(box: Sequence[float], width: float, height: float) -> Box:
    """Clamp every edge into ``[0, width] × [0, height]`` (may leave an empty box: check after)."""
    x1, y1, x2, y2 = box
    return [
        min(max(float(x1), 0.0), float(width)),
        min(max(float(y1), 0.0), float(height)),
        min(max(float(x2), 0.0), float(width)),
        min(max(float(y2), 0.0), float(height)),
    ]


def union(boxes: Sequence[Sequence[float]]) -> Box:
    """The smallest box holding all of ``boxes`` (for formats that carry one box per phrase)."""
    if not boxes:
        raise BoxError("the union of no boxes is undefined")
    return [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]


def normalize(box: Sequence[float], width: float, height: float) -> Box:
    """Pixels → fractions of the image size, per axis."""
    if not width or not height or width <= 0 or height <= 0:
        raise BoxError(f"image size {width}x{height} cannot normalize a box")
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, x2 / width, y2 / height]


# --- quantization ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quantizer:
    """How a model turns a pixel coordinate into an integer: ``q = R(v / size * scale)`` clamped.

    ``rounding='floor'`` is Python ``int()`` truncation (coordinates are never negative after
    clipping); ``'round'`` is round-half-to-even, as both Python's ``round`` and ``torch.round`` do.
    Decoding returns the centre of the cell a floored value came from, or the exact grid point of a
    rounded one, so the decode error is at most half a step (one step at a clamped border).

    Two model quirks are fields, not code elsewhere:

    * ``pre_clamp``: the pixel is first clamped to ``size - 1`` (CogCoM ``refine_box``), so a box
      touching the far border lands one pixel inside it; the round-trip tolerance grows by that pixel.
    * ``float32_square``: the arithmetic is OFA's, in float32 through a square resize of this side:
      ``R(f32(f32(f32(v) * f32(side / size)) / f32(side)) * f32(scale))``.
    * ``arithmetic``: the order of operations of ``v / size * scale`` (:data:`Arithmetic`).
    """

    scale: int
    rounding: Rounding
    max_index: int
    pre_clamp: bool = False
    float32_square: int | None = None
    arithmetic: Arithmetic = "fraction"
    columns: ClassVar[tuple[str, ...]] = ()  # size columns a record of this grid carries (see ResizedPixels)

    def scaled(self, value: float, size: float) -> float:
        """``value / size * scale`` in the model's own order of operations (before rounding)."""
        if self.pre_clamp:
            value = min(value, size - 1)
        side = self.float32_square
        if side is None:
            if self.arithmetic == "ratio":
                return value * (self.scale / size)
            if self.arithmetic == "per-bin-f32":
                # transformers models/florence2/processing_florence2.py Florence2PostProcessor.quantize: a
                # float32 tensor divided by the python float size / bins (torch computes it in float32)
                with np.errstate(over="ignore", invalid="ignore"):
                    return float(np.float32(value) / np.float32(size / self.scale))
            return value / size * self.scale
        f32 = np.float32
        with np.errstate(over="ignore", invalid="ignore"):
            return float(f32(f32(f32(value) * f32(side / size)) / f32(side)) * f32(self.scale))

    def encode(self, value: float, size: float) -> int:
        if size <= 0:
            raise BoxError(f"image size {size} cannot quantize a coordinate")
        scaled = self.scaled(value, size)
        q = math.floor(scaled) if self.rounding == "floor" else round(scaled)
        return int(min(max(q, 0), self.max_index))

    def decode(self, index: int, size: float) -> float:
        offset = 0.5 if self.rounding == "floor" else 0.0
        return (index + offset) * size / self.scale

    def encode_box(self, box: Sequence[float], width: float, height: float) -> list[int]:
        """:meth:`encode` of each corner (x along the width, y along the height)."""
        if width <= 0 or height <= 0:
            raise BoxError(f"image size {width}x{height} cannot quantize a box")
        x1, y1, x2, y2 = box
        return [self.encode(x1, width), self.encode(y1, height), self.encode(x2, width), self.encode(y2, height)]

    def encode_many(self, boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_box` of many boxes (n × 4 floats, one image size each), with the same IEEE operations.

        Returns the values (n × 4 int64) and which boxes :meth:`encode_box` accepts (a NaN, an infinity or
        an overflowing ``v / size * scale`` raises there); values of refused boxes are meaningless.
        """
        sizes = np.stack([widths, heights, widths, heights], axis=1).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            values = np.minimum(boxes, sizes - 1) if self.pre_clamp else boxes
            if self.float32_square is None:
                if self.arithmetic == "ratio":
                    scaled = values * (self.scale / sizes)
                elif self.arithmetic == "per-bin-f32":
                    scaled = (values.astype(np.float32) / (sizes / self.scale).astype(np.float32)).astype(np.float64)
                else:
                    scaled = values / sizes * self.scale
            else:
                f32, side = np.float32, self.float32_square
                ratio = (side / sizes).astype(f32)
                scaled = ((values.astype(f32) * ratio) / f32(side)) * f32(self.scale)
            ok = np.isfinite(scaled).all(axis=1)
            safe = np.where(np.isfinite(scaled), scaled, 0.0)
            q = np.floor(safe) if self.rounding == "floor" else np.rint(safe)
        return np.clip(q, 0, self.max_index).astype(np.int64), ok

    @staticmethod
    def collapsed(q: np.ndarray) -> np.ndarray:
        """Which quantized boxes (n × 4) have no area left: FORMATS.md forbids writing them."""
        return (q[:, 2] <= q[:, 0]) | (q[:, 3] <= q[:, 1])

    @staticmethod
    def is_collapsed(q: Sequence[int]) -> bool:
        """:meth:`collapsed` of one box."""
        return q[2] <= q[0] or q[3] <= q[1]

    def decode_box(self, q: Sequence[int], width: float, height: float) -> Box:
        x1, y1, x2, y2 = q
        return [
            self.decode(x1, width),
            self.decode(y1, height),
            self.decode(x2, width),
            self.decode(y2, height),
        ]

    def step(self, width: float, height: float) -> tuple[float, float]:
        """Pixels per quantization step along x and y, plus the pre-clamp's pixel: the round-trip tolerance."""
        extra = 1.0 if self.pre_clamp else 0.0
        return width / self.scale + extra, height / self.scale + extra

    def in_range(self, q: int) -> bool:
        return 0 <= q <= self.max_index

    def size_columns(self, width: int, height: int) -> tuple[tuple[str, int], ...]:
        """Columns a record of this grid carries besides the image size (none: the grid is the size's)."""
        return ()


# --- KOSMOS-2 patch grid -----------------------------------------------------------------------------
# Same arithmetic as transformers' models/kosmos2/processing_kosmos2.py
# (coordinate_to_patch_index / patch_index_to_coordinate), on normalized corners.


def box_to_patch_indices(box: Sequence[float], width: float, height: float, grid: int = 32) -> tuple[int, int]:
    """Pixel box → (upper-left cell, lower-right cell) on a ``grid × grid`` patch grid."""
    nx1, ny1, nx2, ny2 = normalize(box, width, height)
    if not (nx2 > nx1 and ny2 > ny1):
        raise BoxError(f"empty box {list(box)} has no patch indices")
    ul_x = math.floor(nx1 * grid)
    ul_y = math.floor(ny1 * grid)
    lr_x = math.ceil(nx2 * grid - 1)
    lr_y = math.ceil(ny2 * grid - 1)
    clamp = lambda v: min(max(v, 0), grid - 1)  # noqa: E731 - guards float noise at the borders
    return clamp(ul_y) * grid + clamp(ul_x), clamp(lr_y) * grid + clamp(lr_x)


def patch_indices_to_normalized(ul: int, lr: int, grid: int = 32) -> Box:
    """(upper-left, lower-right) cells → normalized box, exactly as transformers decodes it."""
    cell = 1.0 / grid
    ul_x, ul_y = ul % grid, ul // grid
    lr_x, lr_y = lr % grid, lr // grid
    if ul == lr or ul_x == lr_x or ul_y == lr_y:
        return [ul_x * cell, ul_y * cell, lr_x * cell + cell, lr_y * cell + cell]
    return [ul_x * cell + cell / 2, ul_y * cell + cell / 2, lr_x * cell + cell / 2, lr_y * cell + cell / 2]


def patch_indices_to_box(ul: int, lr: int, width: float, height: float, grid: int = 32) -> Box:
    """Patch cells → pixel box of a ``width × height`` image."""
    x1, y1, x2, y2 = patch_indices_to_normalized(ul, lr, grid)
    return [x1 * width, y1 * height, x2 * width, y2 * height]


def patch_grid_step(width: float, height: float, grid: int = 32) -> tuple[float, float]:
    """Pixels per patch cell: the round-trip tolerance of the patch spelling."""
    return width / grid, height / grid


@dataclass(frozen=True, slots=True)
class PatchGrid:
    """The KOSMOS-2 grid as a grid kind: a box is two values, its upper-left and lower-right cell."""

    grid: int = 32
    columns: ClassVar[tuple[str, ...]] = ()

    @property
    def max_index(self) -> int:
        return self.grid * self.grid - 1

    def encode_box(self, box: Sequence[float], width: float, height: float) -> list[int]:
        return list(box_to_patch_indices(box, width, height, self.grid))

    def encode_many(self, boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_box` of many boxes, same IEEE operations (``normalize``, floor, ceil, clamp)."""
        grid = self.grid
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            nx1, nx2 = boxes[:, 0] / widths, boxes[:, 2] / widths
            ny1, ny2 = boxes[:, 1] / heights, boxes[:, 3] / heights
            cells = [np.floor(nx1 * grid), np.floor(ny1 * grid), np.ceil(nx2 * grid - 1), np.ceil(ny2 * grid - 1)]
            ok = (nx2 > nx1) & (ny2 > ny1) & np.isfinite(np.stack(cells, axis=1)).all(axis=1)
            cells = [np.clip(np.where(np.isfinite(c), c, 0.0), 0, grid - 1).astype(np.int64) for c in cells]
        ul_x, ul_y, lr_x, lr_y = cells
        return np.stack([ul_y * grid + ul_x, lr_y * grid + lr_x], axis=1), ok

    def collapsed(self, q: np.ndarray) -> np.ndarray:
        """Upper-left not up and left of lower-right: a box narrower than float noise at a cell edge."""
        grid = self.grid
        return (q[:, 0] % grid > q[:, 1] % grid) | (q[:, 0] // grid > q[:, 1] // grid)

    def is_collapsed(self, q: Sequence[int]) -> bool:
        grid = self.grid
        return q[0] % grid > q[1] % grid or q[0] // grid > q[1] // grid

    def decode_box(self, q: Sequence[int], width: float, height: float) -> Box:
        return patch_indices_to_box(q[0], q[1], width, height, self.grid)

    def step(self, width: float, height: float) -> tuple[float, float]:
        return patch_grid_step(width, height, self.grid)

    def in_range(self, q: int) -> bool:
        return 0 <= q <= self.max_index

    def size_columns(self, width: int, height: int) -> tuple[tuple[str, int], ...]:
        """Columns a record of this grid carries besides the image size (none: the grid is the size's)."""
        return ()


# --- pixels of a resized image (Qwen2.5-VL) -----------------------------------------------------------


class Resize(Protocol):
    def resized(self, width: int, height: int) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class ResizedPixels:
    """Absolute pixels of the image after the model's resize: a grid whose scale is per sample and per axis.

    Each axis is a :class:`Quantizer` of ``scale = new side``, ``arithmetic='ratio'`` (``v * (new / size)``),
    clamped to the last pixel ``new - 1``.  ``resize`` gives ``(new_w, new_h)`` from the original size and
    raises :class:`BoxError` for a size it cannot resize; the new size is also written in the record
    (``columns``), so a reader can decode without knowing the resize.
    """

    resize: Resize
    rounding: Rounding = "round"
    columns: tuple[str, str] = ("resized_width", "resized_height")

    def axes(self, width: int, height: int) -> tuple[Quantizer, Quantizer]:
        new_w, new_h = self.resize.resized(width, height)
        return self.axis(new_w), self.axis(new_h)

    def axis(self, new: int) -> Quantizer:
        return Quantizer(scale=new, rounding=self.rounding, max_index=new - 1, arithmetic="ratio")

    def size_columns(self, width: int, height: int) -> tuple[tuple[str, int], ...]:
        return tuple(zip(self.columns, self.resize.resized(width, height), strict=True))

    def encode_box(self, box: Sequence[float], width: float, height: float) -> list[int]:
        if width <= 0 or height <= 0:
            raise BoxError(f"image size {width}x{height} cannot quantize a box")
        qx, qy = self.axes(int(width), int(height))
        x1, y1, x2, y2 = box
        return [qx.encode(x1, width), qy.encode(y1, height), qx.encode(x2, width), qy.encode(y2, height)]

    def encode_many(self, boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode_box` of many boxes: the new sizes once per distinct size, then the same IEEE operations."""
        news = np.zeros((len(boxes), 2), dtype=np.int64)
        ok = np.ones(len(boxes), dtype=bool)
        pairs = np.stack([widths, heights], axis=1) if len(boxes) else np.zeros((0, 2), dtype=np.int64)
        distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
        for k, (w, h) in enumerate(distinct.tolist()):
            at = inverse.reshape(-1) == k
            try:
                news[at] = self.resize.resized(w, h)
            except BoxError:
                ok[at] = False
        news = np.where(ok[:, None], news, 1)
        sizes = np.stack([widths, heights, widths, heights], axis=1).astype(np.float64)
        new4 = news[:, [0, 1, 0, 1]]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            scaled = boxes * (new4 / sizes)
            ok &= np.isfinite(scaled).all(axis=1)
            safe = np.where(np.isfinite(scaled), scaled, 0.0)
            q = np.floor(safe) if self.rounding == "floor" else np.rint(safe)
        return np.clip(q, 0, new4 - 1).astype(np.int64), ok

    collapsed = staticmethod(Quantizer.collapsed)
    is_collapsed = staticmethod(Quantizer.is_collapsed)

    def decode_box(self, q: Sequence[int], width: float, height: float, new: tuple[int, int] | None = None) -> Box:
        """Pixels of the original image; ``new`` is the record's resized size (else computed)."""
        qx, qy = (self.axis(new[0]), self.axis(new[1])) if new else self.axes(int(width), int(height))
        return [qx.decode(q[0], width), qy.decode(q[1], height), qx.decode(q[2], width), qy.decode(q[3], height)]

    def step(self, width: float, height: float) -> tuple[float, float]:
        new_w, new_h = self.resize.resized(int(width), int(height))
        return width / new_w, height / new_h


def max_abs_error(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Largest |difference| along x (x1, x2) and along y (y1, y2)."""
    return max(abs(a[0] - b[0]), abs(a[2] - b[2])), max(abs(a[1] - b[1]), abs(a[3] - b[3]))
