"""Which phrasing a record gets depends on (seed, record id) alone, for every writer, and spreads over the pool."""

from __future__ import annotations

from collections import Counter

import pytest

from grounding_convert.plugins import get_writer
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.writers.base import RecordRandom, record_rng, sample_state

WRITERS = ["qwen-vl", "ofa", "kosmos-2", "cogvlm"]


def sample(sample_id: str = "grit/7", regions: int = 2) -> Sample:
    text = "a dog next to a red car on the road"
    spans = [(0, 5), (14, 23), (27, 35)][:regions]
    boxes = [[10.0, 20.0, 200.0, 300.0], [150.0, 40.0, 600.0, 420.0], [0.0, 300.0, 640.0, 480.0]]
    return Sample(
        sample_id,
        "grit",
        "train",
        ImageRef("7.jpg", "7", 640, 480),
        text,
        regions=[Region(text[a:b], (a, b), [boxes[i]]) for i, (a, b) in enumerate(spans)],
    )


def prompt_of(record: dict) -> str:
    """The part of a record that carries the drawn phrasing, whatever the writer's layout."""
    if "conversations" in record:
        turn = record["conversations"][0]
        return turn.get("value", turn.get("content"))
    return record.get("source", record.get("prompt"))


@pytest.mark.parametrize("name", WRITERS)
def test_render_tasks_equals_render_task_by_task(name):
    writer = get_writer(name)()
    tasks = [t for t in writer.tasks if t != "pointing"]
    for seed in (0, 1, 99):
        together = writer.render_tasks(sample(), tasks, seed)
        assert together == [(task, writer.render(sample(), task, seed)) for task in tasks]
        assert all(records for _, records in together)


@pytest.mark.parametrize("name", WRITERS)
def test_a_record_does_not_change_when_other_regions_do(name):
    """rec/0 of a sample is the same record whether the sample has one region or three."""
    writer = get_writer(name)()
    for seed in range(5):
        for task in ("rec", "reg"):
            alone = writer.render(sample(regions=1), task, seed)[0]
            among = writer.render(sample(regions=3), task, seed)[0]
            assert alone["id"] == among["id"] == f"grit/7/{task}/0"
            assert alone == among


@pytest.mark.parametrize("name", ["qwen-vl", "cogvlm"])  # OFA and KOSMOS-2 train on one fixed REC prompt
def test_phrasings_spread_over_the_whole_pool(name):
    writer = get_writer(name)()
    pool = writer.template_pool("rec")
    assert len(pool) >= 2
    seen = Counter(prompt_of(writer.render(sample(f"grit/{i}"), "rec", 0)[0]) for i in range(400))
    assert len(seen) == len(pool), seen  # every phrasing is drawn…
    assert max(seen.values()) < 400 / len(pool) * 1.6  # …and none dominates
    by_seed = {prompt_of(writer.render(sample(), "rec", seed)[0]) for seed in range(40)}
    assert len(by_seed) == len(pool)  # the seed moves the choice too


def test_record_random_is_a_function_of_seed_and_record_id():
    state = sample_state(3, "grit/7")
    assert state == sample_state(3, "grit/7") != sample_state(4, "grit/7") != sample_state(3, "grit/8")
    draws = [record_rng(state, suffix).randrange(1 << 40) for suffix in ("rec/0", "rec/1", "reg/0", "grounded-caption")]
    assert len(set(draws)) == 4
    assert draws[0] == record_rng(sample_state(3, "grit/7"), "rec/0").randrange(1 << 40)
    rng = RecordRandom(5)
    items = list(range(10))
    rng.shuffle(items)
    assert sorted(items) == list(range(10)) and items != list(range(10))
