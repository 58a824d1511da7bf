"""Property tests of grounding_convert.boxes: every writer's arithmetic rests on these invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from grounding_convert import boxes
from grounding_convert.boxes import BoxError, Quantizer

EPS = 1e-9
sizes = st.integers(1, 5000)
coords = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def image_and_box(draw, min_extent: float = 0.0):
    """An image size and a box inside it (x1 <= x2, y1 <= y2), possibly touching the borders."""
    width, height = draw(sizes), draw(sizes)
    xs = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2)))
    ys = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2)))
    assume(xs[1] - xs[0] > min_extent * width and ys[1] - ys[0] > min_extent * height)
    return width, height, [xs[0], ys[0], xs[1], ys[1]]


def within(a: list[float], b: list[float], step: tuple[float, float], slack: float = 1.0) -> bool:
    dx, dy = boxes.max_abs_error(a, b)
    return dx <= step[0] * slack * (1 + EPS) + EPS and dy <= step[1] * slack * (1 + EPS) + EPS


# --- conversions --------------------------------------------------------------------------------------


@given(coords, coords, st.floats(0, 1e6), st.floats(0, 1e6))
def test_xywh_xyxy_round_trip(x: float, y: float, w: float, h: float) -> None:
    box = boxes.xywh_to_xyxy(x, y, w, h)
    assert box[0] == x and box[1] == y and box[2] >= box[0] and box[3] >= box[1]
    back = boxes.xyxy_to_xywh(box)
    assert back[0] == x and back[1] == y
    assert math.isclose(back[2], w, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(back[3], h, rel_tol=1e-9, abs_tol=1e-6)


def test_xywh_known_values() -> None:
    assert boxes.xywh_to_xyxy(10, 20, 30, 40) == [10.0, 20.0, 40.0, 60.0]
    assert boxes.xyxy_to_xywh([10.0, 20.0, 40.0, 60.0]) == [10.0, 20.0, 30.0, 40.0]


@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(0, 5000), st.integers(0, 5000))
def test_one_based_inclusive_covers_the_pixels(xmin: int, ymin: int, dx: int, dy: int) -> None:
    box = boxes.one_based_inclusive_to_xyxy(xmin, ymin, xmin + dx, ymin + dy)
    # pixels xmin..xmax inclusive are dx + 1 pixels wide; the first starts at edge xmin - 1
    assert box == [xmin - 1.0, ymin - 1.0, float(xmin + dx), float(ymin + dy)]
    assert box[2] - box[0] == dx + 1 and box[3] - box[1] == dy + 1


@given(image_and_box())
def test_normalize_and_back(case) -> None:
    width, height, box = case
    normalized = boxes.normalize(box, width, height)
    assert all(0.0 <= v <= 1.0 for v in normalized)
    back = boxes.normalized_to_pixels(normalized, width, height)
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(back, box, strict=True))


@pytest.mark.parametrize(("w", "h"), [(0, 10), (10, 0), (-1, 10)])
def test_normalize_refuses_sizeless_images(w: int, h: int) -> None:
    with pytest.raises(BoxError):
        boxes.normalize([0, 0, 1, 1], w, h)


# --- clip and checks ----------------------------------------------------------------------------------


@given(st.lists(coords, min_size=4, max_size=4), sizes, sizes)
def test_clip_invariants(box: list[float], width: int, height: int) -> None:
    clipped = boxes.clip(box, width, height)
    assert boxes.is_inside(clipped, width, height)
    assert boxes.clip(clipped, width, height) == clipped  # idempotent
    # each edge moves only as far as the border
    for value, got, limit in zip(box, clipped, (width, height, width, height), strict=True):
        assert got == min(max(value, 0.0), float(limit))
    # is_inside checks only x1, y1 >= 0 and x2 <= W, y2 <= H: meaningful for non-empty boxes
    if boxes.is_inside(box, width, height) and not boxes.is_empty(box):
        assert clipped == [float(v) for v in box]
    # clipping never creates area; an empty box stays empty
    assert boxes.area(clipped) <= boxes.area(box) + EPS
    if boxes.is_empty(box):
        assert boxes.is_empty(clipped)


def test_checks_known_values() -> None:
    assert boxes.is_empty([5, 5, 5, 9]) and boxes.is_empty([6, 5, 5, 9]) and not boxes.is_empty([5, 5, 6, 9])
    assert boxes.is_finite([0, 1, 2, 3]) and not boxes.is_finite([0, 1, 2, float("inf")])
    assert not boxes.is_finite([0, 1, 2]) and not boxes.is_finite([0, 1, 2, "3"])
    assert boxes.clip([-5, -5, 700, 500], 640, 480) == [0.0, 0.0, 640.0, 480.0]
    assert boxes.area([0, 0, 2, 3]) == 6 and boxes.area([2, 0, 0, 3]) == 0


# --- quantization -------------------------------------------------------------------------------------

QUANTIZERS = [
    Quantizer(scale=1000, rounding="floor", max_index=999),  # Qwen-VL
    Quantizer(scale=999, rounding="round", max_index=999),  # OFA
    Quantizer(scale=1000, rounding="round", max_index=999),  # rounded per-mille with a clamp
]


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: f"{q.scale}-{q.rounding}")
@settings(max_examples=300, deadline=None)
@given(case=image_and_box())
def test_quantizer_in_range_and_within_one_step(quantizer: Quantizer, case) -> None:
    width, height, box = case
    q = quantizer.encode_box(box, width, height)
    assert all(quantizer.in_range(v) for v in q)
    assert q[0] <= q[2] and q[1] <= q[3]  # order is kept
    decoded = quantizer.decode_box(q, width, height)
    assert within(decoded, box, quantizer.step(width, height))
    # decoding never leaves the image
    assert boxes.is_inside(decoded, width * (1 + EPS), height * (1 + EPS))


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: f"{q.scale}-{q.rounding}")
@given(value=st.floats(-1e4, 1e4, allow_nan=False), size=sizes)
def test_quantizer_clamps_outside_values(quantizer: Quantizer, value: float, size: int) -> None:
    assert 0 <= quantizer.encode(value, size) <= quantizer.max_index


def test_quantizer_known_values() -> None:
    qwen, ofa = QUANTIZERS[0], QUANTIZERS[1]
    assert qwen.encode_box([100, 50, 300, 390], 640, 480) == [156, 104, 468, 812]  # 812.5 truncates
    assert ofa.encode_box([100, 50, 300, 390], 640, 480) == [156, 104, 468, 812]  # round(811.69)
    assert qwen.encode(640, 640) == 999 and ofa.encode(640, 640) == 999
    assert qwen.decode(156, 640) == pytest.approx(100.16)  # centre of the floored cell
    assert ofa.decode(999, 640) == pytest.approx(640.0)
    assert qwen.step(640, 480) == (0.64, 0.48)
    assert not qwen.in_range(1000) and not qwen.in_range(-1) and qwen.in_range(0)
    with pytest.raises(BoxError):
        qwen.encode(1.0, 0)


@given(st.integers(0, 999), sizes)
def test_floor_decode_encodes_back_to_the_same_index(index: int, size: int) -> None:
    qwen = QUANTIZERS[0]
    assert qwen.encode(qwen.decode(index, size), size) == index


# --- KOSMOS-2 patch grid ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(case=image_and_box(min_extent=1e-6), grid=st.sampled_from([32, 16, 7]))
def test_patch_round_trip_within_one_cell(case, grid: int) -> None:
    width, height, box = case
    ul, lr = boxes.box_to_patch_indices(box, width, height, grid)
    assert 0 <= ul < grid * grid and 0 <= lr < grid * grid
    assert ul % grid <= lr % grid and ul // grid <= lr // grid  # upper-left really is up and left
    decoded = boxes.patch_indices_to_box(ul, lr, width, height, grid)
    assert within(decoded, box, boxes.patch_grid_step(width, height, grid))


def test_patch_worked_example() -> None:
    # FORMATS.md: 640x480, [100, 50, 300, 390] → <patch_index_0101>, <patch_index_0814>
    assert boxes.box_to_patch_indices([100, 50, 300, 390], 640, 480) == (101, 814)
    assert boxes.patch_indices_to_normalized(101, 814) == pytest.approx([5.5 / 32, 3.5 / 32, 14.5 / 32, 25.5 / 32])
    # one cell (ul == lr) decodes to the whole cell
    assert boxes.patch_indices_to_normalized(33, 33) == pytest.approx([1 / 32, 1 / 32, 2 / 32, 2 / 32])


def test_patch_refuses_empty_boxes() -> None:
    with pytest.raises(BoxError):
        boxes.box_to_patch_indices([10, 10, 10, 20], 100, 100)


@settings(max_examples=500, deadline=None)
@given(
    st.integers(1, 5000),
    st.integers(1, 5000),
    st.lists(st.floats(-100, 6000, allow_nan=False), min_size=4, max_size=4),
    st.sampled_from([(1000, "floor", 999), (999, "round", 999), (1000, "round", 999)]),
)
def test_encode_box_fast_path_equals_encode_per_corner(width, height, box, spec):
    q = boxes.Quantizer(*spec)
    x1, y1, x2, y2 = box
    assert q.encode_box(box, width, height) == [
        q.encode(x1, width),
        q.encode(y1, height),
        q.encode(x2, width),
        q.encode(y2, height),
    ]


def test_is_finite_refuses_what_is_not_four_finite_numbers():
    assert boxes.is_finite([0, 1.5, 2, 3])
    for bad in (
        [0, 1, 2],
        [0, 1, 2, 3, 4],
        [0, 1, 2, float("nan")],
        [0, 1, float("inf"), 3],
        ["0", 1, 2, 3],
        [None, 1, 2, 3],
        None,
        5,
    ):
        assert not boxes.is_finite(bad)


@settings(max_examples=300)
@given(
    box=st.lists(
        st.one_of(st.floats(-2, 2, allow_nan=False), st.sampled_from([0.0, -0.0, 1.0])), min_size=4, max_size=4
    ),
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
)
def test_denormalize_clipped_many_equals_the_scalar_version(box, width, height):
    pixels, clipped = boxes.denormalize_clipped_many(np.array([box]), np.array([width]), np.array([height]))
    expected, was_clipped = boxes.denormalize_clipped(box, width, height)
    assert repr(pixels[0].tolist()) == repr(expected)  # repr: -0.0 and 0.0 must not be confused
    assert bool(clipped[0]) == was_clipped
