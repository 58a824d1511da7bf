"""``inspect``: counts of the real Flickr30K Entities excerpt, problem detection, and the CLI."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.errors import Filtered, Note, Reject, UsageError
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.synth import generate
from grounding_convert.tools.inspect import InspectReport, Survey, boxes_bucket, inspect, words_bucket


def independent_counts(root: Path) -> tuple[int, int, int]:
    """(mentions, mentions without a box, boxes over all mentions) straight from the files (SOURCES §4)."""
    mentions = without = boxes = 0
    for sentences in sorted((root / "Sentences").glob("*.txt")):
        per_chain: dict[str, int] = {}
        for obj in ET.parse(root / "Annotations" / f"{sentences.stem}.xml").getroot().iter("object"):
            if obj.find("bndbox") is not None:
                for name in obj.findall("name"):
                    per_chain[name.text.strip()] = per_chain.get(name.text.strip(), 0) + 1
        for chain in re.findall(r"\[/EN#(\d+)/", sentences.read_text(encoding="utf-8")):
            n = 0 if chain == "0" else per_chain.get(chain, 0)
            mentions += 1
            without += n == 0
            boxes += n
    return mentions, without, boxes


@pytest.fixture(scope="module")
def excerpt_report(flickr_excerpt: Path) -> InspectReport:
    return inspect(str(flickr_excerpt))


def test_real_excerpt_counts(excerpt_report: InspectReport, flickr_excerpt: Path):
    r = excerpt_report
    mentions, without, boxes = independent_counts(flickr_excerpt)
    assert (mentions, without, boxes) == (3574, 575, 4606)
    assert r.reader == "flickr30k-entities" and r.samples == 1000 and r.samples_per_split == {"test": 1000}
    assert r.regions == 3574 and r.boxes == 4606
    assert r.problems == {"region-without-boxes": 575}
    assert r.boxes_per_region["0"] == 575 and sum(r.boxes_per_region.values()) == 3574
    assert r.boxes_per_region == {
        "0": 575,
        "1": 2330,
        "2": 362,
        "3": 115,
        "4": 64,
        "5": 39,
        "6": 28,
        "7": 22,
        "8": 12,
        "9": 7,
        "10+": 20,
    }
    assert sum(r.phrase_words.values()) == 3574 and list(r.phrase_words)[:3] == ["1", "2", "3"]
    assert r.rejected == 0 and r.filtered == 0 and r.repairs == {"split-ids-without-files": 800} and not r.limited
    assert r.problem_examples["region-without-boxes"][0] == "flickr30k_entities/1016887272/0: region 1 'a row'"
    assert [e["id"] for e in r.examples] == [f"flickr30k_entities/1016887272/{i}" for i in range(3)]


def test_synth_counts_match_the_generator(tmp_path: Path):
    counts = generate("flickr30k-entities", tmp_path, images=3, seed=1)
    r = inspect(str(tmp_path), "flickr30k-entities")
    assert r.samples == counts["samples"] and r.regions == counts["regions"] and r.boxes == counts["boxes"]
    assert r.problems.get("region-without-boxes") == counts["regions_without_boxes"]
    assert r.samples_per_split == {"train": counts["samples_train"]}


def test_limit_and_split(flickr_excerpt: Path):
    r = inspect(str(flickr_excerpt), limit=10, examples=0)
    assert r.samples == 10 and r.limited and r.examples == []
    assert inspect(str(flickr_excerpt), limit=1000).limited is False
    with pytest.raises(UsageError, match=r"Invalid value for '--limit': -1 \(accepted: a whole number ≥ 0"):
        inspect(str(flickr_excerpt), limit=-1)
    planned = inspect(str(flickr_excerpt), limit=0)  # plan only: partitions counted, nothing read
    assert planned.partitions == 1 and planned.samples == 0 and planned.rejected == 0 and planned.limited
    with pytest.raises(UsageError, match="splits are"):
        inspect(str(flickr_excerpt), reader_options={"split": "dev"})


def test_problems_rejects_repairs_and_filters_are_counted():
    report = InspectReport(input="x", reader="test")
    survey = Survey(report, examples=1)
    good = Sample(
        "s/0",
        "flickr30k_entities",
        "train",
        ImageRef("a.jpg", width=10, height=10),
        "a dog",
        regions=[Region("a dog", (0, 5), [[0, 0, 10, 10]])],
    )
    bad = Sample(
        "s/1",
        "flickr30k_entities",
        None,
        ImageRef("b.jpg", width=None, height=4),
        " ",
        regions=[Region("cat", (0, 3), []), Region("", None, [[1, 1, 1, 5], [0, 0, float("nan"), 1]])],
    )
    outside = Sample(
        "s/2",
        "grit",
        "train",
        ImageRef("c.jpg", width=10, height=10),
        "the dog",
        regions=[Region("dog", (0, 3), [[-1, 0, 5, 11]])],
    )
    for item in (
        good,
        bad,
        outside,
        Reject("bad-box", "m.json line 3: box [1] is not 4 numbers", "m.json", 3),
        Reject("bad-box", "again", "m.json", 4),
        Filtered("split"),
        Note("clipped-box", 2),
        Note("clipped-box"),
    ):
        survey.add(item)
    survey.finish()
    assert report.samples == 3 and report.samples_per_split == {"(none)": 1, "train": 2}
    assert report.regions == 4 and report.boxes == 4
    assert report.problems == {
        "out-of-image-box": 1,
        "non-finite-box": 1,
        "empty-box": 1,
        "missing-size": 1,
        "empty-text": 1,
        "empty-phrase": 1,
        "region-without-boxes": 1,
        "span-mismatch": 2,
    }
    assert report.problem_examples["span-mismatch"] == [
        "s/1: region 0 'cat': span [0, 3] of the text is ' '",
        "s/2: region 0 'dog': span [0, 3] of the text is 'the'",
    ]
    assert report.rejected == 2 and report.rejects == {"bad-box": 2}
    assert report.reject_examples[0] == "bad-box: m.json line 3: box [1] is not 4 numbers"
    assert report.repairs == {"clipped-box": 3} and report.filtered == 1 and report.filters == {"split": 1}
    assert len(report.examples) == 1 and report.examples[0]["id"] == "s/0"
    orjson.dumps(report.to_dict())


def test_buckets():
    assert [words_bucket(n) for n in (0, 10, 11, 20, 21)] == ["0", "10", "11-20", "11-20", "21+"]
    assert [boxes_bucket(n) for n in (0, 9, 10, 40)] == ["0", "9", "10+", "10+"]


def test_cli_text_and_json(flickr_excerpt: Path):
    runner = CliRunner()
    text = runner.invoke(app, ["inspect", str(flickr_excerpt), "--examples", "1"])
    assert text.exit_code == 0, text.output
    assert "samples   1,000  by split: test: 1,000" in text.output
    assert "regions   3,574  (3.57 per sample)" in text.output
    assert "region-without-boxes         575" in text.output
    assert "example flickr30k_entities/1016887272/0 [test] 1016887272.jpg 333x500" in text.output
    as_json = runner.invoke(
        app,
        [
            "inspect",
            str(flickr_excerpt),
            "--from",
            "flickr30k-entities",
            "--json",
            "--limit",
            "50",
            "-O",
            "images_per_partition=7",
        ],
    )
    assert as_json.exit_code == 0, as_json.output
    data = orjson.loads(as_json.stdout)
    assert data["samples"] == 50 and data["limited"] is True and data["partitions"] == 29


def test_cli_errors_are_one_line(tmp_path: Path, flickr_excerpt: Path):
    runner = CliRunner()
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nope"), "--from", "flickr30k-entities"])
    assert missing.exit_code == 2 and "error:" in missing.output and "Traceback" not in missing.output
    unknown = runner.invoke(app, ["inspect", str(tmp_path)])
    assert unknown.exit_code == 2 and "pass --from" in unknown.output
    bad_option = runner.invoke(app, ["inspect", str(flickr_excerpt), "-O", "colour=blue"])
    assert bad_option.exit_code == 2 and "has no option 'colour'" in bad_option.output
