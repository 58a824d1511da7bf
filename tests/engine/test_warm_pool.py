"""The pool started before a run's serial start (engine/local.py: warm_pool) never outlives the run."""

from __future__ import annotations

import multiprocessing

import pytest

from grounding_convert.engine.local import warm_pool
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import GroundingConvertError


def test_one_worker_has_no_pool():
    with warm_pool(1) as pool:
        assert pool is None


def test_the_workers_warm_up_and_end_with_the_block():
    with warm_pool(2) as pool:
        assert pool is not None
        assert pool.submit(sorted, [3, 1, 2]).result() == [1, 2, 3]
        children = multiprocessing.active_children()
        assert len(children) >= 2
    assert not any(child.is_alive() for child in children)


def test_a_refused_run_leaves_no_worker(tmp_path, flickr_excerpt, monkeypatch):
    """A run refused after its pool started (an output folder holding a user's file, no --overwrite) ends
    the pool's workers before the refusal reaches the caller, and touches nothing."""
    from grounding_convert.engine import local

    made = []
    real = local.new_pool
    monkeypatch.setattr(local, "new_pool", lambda workers: made.append(workers) or real(workers))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("a user's file\n")
    before = set(multiprocessing.active_children())
    with pytest.raises(GroundingConvertError, match="taken"):
        convert(make_job(input=str(flickr_excerpt), output=str(taken), writer="qwen-vl",
                         reader="flickr30k-entities"), RunOptions(workers=2, progress=False))  # fmt: skip
    assert made == [2]  # the pool was up when the run was refused
    assert not [child for child in multiprocessing.active_children() if child not in before]
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
