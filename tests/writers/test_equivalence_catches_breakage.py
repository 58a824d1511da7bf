"""The equivalence tests of the two rendering paths fail on a deliberately broken copy (issue 13).

Each test here breaks one piece of the columnar path (or of the engine) the way a plausible bug would, runs
the same comparison the equivalence tests run, and asserts that the comparison now fails.  If a comparison
could not see these breakages, the tests that rely on it would prove nothing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from test_batch_render import TASK_SETS, WRITERS, check, make

from grounding_convert.output import arrow_json
from grounding_convert.plugins import get_writer
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.writers import batch


def grit_samples(n: int = 60) -> list[Sample]:
    rng = np.random.default_rng(9)
    text = "an old man next to a tall building near a red car"
    samples = []
    for i in range(n):
        w, h = int(rng.integers(50, 3000)), int(rng.integers(50, 3000))
        regions = []
        for a, b in [(0, 10), (19, 34), (42, 51)][: int(rng.integers(1, 4))]:
            x1, y1 = float(rng.uniform(0, w * 0.7)), float(rng.uniform(0, h * 0.7))
            regions.append(Region(text[a:b], (a, b), [[x1, y1, x1 + w * 0.2, y1 + h * 0.2]]))
        samples.append(Sample(f"grit/{i}", "grit", "train", ImageRef(f"{i}.jpg", str(i), w, h), text, None, regions))
    return samples


def _numbers_off_by_one(patch: pytest.MonkeyPatch) -> None:
    real = batch.as_strings
    patch.setattr(batch, "as_strings", lambda values: real(values + 1))


def _two_records_swapped(patch: pytest.MonkeyPatch) -> None:
    real = batch.interleave

    def swapped(counts: np.ndarray) -> np.ndarray:
        order = real(counts)
        if len(order) > 1:
            order[[0, 1]] = order[[1, 0]]
        return order

    patch.setattr(batch, "interleave", swapped)


def _drawn_with_another_seed(patch: pytest.MonkeyPatch) -> None:
    real = batch.sample_state
    patch.setattr(batch, "sample_state", lambda seed, sample_id: real(seed + 1, sample_id))


def _caption_tags_moved(patch: pytest.MonkeyPatch) -> None:
    real = batch.tag_caption
    patch.setattr(batch, "tag_caption", lambda *args, **kwargs: real(*args, **kwargs).replace(" ", "", 1))


def _caption_objects_changed(patch: pytest.MonkeyPatch) -> None:
    real = batch.listed_captions

    def changed(*args, **kwargs):
        objects, names = real(*args, **kwargs)
        return pa.array([text[:-1] for text in objects.to_pylist()], pa.string()), names

    patch.setattr(batch, "listed_captions", changed)


BREAKAGES = {
    "box numbers off by one": _numbers_off_by_one,
    "two records swapped": _two_records_swapped,
    "drawn with another seed": _drawn_with_another_seed,
    "caption tags moved": _caption_tags_moved,
    "caption objects changed": _caption_objects_changed,
}


def _applies(name: str, breakage: str) -> bool:
    """Breakages a writer can show: a draw matters only with several phrasings, tags only in captions."""
    writer = make(name, dict(get_writer(name).demo_options))
    if breakage == "drawn with another seed":
        return any(len(writer.template_pool(t)) > 1 for t in TASK_SETS[0] if t in writer.tasks)
    if breakage == "caption tags moved":  # captions with the phrases tagged in place
        return "grounded-caption" in writer.tasks and writer.convention.listing is None
    if breakage == "caption objects changed":  # captions answered by a list of objects (JSON, `;`-joined)
        return "grounded-caption" in writer.tasks and writer.convention.listing is not None
    return True


CASES = [(name, breakage) for name in WRITERS for breakage in BREAKAGES if _applies(name, breakage)]


def test_every_writer_is_checked_against_the_box_and_order_breakages():
    for name in WRITERS:
        assert (name, "box numbers off by one") in CASES and (name, "two records swapped") in CASES


@pytest.mark.parametrize("name, breakage", CASES)
def test_record_comparison_fails_on_a_broken_columnar_path(name, breakage, monkeypatch):
    """test_batch_render's check passes on the real path and fails on each broken copy."""
    writer = make(name, dict(get_writer(name).demo_options))
    samples = grit_samples()
    tasks = TASK_SETS[0]
    check(writer, samples, tasks, 11)  # the real path: equal
    with monkeypatch.context() as patch:
        BREAKAGES[breakage](patch)
        with pytest.raises(AssertionError):
            check(writer, samples, tasks, 11)


def test_arrow_json_comparison_fails_on_a_broken_escape(monkeypatch):
    """test_arrow_json compares with orjson per row; a missing control-character escape is seen."""
    import orjson

    rows = [{"id": "a\u0001b", "n": 1}, {"id": 'say "hi"\n', "n": 2}]
    batch_ = pa.RecordBatch.from_pylist(rows)
    expected = [orjson.dumps(r).decode() for r in rows]
    assert arrow_json.json_records(batch_, "").to_pylist() == expected
    real = arrow_json._escape
    monkeypatch.setattr(
        arrow_json, "_escape", lambda array: pa.array([v.replace("\\u0001", "") for v in real(array).to_pylist()])
    )
    assert arrow_json.json_records(batch_, "").to_pylist() != expected
