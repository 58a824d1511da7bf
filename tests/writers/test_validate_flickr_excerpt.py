"""`validate --source` on the real Flickr30K Entities excerpt, for every model writer and all its tasks."""

from __future__ import annotations

import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.tools.validate import validate


@pytest.mark.parametrize("writer", ["qwen-vl", "ofa", "kosmos-2", "cogvlm"])
def test_every_decoded_box_is_within_one_step(flickr_excerpt, tmp_path, writer):
    job = make_job(
        input=str(flickr_excerpt),
        output=str(tmp_path / "out"),
        writer=writer,
        reader="flickr30k-entities",
        format="parquet",
    )
    result = convert(job, RunOptions(workers=2, progress=False))
    records = result.tally.records["test"]
    # 3,574 mentions; 575 have no box, so 2,999 regions make REC/REG records; 4 captions have no box at all.
    assert records["rec"] == records["reg"] == 2999
    assert records["grounded-caption"] == 996
    assert result.tally.rejected == 0
    report = validate(str(tmp_path / "out"), str(flickr_excerpt), "flickr30k-entities", {})
    assert report.ok, report.messages
    assert report.records == 2999 * 2 + 996
    assert report.boxes_checked > 4606  # every box of every record (REC, REG and caption) was compared
    assert 0.0 < report.worst_steps <= 1.0
