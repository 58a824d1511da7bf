"""--turns N: records of one image and task packed into one multi-turn conversation, and back."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.cli.demo import sample_data_dir
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import UsageError
from grounding_convert.output.packing import unpack
from grounding_convert.plugins import get_writer
from grounding_convert.synth import generate
from grounding_convert.tools.validate import validate

runner = CliRunner()
BIN = str(Path(sys.executable).with_name("grounding-convert"))
HEAD = "Picture 1: <img>"


@pytest.fixture(scope="module")
def flickr(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flickr")
    generate("flickr30k-entities", root, images=12, seed=4, write_images=False)
    return root


def run(input: Path, out: Path, writer: str, fmt: str = "jsonl", workers: int = 1, **kw):
    job = make_job(input=str(input), output=str(out), writer=writer, reader="flickr30k-entities", format=fmt, **kw)
    return convert(job, RunOptions(workers=workers, progress=False))


def rows(out: Path) -> list[dict]:
    return [orjson.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.read_bytes().splitlines()]


def tree(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").iterdir())}


def test_turns_1_is_todays_output(tmp_path):
    run(sample_data_dir(), tmp_path / "default", "qwen-vl")
    run(sample_data_dir(), tmp_path / "one", "qwen-vl", turns=1)
    assert tree(tmp_path / "default") == tree(tmp_path / "one")
    assert "turn_ids" not in rows(tmp_path / "one")[0]


@pytest.mark.parametrize("writer", ["qwen-vl", "cogvlm"])
@pytest.mark.parametrize("turns", [2, 5])
def test_packed_conversations_unpack_to_the_unpacked_records(tmp_path, writer, turns):
    sample = sample_data_dir()
    run(sample, tmp_path / "plain", writer)
    plain = rows(tmp_path / "plain")
    result = run(sample, tmp_path / "packed", writer, turns=turns)
    packed = rows(tmp_path / "packed")
    layout = get_writer(writer).conversation
    assert sorted((r for p in packed for r in unpack(p, layout)), key=lambda r: r["id"]) == sorted(
        plain, key=lambda r: r["id"]
    )
    assert result.tally.notes["packed-conversations"] == len(packed) < len(plain)
    by_group = defaultdict(list)
    for record in plain:
        by_group[record["image"], record["task"]].append(record["id"])
    for conversation in packed:
        turns_ = conversation["conversations"]
        assert 2 <= len(turns_) <= 2 * turns and len(turns_) == 2 * len(conversation["turn_ids"])
        roles = [t["from" if writer == "qwen-vl" else "role"] for t in turns_]
        assert roles == ["user", "assistant"] * (len(turns_) // 2)
        if writer == "qwen-vl":  # the image placeholder only in the first user turn
            assert [HEAD in t["value"] for t in turns_[::2]] == [True] + [False] * (len(turns_) // 2 - 1)
        group = by_group[conversation["image"], conversation["task"]]
        start = group.index(conversation["turn_ids"][0])  # consecutive records of one image and task, in order
        assert conversation["turn_ids"] == group[start : start + len(conversation["turn_ids"])]
        first_sample = conversation["turn_ids"][0].rsplit(f"/{conversation['task']}", 1)[0]
        assert conversation["sample_id"] == first_sample
        assert conversation["id"].startswith(f"{first_sample}/{conversation['task']}/turns-")
    assert len({c["id"] for c in packed}) == len(packed)


def test_five_flickr_captions_of_one_image_become_one_conversation(tmp_path):
    run(sample_data_dir(), tmp_path / "out", "qwen-vl", tasks=["grounded-caption"], turns=5)
    packed = rows(tmp_path / "out")
    assert len(packed) == 10  # ten images, five captions each
    first = packed[0]
    assert first["id"] == "flickr30k_entities/1016887272/0/grounded-caption/turns-0"
    assert first["turn_ids"] == [f"flickr30k_entities/1016887272/{i}/grounded-caption" for i in range(5)]
    assert first["conversations"][0]["value"].startswith("Picture 1: <img>1016887272.jpg</img>\n")
    assert first["conversations"][2]["value"] == "Generate the caption in English with grounding:"


def test_packing_is_byte_identical_across_worker_counts_and_validates(tmp_path, flickr):
    options = {"images_per_partition": 3}
    tally = run(flickr, tmp_path / "w1", "qwen-vl", "parquet", turns=3, reader_options=options).tally
    run(flickr, tmp_path / "w2", "qwen-vl", "parquet", workers=2, turns=3, reader_options=options)
    assert tree(tmp_path / "w1") == tree(tmp_path / "w2")
    tables = [pq.read_table(p) for p in sorted((tmp_path / "w1" / "data").iterdir())]
    assert len(tables) > 1 and all(t.schema.names[-1] == "turn_ids" for t in tables)
    packed_turns = sum(len(ids) for t in tables for ids in t.column("turn_ids").to_pylist())
    assert packed_turns == tally.total_records() > sum(t.num_rows for t in tables)
    report = validate(str(tmp_path / "w1"), str(flickr), "flickr30k-entities", dict(options))
    assert report.ok and report.records == packed_turns, report.messages


def test_turns_refused_for_writers_without_conversations(tmp_path, flickr):
    with pytest.raises(UsageError, match="--turns packs conversations; writer 'ofa'"):
        make_job(input=str(flickr), output=str(tmp_path / "o"), writer="ofa", turns=2)
    with pytest.raises(UsageError, match=r"^Invalid value for '--turns': 0 \(accepted: a whole number ≥ 1\)$"):
        make_job(input=str(flickr), output=str(tmp_path / "o"), writer="qwen-vl", turns=0)
    args = ["convert", "-t", "kosmos-2", "-f", "flickr30k-entities", "-i", str(flickr), "-o", str(tmp_path / "k")]
    result = runner.invoke(app, [*args, "--turns", "3", "--quiet"])
    assert result.exit_code == 2 and "does not write them" in result.output
    done = subprocess.run([BIN, *args, "--turns", "3", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_cli_turns_with_json_container(tmp_path, flickr):
    out = tmp_path / "out"
    args = ["convert", "-t", "cogvlm", "-f", "flickr30k-entities", "-i", str(flickr), "-o", str(out)]
    done = subprocess.run([BIN, *args, "--format", "json", "--turns", "4", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "packed-conversations" in done.stdout
    conversations = [c for p in (out / "data").glob("*.json") for c in orjson.loads(p.read_bytes())]
    assert conversations and max(len(c["conversations"]) for c in conversations) == 8
