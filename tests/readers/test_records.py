"""The ``records`` reader: finished outputs decoded back into canonical samples, and re-targeted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import Reject
from grounding_convert.plugins import detect_reader
from grounding_convert.readers.records import RecordsReader
from grounding_convert.schema import Sample
from grounding_convert.tools.validate import index_source, validate
from grounding_convert.writers.base import grounded_regions, ordered_spans

BIN = str(Path(sys.executable).with_name("grounding-convert"))


def run(source: Path, out: Path, writer: str, reader: str, **kwargs) -> None:
    job = make_job(input=str(source), output=str(out), writer=writer, reader=reader, **kwargs)
    convert(job, RunOptions(progress=False))


def read_all(path: Path) -> list:
    reader = RecordsReader()
    return [item for p in reader.plan(str(path)) for item in reader.read(p)]


@pytest.fixture(scope="module")
def flickr_samples(flickr_excerpt) -> dict[str, Sample]:
    return index_source(str(flickr_excerpt), "flickr30k-entities", {})


# OFA is left out since its text follows upstream pre_caption (CONFORMANCE O5): lower-cased, punctuation
# stripped, so a caption phrase holding punctuation cannot be located again (a known limit, in the README)
@pytest.mark.parametrize("writer", ["kosmos-2", "qwen-vl", "cogvlm"])
def test_text_spans_and_region_indices_come_back(flickr_excerpt, flickr_samples, tmp_path, writer):
    run(flickr_excerpt, tmp_path / "out", writer, "flickr30k-entities", max_records_per_shard=397, limit=300)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["shards"]) >= 4  # samples' records straddle shard boundaries
    items = read_all(tmp_path / "out")
    assert not [i for i in items if isinstance(i, Reject)]
    back = {s.id: s for s in items if isinstance(s, Sample)}
    assert len(back) == manifest["counts"]["written"] == 297  # every written sample, once (3 of 300 had no box)
    step = RecordsReader.carried_tolerance
    for sample_id, sample in back.items():
        original = flickr_samples[sample_id]
        assert sample.text == original.text, sample_id
        assert sample.image.file == original.image.file and sample.split == original.split
        assert [i for i, _ in grounded_regions(sample)] == [i for i, _ in grounded_regions(original)]
        assert [r.span for r in ordered_spans(sample)] == [r.span for r in ordered_spans(original)]
        sx, sy = step(str(tmp_path / "out"), sample.image.width, sample.image.height)
        for (_, new), (_, old) in zip(grounded_regions(sample), grounded_regions(original), strict=True):
            assert new.phrase == old.phrase
            for a, b in zip(new.boxes, old.boxes, strict=True):
                assert max(abs(a[0] - b[0]), abs(a[2] - b[2])) <= sx + 1e-9
                assert max(abs(a[1] - b[1]), abs(a[3] - b[3])) <= sy + 1e-9


def test_kosmos2_to_qwen_vl_round_trip_validates_against_the_source(flickr_excerpt, tmp_path):
    """Must show: Flickr excerpt → kosmos-2 → records → qwen-vl → validate --source, within both steps."""
    run(flickr_excerpt, tmp_path / "k2", "kosmos-2", "flickr30k-entities")
    assert detect_reader(str(tmp_path / "k2")) == "records"
    run(tmp_path / "k2", tmp_path / "qwen", "qwen-vl", "records")
    direct = tmp_path / "direct"
    run(flickr_excerpt, direct, "qwen-vl", "flickr30k-entities")
    counts = json.loads((tmp_path / "qwen" / "manifest.json").read_text())["counts"]
    assert counts["records"] == json.loads((direct / "manifest.json").read_text())["counts"]["records"]
    assert counts["records"] == {"test": {"grounded-caption": 996, "rec": 2999, "reg": 2999}}
    assert counts["written"] == 996 and counts["rejected"] == 0
    ids = [r["id"] for r in pq.read_table(tmp_path / "qwen" / "data").to_pylist()]
    assert ids == [r["id"] for r in pq.read_table(direct / "data").to_pylist()]  # same record ids as from source
    report = validate(str(tmp_path / "qwen"), str(flickr_excerpt), "flickr30k-entities", {})
    assert report.ok, report.messages
    assert report.boxes_checked == 13818 and 0.3 < report.worst_steps <= 1.0
    proc = subprocess.run(
        [BIN, "validate", str(tmp_path / "qwen"), "--source", str(flickr_excerpt), "--from", "flickr30k-entities"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stdout + proc.stderr


def test_a_damaged_record_is_rejected_and_its_sample_kept(tmp_path):
    from grounding_convert.synth import generate

    generate("records", tmp_path / "out", images=3, seed=1, format="jsonl")
    shard = next((tmp_path / "out" / "data").glob("*.jsonl"))
    lines = shard.read_text().splitlines()
    record = json.loads(lines[0])
    record["completion"] = record["completion"].replace("<patch_index_", "<patch_index_9", 1)
    record["text"] = record["prompt"] + record["completion"]
    lines[0] = json.dumps(record)
    shard.write_text("\n".join(lines) + "\n")
    items = read_all(tmp_path / "out")
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert reject.reason == "bad-box" and reject.position == record["id"]
    assert record["sample_id"] in {s.id for s in items if isinstance(s, Sample)}


def test_not_an_output_exits_2(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "manifest.json").write_text("{")
    proc = subprocess.run(
        [BIN, "convert", "--to", "qwen-vl", "--from", "records", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "manifest.json: is not a grounding-convert manifest" in proc.stderr, proc.stderr


def test_canonical_output_is_refused_with_advice(tmp_path, flickr_excerpt):
    run(flickr_excerpt, tmp_path / "c", "canonical", "flickr30k-entities")
    with pytest.raises(Exception, match="--from canonical"):
        RecordsReader().plan(str(tmp_path / "c"))
    assert pa  # pyarrow imported for the shard reads above


def test_json_and_jsonl_outputs_read_back_alike(tmp_path):
    from grounding_convert.synth import generate

    generate("records", tmp_path / "jsonl", images=3, seed=5, format="jsonl")
    generate("records", tmp_path / "json", images=3, seed=5, format="json")
    as_jsonl = [s.to_record() for s in read_all(tmp_path / "jsonl") if isinstance(s, Sample)]
    assert as_jsonl and as_jsonl == [s.to_record() for s in read_all(tmp_path / "json") if isinstance(s, Sample)]
