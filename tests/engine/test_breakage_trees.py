"""The whole-tree comparisons of test_batch_path fail on a deliberately broken copy (issue 13).

The record-level comparisons are broken on purpose in tests/writers/test_equivalence_catches_breakage.py;
here the same is done to the comparisons of whole output folders (between the two rendering paths, and
between worker counts), so that their passing means something.
"""

from __future__ import annotations

import os

import pytest
from test_batch_path import odd_grit, run_both, trees_by_workers  # noqa: F401  (odd_grit is a fixture)

from grounding_convert.output import arrow_json
from grounding_convert.writers import batch


def _numbers_off_by_one(patch) -> None:
    real = batch.as_strings
    patch.setattr(batch, "as_strings", lambda values: real(values + 1))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_tree_comparison_fails_on_a_broken_columnar_path(odd_grit, tmp_path, monkeypatch, fmt):  # noqa: F811
    """The whole-tree comparison of test_batch_path sees a one-step box error in the batched output."""
    with monkeypatch.context() as patch:
        _numbers_off_by_one(patch)
        batched, per_record = run_both(patch, tmp_path, "qwen-vl", input=str(odd_grit), reader="grit", format=fmt)
    assert batched.keys() == per_record.keys()
    assert batched != per_record


def test_tree_comparison_fails_on_broken_json_escaping(odd_grit, tmp_path, monkeypatch):  # noqa: F811
    """Arrow → JSON Lines without escaping (Qwen-VL prompts hold a newline) differs from orjson per record."""
    with monkeypatch.context() as patch:
        patch.setattr(arrow_json, "_escape", lambda array: array)
        batched, per_record = run_both(patch, tmp_path, "qwen-vl", input=str(odd_grit), reader="grit", format="jsonl")
    assert batched != per_record


def test_worker_count_comparison_fails_when_records_depend_on_the_process(odd_grit, tmp_path, monkeypatch):  # noqa: F811
    """test_batch_path's worker-count comparison sees records that depend on which process wrote them."""
    real, parent = batch.as_strings, os.getpid()  # workers=2 forks: the broken copy adds 1 there only
    monkeypatch.setattr(batch, "as_strings", lambda values: real(values + (os.getpid() != parent)))
    trees = trees_by_workers(odd_grit, tmp_path)
    assert trees[0] != trees[1]


def forgetting_boxless(make_block):
    """A broken copy of a reader's block maker: its blocks forget the regions without boxes (they number only
    the regions with boxes, and count only those per sample)."""

    def forgetful(*args):
        block = make_block(*args)
        block.region_index = block.region_counts = None
        return block

    return forgetful


def test_block_comparison_fails_when_a_block_forgets_phrases_without_boxes(tmp_path, monkeypatch):
    """test_batch_path's reader-block comparison on Flickr30K Entities sees a block that numbers only the
    phrases with boxes (the record ids and the tally's region counts of the samples with non-visual phrases
    change)."""
    from grounding_convert.readers import flickr30k_entities as flickr
    from grounding_convert.synth import generate

    root = tmp_path / "in"
    generate("flickr30k-entities", root, images=40, seed=6)
    with monkeypatch.context() as patch:
        patch.setattr(flickr, "caption_block", forgetting_boxless(flickr.caption_block))
        batched, per_record = run_both(patch, tmp_path, input=str(root), reader="flickr30k-entities")
    assert batched.keys() == per_record.keys()
    assert batched != per_record


def test_canonical_block_comparison_fails_when_a_block_forgets_phrases_without_boxes(tmp_path, monkeypatch):
    """The canonical reader's block comparison (tests/readers/test_canonical.py) sees a block that numbers
    only the regions with boxes."""
    from grounding_convert.engine.runner import RunOptions, convert, make_job
    from grounding_convert.readers import canonical
    from grounding_convert.synth import generate

    generate("flickr30k-entities", tmp_path / "native", images=40, seed=6)
    source = tmp_path / "canonical"
    convert(make_job(input=str(tmp_path / "native"), output=str(source), writer="canonical",
                     reader="flickr30k-entities"), RunOptions(progress=False))  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(canonical, "block_of", forgetting_boxless(canonical.block_of))
        batched, per_record = run_both(patch, tmp_path, input=str(source), reader="canonical")
    assert batched.keys() == per_record.keys()
    assert batched != per_record
