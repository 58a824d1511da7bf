"""Containers the trainers read: one JSON array per shard (Qwen-VL finetune.py), OFA's TSV per task."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.cli.demo import sample_data_dir
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import UsageError
from grounding_convert.output.containers import OfaTsv
from grounding_convert.safe_paths import UnsafePath
from grounding_convert.synth import generate
from grounding_convert.tools.validate import validate

runner = CliRunner()
BIN = str(Path(sys.executable).with_name("grounding-convert"))


@pytest.fixture(scope="module")
def flickr(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flickr")
    generate("flickr30k-entities", root, images=6, seed=2)
    return root


def run(input: Path, out: Path, writer: str, fmt: str, workers: int = 1, **kw):
    job = make_job(input=str(input), output=str(out), writer=writer, reader="flickr30k-entities", format=fmt, **kw)
    return convert(job, RunOptions(workers=workers, progress=False))


def jsonl_records(out: Path) -> list[dict]:
    return [orjson.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.read_bytes().splitlines()]


def json_records(out: Path) -> list[dict]:
    shards = sorted((out / "data").glob("*.json"))
    assert shards
    out_records = []
    for shard in shards:
        with open(shard, encoding="utf-8") as fh:
            loaded = json.load(fh)  # exactly what Qwen-VL finetune.py L243 does
        assert isinstance(loaded, list) and loaded
        out_records += loaded
    return out_records


@pytest.mark.parametrize("writer", ["qwen-vl", "cogvlm", "ofa", "kosmos-2"])
def test_json_of_the_bundled_sample_loads_as_one_list_with_every_record(tmp_path, writer):
    sample = sample_data_dir()
    as_json = run(sample, tmp_path / "json", writer, "json")
    run(sample, tmp_path / "jsonl", writer, "jsonl")
    records = json_records(tmp_path / "json")
    assert len(records) == as_json.tally.total_records() > 100
    assert records == jsonl_records(tmp_path / "jsonl")  # same records, other container
    report = validate(str(tmp_path / "json"), str(sample), "flickr30k-entities", {})
    assert report.ok and report.records == len(records), report.messages


def test_json_shards_rotate_and_each_is_a_whole_array(tmp_path):
    sample = sample_data_dir()
    run(sample, tmp_path / "one", "qwen-vl", "json")
    run(sample, tmp_path / "many", "qwen-vl", "json", max_records_per_shard=50)
    shards = sorted((tmp_path / "many" / "data").glob("*.json"))
    assert [p.name for p in shards][:2] == ["test-00000-of-00008.json", "test-00001-of-00008.json"]
    assert all(len(json.loads(p.read_bytes())) <= 50 for p in shards)
    assert json_records(tmp_path / "many") == json_records(tmp_path / "one")
    text = shards[0].read_text()
    assert text.startswith("[\n{") and text.endswith("}\n]\n") and len(text.splitlines()) == 1 + 50 + 1


def test_json_shards_are_byte_identical_across_worker_counts(tmp_path, flickr):
    run(flickr, tmp_path / "w1", "cogvlm", "json", reader_options={"images_per_partition": 2})
    run(flickr, tmp_path / "w2", "cogvlm", "json", workers=2, reader_options={"images_per_partition": 2})
    one = {p.name: p.read_bytes() for p in (tmp_path / "w1" / "data").iterdir()}
    assert one == {p.name: p.read_bytes() for p in (tmp_path / "w2" / "data").iterdir()}


def test_json_output_loads_with_datasets_and_shows_in_the_card(tmp_path):
    from datasets import load_dataset

    run(sample_data_dir(), tmp_path / "out", "qwen-vl", "json", tasks=["rec"])
    ds = load_dataset(str(tmp_path / "out"))
    assert ds["test"].num_rows == 155 and ds["test"][0]["conversations"][0]["from"] == "user"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "finetune.py --data_path data/test-00000-of-00001.json" in card


def test_preview_draws_json_records(tmp_path, flickr):
    from grounding_convert.tools.preview import render_preview

    run(flickr, tmp_path / "out", "qwen-vl", "json", tasks=["rec"])
    result = render_preview(str(tmp_path / "out"), str(flickr / "flickr30k-images"), tmp_path / "p.html", n=4)
    assert result.records == 4 and not result.unparsable


# --- OFA TSV -------------------------------------------------------------------------------------------


def tsv_args(flickr: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", "-t", "ofa", "-f", "flickr30k-entities", "-i", str(flickr), "-o", str(out), "--format", "tsv"]


def test_tsv_without_image_root_is_exit_2_before_anything_is_written(tmp_path, flickr):
    result = runner.invoke(app, [*tsv_args(flickr, tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2
    assert "--format tsv needs --image-root" in result.output
    assert not (tmp_path / "out").exists()
    done = subprocess.run([BIN, *tsv_args(flickr, tmp_path / "out2"), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2 and "--format tsv needs --image-root" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out2").exists()


def test_tsv_refuses_image_prefix_and_non_ofa_writers(tmp_path, flickr):
    images = str(flickr / "flickr30k-images")
    with pytest.raises(UsageError, match="--image-prefix does not apply"):
        make_job(
            input=str(flickr),
            output=str(tmp_path / "o"),
            writer="ofa",
            format="tsv",
            image_root=images,
            writer_options={"image_prefix": "/data"},
        )
    with pytest.raises(UsageError, match="writer 'qwen-vl' writes parquet, jsonl, json, not 'tsv'"):
        make_job(input=str(flickr), output=str(tmp_path / "o"), writer="qwen-vl", format="tsv", image_root=images)


def test_tsv_is_one_file_per_task_with_the_original_jpeg_bytes(tmp_path, flickr):
    out = tmp_path / "out"
    images = flickr / "flickr30k-images"
    result = runner.invoke(app, [*tsv_args(flickr, out), "--image-root", str(images), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    splits = sorted({shard["split"] for shard in manifest["shards"]})
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == sorted(
        f"{task}-{split}-00000-of-00001.tsv" for task in ("grounded-caption", "rec", "reg") for split in splits
    )
    for shard in manifest["shards"]:
        task = shard["group"]
        lines = (out / shard["file"]).read_text().splitlines()
        assert len(lines) == shard["records"] > 0
        for line in lines:
            cells = line.split("\t")
            assert len(cells) == 5
            assert f"/{task}" in cells[0]
            assert base64.b64decode(cells[4]) == (images / f"{cells[1]}.jpg").read_bytes()


def test_tsv_missing_image_is_a_counted_reject_and_the_run_goes_on(tmp_path, flickr):
    copy = tmp_path / "flickr"
    shutil.copytree(flickr, copy)
    victim = sorted((copy / "flickr30k-images").iterdir())[0]
    victim.unlink()
    whole = run(flickr, tmp_path / "whole", "ofa", "tsv", image_root=str(flickr / "flickr30k-images")).tally
    tally = run(copy, tmp_path / "out", "ofa", "tsv", image_root=str(copy / "flickr30k-images")).tally
    assert tally.reject_reasons["missing-image"] == whole.written - tally.written > 0  # that image's captions
    assert tally.written > 0 and tally.balanced and tally.rejected == tally.reject_reasons["missing-image"]
    rejects = [orjson.loads(line) for p in (tmp_path / "out" / "rejects").glob("*.jsonl") for line in p.open("rb")]
    assert {r["reason"] for r in rejects} == {"missing-image"}
    assert all(victim.stem in r["message"] for r in rejects)
    rows = [line for p in (tmp_path / "out" / "data").glob("*.tsv") for line in p.read_text().splitlines()]
    assert rows and not any(line.split("\t")[1] == victim.stem for line in rows)


def test_tsv_image_cell_resolves_through_safe_paths(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    (tmp_path / "root" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    tsv = OfaTsv(str(tmp_path / "root"))
    for name in ("../secret.jpg", "/etc/hostname", "link.jpg"):
        with pytest.raises(UnsafePath):
            tsv.image_cell(name)
