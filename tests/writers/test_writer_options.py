"""Options every writer shares: --template-file, --image-prefix, --seed, --language, OFA's --format tsv."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.synth import generate

runner = CliRunner()


@pytest.fixture(scope="module")
def flickr(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flickr")
    generate("flickr30k-entities", root, images=8, seed=5)
    return root


def records(out: Path) -> list[dict]:
    return [orjson.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.read_bytes().splitlines()]


def convert(flickr: Path, out: Path, *extra: str) -> list[dict]:
    result = runner.invoke(
        app,
        [
            "convert",
            "-f",
            "flickr30k-entities",
            "-i",
            str(flickr),
            "-o",
            str(out),
            "--format",
            "jsonl",
            "--quiet",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return records(out)


def test_template_file_replaces_the_phrasings(flickr, tmp_path):
    templates = tmp_path / "mine.yaml"
    templates.write_text(
        "rec:\n  en: ['Box please: {phrase}']\nreg:\n  en: ['Name <ref>this</ref>{boxes}']\n"
        "grounded-caption:\n  en: ['Caption:']\npointing:\n  en: ['{question} {candidates}']\n"
    )
    rows = convert(flickr, tmp_path / "out", "-t", "qwen-vl", "--tasks", "rec", "--template-file", str(templates))
    prompts = {r["conversations"][0]["value"].split("\n", 1)[1] for r in rows}
    assert prompts and all(p.startswith("Box please: ") for p in prompts)


def test_image_prefix_is_written_in_front_of_paths(flickr, tmp_path):
    rows = convert(flickr, tmp_path / "out", "-t", "cogvlm", "--image-prefix", "s3://bucket/flickr30k-images/")
    assert all(r["image"].startswith("s3://bucket/flickr30k-images/") and r["image"].endswith(".jpg") for r in rows)
    assert all("//" not in r["image"].removeprefix("s3://") for r in rows)


def test_seed_changes_phrasing_but_never_boxes(flickr, tmp_path):
    a = convert(flickr, tmp_path / "a", "-t", "qwen-vl", "--seed", "1")
    b = convert(flickr, tmp_path / "b", "-t", "qwen-vl", "--seed", "2")
    again = convert(flickr, tmp_path / "c", "-t", "qwen-vl", "--seed", "1")
    assert a == again
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert any(x["conversations"][0] != y["conversations"][0] for x, y in zip(a, b, strict=True))
    rec = [(x, y) for x, y in zip(a, b, strict=True) if x["task"] == "rec"]
    assert all(x["conversations"][1] == y["conversations"][1] for x, y in rec)


def test_chinese_templates(flickr, tmp_path):
    rows = convert(flickr, tmp_path / "out", "-t", "qwen-vl", "--tasks", "rec", "--language", "zh")
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["conversations"][0]["value"]) for r in rows)


def test_ofa_native_tsv_with_embedded_images(flickr, tmp_path):
    out = tmp_path / "tsv"
    result = runner.invoke(
        app,
        [
            "convert",
            "-f",
            "flickr30k-entities",
            "-t",
            "ofa",
            "-i",
            str(flickr),
            "-o",
            str(out),
            "--format",
            "tsv",
            "--tasks",
            "rec",
            "--embed-images",
            "--image-root",
            str(flickr / "flickr30k-images"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for p in sorted((out / "data").glob("*.tsv")) for line in p.read_text().splitlines()]
    assert lines
    for line in lines:
        uniq_id, image_id, text, region_coord, image = line.split("\t")
        assert uniq_id.startswith("flickr30k_entities/") and "/rec/" in uniq_id
        assert (flickr / "flickr30k-images" / f"{image_id}.jpg").read_bytes() == base64.b64decode(image)
        assert len(region_coord.split(",")) == 4 and text
