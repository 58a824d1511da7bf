"""Counting a batch of samples at once gives the same tally as counting them one by one."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.engine.tally import Tally, histogram_columns
from grounding_convert.schema import ImageRef, Region, Sample

coordinate = st.floats(-10, 5000, allow_nan=False) | st.just(math.nan)


@st.composite
def sample(draw, index: int) -> Sample:
    size = draw(st.sampled_from([(640, 480), (1, 1), (0, 0), (5000, 3)]))
    regions = [
        Region("thing", None, [[draw(coordinate) for _ in range(4)] for _ in range(draw(st.integers(0, 3)))])
        for _ in range(draw(st.integers(0, 15)))
    ]
    text = " ".join(["w"] * draw(st.integers(0, 60)))
    return Sample(f"s/{index}", "grit", None, ImageRef(f"{index}.jpg", None, *size), text, None, regions)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_count_written_columns_equals_one_by_one(data):
    samples = [data.draw(sample(i)) for i in range(data.draw(st.integers(1, 8)))]
    per_sample = [data.draw(st.sampled_from([{}, {"rec": 2, "grounded-caption": 1}, {"reg": 1}])) for _ in samples]
    one = Tally()
    for s, per_task in zip(samples, per_sample, strict=True):
        if per_task:
            one.count_written(s, per_task)
    boxes = [b for s in samples for r in s.regions for b in r.boxes]
    owner = [i for i, s in enumerate(samples) for r in s.regions for _ in r.boxes]
    tasks = ["rec", "reg", "grounded-caption"]
    counts = np.array([[per_task.get(t, 0) for per_task in per_sample] for t in tasks], dtype=np.int64)
    many = Tally()
    many.count_written_columns(
        samples[0].split,
        *histogram_columns(samples),
        tasks,
        counts,
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        np.array(owner, dtype=np.int64),
    )
    assert many.to_dict() == one.to_dict()
