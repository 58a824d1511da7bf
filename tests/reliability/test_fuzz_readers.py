"""Every reader, fed damaged copies of its own native layout, through the real CLI.

Each example copies a small pristine fixture written by the synth generator, damages one file
(truncation, inserted bytes, non-UTF-8 text, empty file, deleted keys, swapped types, NaN/inf/negative
numbers, duplicated records, unknown ids, changed text) and runs ``grounding-convert convert``.  The
contract: exit 0 with balanced books and explained rejects, or exit 2 with one message naming the file —
never a traceback, never "internal error", and a whole document that no longer parses is never accepted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples on every run: CI must not flake on a newly drawn case
)

READERS = [
    "flickr30k-entities",
    "visual-genome",
    "refcoco",
    "visual7w",
    "grit-parquet",
    "grit-jsonl",
    "grit-img2dataset",
    "canonical",
]


def fuzz_once(kit, name: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = kit.pristine.copy(name, Path(tmp) / "in")
        mutation = data.draw(kit.mutation_strategy(kit.mutable_files(name, root)), label="mutation")
        must_fail = kit.apply(mutation, root) and not kit.is_lenient(name, mutation.file)
        out = Path(tmp) / "out"
        result = kit.cli(*kit.convert_args(name, root, out))
        kit.check_outcome(result, root, out, must_fail=must_fail)


@pytest.mark.parametrize("name", READERS)
@FUZZ
@given(data=st.data())
def test_damaged_input_never_crashes(kit, name, data):
    fuzz_once(kit, name, data)


@pytest.mark.parametrize(
    "name",
    [
        "refcoco+",
        "refcocog",
        "visual7w-images",
        "visual-genome-objects",
        "coco",
        "mdetr",
        "odvg",
        "refcoco-hf",
        "records",
    ],
)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_damaged_input_smoke(kit, name, data):
    """RefCOCO+/RefCOCOg share RefCOCO's code; Visual7W with --image-root reads JPEG headers instead."""
    fuzz_once(kit, name, data)


@pytest.mark.parametrize("name", READERS + ["refcoco+", "refcocog", "visual7w-images", "visual-genome-objects"])
def test_pristine_fixture_converts_cleanly(kit, name, tmp_path):
    """The starting point is valid: no rejects except those the generator plants on purpose."""
    root = kit.pristine.copy(name, tmp_path / "in")
    result = kit.cli(*kit.convert_args(name, root, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    manifest = kit.check_accounting(tmp_path / "out")
    assert manifest["counts"]["written"] > 0
    assert set(manifest["counts"]["reject_reasons"]) <= {"empty-box"}  # VG synth plants one empty box
