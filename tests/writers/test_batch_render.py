"""The columnar path (writers/batch.py) renders exactly what the per-record path renders, or hands back
the samples the per-record path refuses: for every writer, both derived from the writer's convention."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding_convert.errors import RecordError, UsageError
from grounding_convert.plugins import get_writer, writer_names
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.writers import batch
from grounding_convert.writers.base import WriterOptions, record_rng, sample_state
from grounding_convert.writers.qwen_vl import QwenVlWriter

# every installed writer with a convention (ODVG and canonical render themselves, per record)
WRITERS = [name for name in writer_names() if get_writer(name).convention is not None]
# every writer, and the options that change its convention or its common columns
VARIANTS = [
    *[(name, dict(get_writer(name).demo_options)) for name in WRITERS],
    ("ofa", {"multi_box": "union"}),
    ("qwen2.5-vl", {"resize_profile": "qwen-sft-script", "box_format": "tokens"}),
    ("qwen2.5-vl", {"min_pixels": 784, "max_pixels": 50176, "json_fence": "false", "language": "zh"}),
    ("qwen2.5-vl", {"resize_profile": "llamafactory"}),
    ("qwen3-vl", {"max_coord": "999", "json_fence": "false"}),
    ("qwen3-vl", {"box_format": "tokens", "language": "zh"}),
    ("internvl", {"language": "mixed", "image_prefix": "/data/grit/"}),
    ("qwen-vl", {"language": "mixed", "image_prefix": "/data/grit/"}),
    ("cogvlm", {"language": "zh"}),
    ("ofa", {"language": "zh"}),
    # trainer layouts (layouts.py) take the writer's columnar path with messages as the conversation
    ("qwen-vl", {"layout": "llamafactory"}),
    ("qwen2-vl", {"layout": "ms-swift", "language": "mixed"}),
    ("qwen2.5-vl", {"resize_profile": "llamafactory", "layout": "llamafactory"}),
    ("qwen3-vl", {"layout": "ms-swift"}),
    ("internvl", {"layout": "llamafactory", "image_prefix": "/data/grit/"}),
    ("cogvlm", {"layout": "ms-swift"}),
]


def make(name: str, options: dict):
    return get_writer(name).from_mapping(options)


TASK_SETS = [
    ("rec", "reg", "grounded-caption", "pointing"),
    ("grounded-caption",),
    ("reg", "rec"),
    ("grounded-caption", "rec"),
]

WORDS = ["a", "dog", "Red", "car", "man", "on", "the", "road", "tall-ish", "building/house"]
WORDS += ["..", ",", "-", "木", "Ä", " "]  # OFA's pre_caption strips, splits and collapses these


@st.composite
def samples(draw, index: int = 0) -> Sample:
    width = draw(st.integers(1, 5000))
    height = draw(st.integers(1, 5000))
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=10))
    text = " ".join(words)
    regions = []
    for _ in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, len(text) - 1))
        b = draw(st.integers(a + 1, len(text)))
        span = draw(st.sampled_from([(a, b), None])) if draw(st.booleans()) else (a, b)
        boxes = []
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.integers(0, 19)):  # mostly boxes that survive quantization…
                fx, fy = draw(st.floats(0, 0.9)), draw(st.floats(0, 0.9))
                fw, fh = draw(st.floats(0.0015, 1 - fx)), draw(st.floats(0.0015, 1 - fy))
                x1, y1 = fx * width, fy * height
                boxes.append([x1, y1, min(width, x1 + fw * width), min(height, y1 + fh * height)])
            else:  # …and now and then one that may collapse, which the per-record path refuses
                x1 = draw(st.floats(0, width))
                y1 = draw(st.floats(0, height))
                boxes.append([x1, y1, draw(st.floats(x1, width)), draw(st.floats(y1, height))])
        regions.append(Region(text[a:b], span, boxes))
    sample_id = f"grit/{draw(st.integers(0, 10**12))}/{index}"
    return Sample(sample_id, "grit", "train", ImageRef(f"{index}.jpg", str(index), width, height), text, None, regions)


def per_record(writer, sample_list, tasks, seed):
    records, counts, refused = [], [], []
    for position, sample in enumerate(sample_list):
        try:
            rendered = writer.render_tasks(sample, tasks, seed)
        except (RecordError, ValueError, OverflowError):
            refused.append(position)
            counts.append(None)
            continue
        counts.append({task: len(rs) for task, rs in rendered if rs})
        records += [r for _, rs in rendered for r in rs]
    return records, counts, refused


def check(writer, sample_list, tasks, seed):
    tasks = tuple(t for t in tasks if t in writer.tasks)
    if not sample_list or not tasks:
        return
    assert all(writer.batchable(s) for s in sample_list)
    result = writer.render_batch(sample_list, tasks, seed)
    records, counts, refused = per_record(writer, sample_list, tasks, seed)
    if isinstance(result, list):
        assert refused and set(result) <= set(refused), (result, refused)
        assert result == sorted(result)
        # the rest must still render equal (else one refused sample would make the whole comparison vacuous)
        check(writer, [s for i, s in enumerate(sample_list) if i not in set(refused)], tasks, seed)
        return
    assert not refused
    assert result.batch.schema.equals(writer.schema())
    assert result.batch.to_pylist() == records
    assert result.per_sample == counts


@pytest.mark.parametrize("name, options", VARIANTS, ids=lambda v: str(v))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tasks=st.sampled_from(TASK_SETS), seed=st.integers(0, 2**32))
def test_batch_equals_per_record(name, options, data, tasks, seed):
    """Hypothesis samples: the columnar records equal the per-record ones, record for record."""
    count = data.draw(st.integers(1, 6))
    sample_list = [data.draw(samples(i)) for i in range(count)]
    writer = make(name, options)
    check(writer, [s for s in sample_list if writer.batchable(s)], tasks, seed)


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("language", ["en", "zh", "mixed"])
def test_batch_equals_per_record_on_grit_shaped_samples(name, language):
    rng = np.random.default_rng(5)
    sample_list = []
    for i in range(300):
        w, h = int(rng.integers(50, 3000)), int(rng.integers(50, 3000))
        text = "an old man next to a tall building near a red car"
        spans = [(0, 10), (19, 34), (3, 10), (42, 51)][: int(rng.integers(1, 5))]
        regions = []
        for a, b in spans:
            boxes = []
            for _ in range(int(rng.integers(1, 3))):
                x1, y1 = float(rng.uniform(0, w * 0.8)), float(rng.uniform(0, h * 0.8))
                boxes.append(
                    [x1, y1, x1 + float(rng.uniform(w * 0.01, w * 0.2)), y1 + float(rng.uniform(h * 0.01, h * 0.2))]
                )
            regions.append(Region(text[a:b], (a, b), boxes))
        sample_list.append(
            Sample(f"grit/{i}", "grit", "train", ImageRef(f"{i}.jpg", str(i), w, h), text, None, regions)
        )
    writer = make(name, {**get_writer(name).demo_options, "language": language, "image_prefix": "/data/grit/"})
    for tasks in TASK_SETS:
        check(writer, sample_list, tasks, seed=11)


@pytest.mark.parametrize("name, refused", [("qwen-vl", [1, 3, 4]), ("ofa", [1, 3, 4]), ("cogvlm", [1, 4]),
                                           ("kosmos-2", [3, 4])])  # fmt: skip
def test_refused_samples_are_named_and_rendered_one_by_one(name, refused):
    ok = Sample("grit/1", "grit", "train", ImageRef("1.jpg", "1", 1000, 1000), "a dog", None,
                [Region("a dog", (0, 5), [[10.0, 10.0, 200.0, 200.0]])])  # fmt: skip
    tiny = Sample("grit/2", "grit", "train", ImageRef("2.jpg", "2", 5000, 5000), "a dot", None,
                  [Region("a dot", (0, 5), [[10.0, 10.0, 10.5, 10.5]])])  # fmt: skip
    huge = Sample("grit/3", "grit", "train", ImageRef("3.jpg", "3", 10, 10), "a ray", None,
                  [Region("a ray", (0, 5), [[0.0, 0.0, 1e308, 1e308]])])  # fmt: skip
    nan = Sample("grit/4", "grit", "train", ImageRef("4.jpg", "4", 10, 10), "a nan", None,
                 [Region("a nan", (0, 5), [[0.0, 0.0, math.nan, 5.0]])])  # fmt: skip
    writer = get_writer(name)()
    tasks = ("rec", "reg", "grounded-caption")
    assert writer.render_batch([ok, tiny, ok, huge, nan], tasks, 0) == refused
    if 1 in refused:  # a half-pixel box in 5000 px collapses on a 1000-step grid, not on KOSMOS-2's 32 cells
        with pytest.raises(RecordError, match="collapses"):
            writer.render_tasks(tiny, tasks, 0)
    with pytest.raises(RecordError, match="finite"):
        writer.render_tasks(nan, tasks, 0)
    if 3 in refused:  # CogCoM clamps pixels to size - 1 first, so CogVLM spells even this one
        with pytest.raises(RecordError, match="too large"):
            writer.render_tasks(huge, tasks, 0)


def test_not_batchable():
    writer = QwenVlWriter()
    base = Sample("grit/1", "grit", "train", ImageRef("1.jpg", "1", 100, 100), "a dog", None,
                  [Region("a dog", (0, 5), [[1.0, 1.0, 50.0, 50.0]])])  # fmt: skip
    assert writer.batchable(base)
    tagged = Sample(**{**_fields(base), "text": "a <ref>dog"})
    qa = Sample(**{**_fields(base), "regions": [Region("a dog", None, [[1.0, 1.0, 5.0, 5.0]], role="answer")]})
    floaty = Sample(**{**_fields(base), "image": ImageRef("1.jpg", "1", 100.0, 100)})
    no_text = Sample(**{**_fields(base), "text": None})
    odd_phrase = Sample(**{**_fields(base), "regions": [Region(None, (0, 5), [[1.0, 1.0, 5.0, 5.0]])]})
    for sample in (tagged, qa, floaty, no_text, odd_phrase):
        assert not writer.batchable(sample)


def _fields(sample: Sample) -> dict:
    return {name: getattr(sample, name) for name in Sample.__slots__}


def test_first_draws_match_record_random():
    states = np.array([sample_state(s, f"grit/{i}") for s in range(3) for i in range(50)], dtype=np.uint64)
    crcs = batch.suffix_crcs("rec", list(range(len(states))))
    for n in (1, 3, 4, 7):
        draws = batch.first_draws(states, crcs, n)
        expected = [record_rng(int(state), f"rec/{i}").randrange(n) for i, state in enumerate(states)]
        assert draws.tolist() == expected


@pytest.mark.parametrize(
    "template, usable",
    [
        ("Locate {phrase} in the image.", True),
        ("{{literal braces}} then {phrase}", True),
        ("{phrase!r}", False),  # repr() would quote and escape: only the per-record path gets that right
        ("{phrase:>20}", False),
        ("{phrase} and {phrase}", False),
        ("no placeholder", False),
        ("{other}", None),  # not a template of this task at all: a usage error, whichever path
        ("unbalanced {", None),
    ],
)
def test_only_plain_one_placeholder_templates_take_the_columnar_path(tmp_path, template, usable):
    path = tmp_path / "templates.yaml"
    path.write_text(
        "rec: [" + repr(template) + "]\nreg: ['{boxes}']\ngrounded-caption: ['Describe:']\npointing: ['{question}']\n"
    )
    writer = QwenVlWriter(WriterOptions(template_file=str(path)))
    if usable is None:
        with pytest.raises(UsageError, match="not usable"):
            writer.batch_ready(("rec", "reg", "grounded-caption"))
        with pytest.raises(UsageError, match="not usable"):
            writer.render(Sample("g/1", "grit", None, ImageRef("1.jpg", "1", 9, 9), "a", None,
                                 [Region("a", (0, 1), [[1.0, 1.0, 5.0, 5.0]])]), "rec", 0)  # fmt: skip
        return
    assert writer.batch_ready(("rec", "reg", "grounded-caption")) is usable
    if usable:
        sample = Sample("grit/1", "grit", "train", ImageRef("1.jpg", "1", 100, 100), "a dog's toy", None,
                        [Region("a dog's toy", (0, 11), [[1.0, 1.0, 50.0, 50.0]])])  # fmt: skip
        check(writer, [sample], ("rec", "reg", "grounded-caption"), 0)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text(), min_size=1, max_size=8))
def test_column_normalizers_equal_their_python_reference(texts):
    from grounding_convert.writers.convention import NORMALIZERS

    texts = [t for t in texts if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
    for kind in ("strip", "pre_caption"):
        assert batch.normalized(kind, pa.array(texts, pa.string())).to_pylist() == [NORMALIZERS[kind](t) for t in texts]


@pytest.mark.parametrize(
    "texts",
    [["plain words", "a b c"], ["a-b", "x/y"], ["<person> waves", "the <PERSON>"], ["two  spaces", "tab\t\tx", "end\n"],
     ["caf\u00e9-bar  x", "Ok"], ["- lead", "trail -", "a\x1c\x1db"]],
)  # fmt: skip
def test_normalizers_skip_only_the_replacements_that_cannot_apply(texts):
    """pre_caption's replacements run only where their first byte occurs (and the run squeeze only where two
    whitespace bytes meet): each case below needs some of them, none, or all."""
    from grounding_convert.writers.convention import NORMALIZERS

    for kind in ("strip", "pre_caption"):
        assert batch.normalized(kind, pa.array(texts, pa.string())).to_pylist() == [NORMALIZERS[kind](t) for t in texts]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 10**6).map(lambda i: i / 200)))
def test_two_decimals_equals_python_formatting(values):
    array = np.array(values, dtype=np.float64)
    assert batch.two_decimals(array).to_pylist() == [f"{v:.2f}" for v in array]
    rows = array[: len(array) // 4 * 4].reshape(-1, 4)  # region_coord's four corners, in one join
    assert batch.decimal_columns(rows).to_pylist() == [",".join(f"{v:.2f}" for v in row) for row in rows]


def test_layouts_hand_back_samples_whose_records_spell_image_tokens():
    """A record whose messages hold <image> beyond the user turn's head sends its sample to the per-record
    path (which refuses it with the reason); the others stay in the batch."""
    from grounding_convert.layouts import LaidOut

    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    rows = [
        [{"role": "user", "content": "<image>find a dog"}, {"role": "assistant", "content": "x"}],  # sample 0
        [{"role": "user", "content": "<image>a <image> dog"}, {"role": "assistant", "content": "x"}],  # sample 1
        [{"role": "user", "content": "<image>find"}, {"role": "assistant", "content": "ok"}],  # sample 1
        [{"role": "user", "content": "<image>find"}, {"role": "assistant", "content": "an <image>"}],  # sample 2
        [{"role": "user", "content": "<image>find"}, {"role": "assistant", "content": "fine"}],  # sample 3
    ]
    messages = pa.array(rows, pa.list_(turn))
    counts = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])  # rec, reg, grounded-caption × 4 samples
    assert LaidOut._stray_image_tokens(messages, counts) == [1, 2]
    assert LaidOut._stray_image_tokens(messages.slice(4), counts[:, 3:]) == []
