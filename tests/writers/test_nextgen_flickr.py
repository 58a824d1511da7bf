"""`validate --source` on the real Flickr30K Entities excerpt for every new writer, task and layout."""

from __future__ import annotations

import orjson
import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.tools.validate import validate

CASES = {
    "qwen2-vl": {},
    "qwen2.5-vl hf": {"resize_profile": "hf"},
    "qwen2.5-vl sft": {"resize_profile": "qwen-sft-script", "box_format": "tokens"},
    "qwen2.5-vl llamafactory": {"resize_profile": "llamafactory", "layout": "llamafactory"},
    "qwen3-vl": {"layout": "ms-swift"},
    "qwen3-vl 999": {"max_coord": "999", "box_format": "tokens"},
    "internvl": {},
    "florence-2": {},
    "paligemma": {},
    "odvg": {},
    "odvg open-groundingdino": {"odvg_dialect": "open-groundingdino"},
    "qwen-vl llamafactory": {"layout": "llamafactory"},
    "cogvlm ms-swift": {"layout": "ms-swift"},
}


@pytest.mark.parametrize("case", CASES)
def test_every_decoded_box_is_within_one_step(flickr_excerpt, tmp_path, case):
    writer = case.split()[0]
    job = make_job(
        input=str(flickr_excerpt),
        output=str(tmp_path / "out"),
        writer=writer,
        reader="flickr30k-entities",
        format="jsonl",
        writer_options=CASES[case],
    )
    result = convert(job, RunOptions(progress=False))
    assert result.tally.rejected == 0
    records = result.tally.records["test"]
    assert set(records) == set(job.tasks) - {"pointing"} and all(n > 0 for n in records.values())
    report = validate(str(tmp_path / "out"), str(flickr_excerpt), "flickr30k-entities", {})
    assert report.ok, report.messages
    assert report.records == sum(records.values())
    assert report.boxes_checked > 4606
    assert report.worst_steps <= 1.0 + 1e-9  # validate's own bound (a far-edge clamp is exactly one step)
    files = {p.name for p in (tmp_path / "out").iterdir()}
    if CASES[case].get("layout") == "llamafactory":
        info = orjson.loads((tmp_path / "out" / "dataset_info.json").read_bytes())
        (entry,) = info.values()
        assert (tmp_path / "out" / entry["file_name"]).is_file()
    if writer == "internvl":
        meta = orjson.loads((tmp_path / "out" / "internvl_meta.json").read_bytes())
        assert sum(m["length"] for m in meta.values()) == report.records
    if writer.startswith("qwen2.5"):
        for line in next((tmp_path / "out" / "data").iterdir()).read_bytes().splitlines():
            record = orjson.loads(line)
            assert record["resized_width"] % 28 == 0 and record["resized_height"] % 28 == 0
    assert "manifest.json" in files
