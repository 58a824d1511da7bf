"""export --layout cogvlm2: CogVLM2 finetune_demo folders (images/ + labels_en/<stem>.json, all rounds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import UsageError
from grounding_convert.synth import generate
from grounding_convert.tools import export as export_module
from grounding_convert.tools.export import FILES_LOG, export

runner = CliRunner()
BIN = str(Path(sys.executable).with_name("grounding-convert"))


@pytest.fixture(scope="module")
def flickr(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flickr")
    generate("flickr30k-entities", root, images=6, seed=7)
    return root


@pytest.fixture(scope="module")
def converted(tmp_path_factory, flickr) -> Path:
    out = tmp_path_factory.mktemp("cog") / "out"
    job = make_job(input=str(flickr), output=str(out), writer="cogvlm", reader="flickr30k-entities", format="jsonl")
    convert(job, RunOptions(progress=False))
    return out


def records(out: Path) -> list[dict]:
    return [orjson.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.read_bytes().splitlines()]


def expected_labels(out: Path) -> dict[tuple[str, str], list[dict]]:
    """(split, stem) → every turn of that image's records, in record order (the export's contract)."""
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    labels: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for shard in manifest["shards"]:
        for line in (out / shard["file"]).read_bytes().splitlines():
            record = orjson.loads(line)
            labels[shard["split"], Path(record["image"]).stem] += record["conversations"]
    return labels


def loader_view(dest: Path, split: str) -> dict[str, list[dict]]:
    """What CogVLM2 finetune_demo/peft_lora.py L44-85 reads: listdir(images), label by .replace('.jpg', '.json')."""
    root = dest / split
    out = {}
    for name in os.listdir(root / "images"):
        with open(root / "labels_en" / name.replace(".jpg", ".json")) as fh:
            label = json.load(fh)
        conversations = label["conversations"]
        for i in range(len(conversations) // 2):  # every round the loader can draw
            assert conversations[i * 2]["role"] == "user" and conversations[i * 2 + 1]["role"] == "assistant"
            assert isinstance(conversations[i * 2]["content"], str)
        out[name[: -len(".jpg")]] = conversations
    return out


def test_one_label_file_per_image_with_all_its_rounds(tmp_path, flickr, converted):
    dest = tmp_path / "cogvlm2"
    result = export(str(converted), "cogvlm2", str(dest), image_root=str(flickr / "flickr30k-images"))
    expected = expected_labels(converted)
    assert result.images == len(expected) == 6 and result.records == len(records(converted))
    assert result.rounds == result.records and not result.skipped
    for split in {split for split, _ in expected}:
        view = loader_view(dest, split)
        assert view == {stem: turns for (s, stem), turns in expected.items() if s == split}
        for stem in view:
            link = dest / split / "images" / f"{stem}.jpg"
            assert link.is_symlink()
            assert link.read_bytes() == (flickr / "flickr30k-images" / f"{stem}.jpg").read_bytes()


def test_copy_and_small_buckets_give_the_same_folders(tmp_path, flickr, converted, monkeypatch):
    images = str(flickr / "flickr30k-images")
    export(str(converted), "cogvlm2", str(tmp_path / "a"), image_root=images)
    monkeypatch.setattr(export_module, "BUCKET_RECORDS", 7)  # many buckets
    monkeypatch.setattr(export_module, "BUFFER_BYTES", 1)  # a flush after every record
    result = export(str(converted), "cogvlm2", str(tmp_path / "b"), image_root=images, copy=True)
    assert result.images == 6

    def labels(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("labels_en/*.json"))}

    assert labels(tmp_path / "a") == labels(tmp_path / "b")
    copies = sorted((tmp_path / "b").rglob("images/*.jpg"))
    assert copies and not any(p.is_symlink() for p in copies)


def test_packed_conversion_exports_the_same_labels(tmp_path, flickr, converted):
    packed = tmp_path / "packed"
    job = make_job(input=str(flickr), output=str(packed), writer="cogvlm", reader="flickr30k-entities", turns=3)
    convert(job, RunOptions(progress=False))
    images = str(flickr / "flickr30k-images")
    export(str(converted), "cogvlm2", str(tmp_path / "a"), image_root=images)
    export(str(packed), "cogvlm2", str(tmp_path / "b"), image_root=images)

    def rounds(dest: Path, split: str) -> dict[str, list[tuple[str, str]]]:
        """Each image's (question, answer) rounds; packing may order one image's tasks differently."""
        view = loader_view(dest, split)
        return {
            stem: sorted((q["content"], a["content"]) for q, a in zip(c[::2], c[1::2], strict=True))
            for stem, c in view.items()
        }

    splits = [p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")]
    assert splits and all(rounds(tmp_path / "a", s) == rounds(tmp_path / "b", s) for s in splits)


def test_missing_image_is_skipped_and_counted(tmp_path, flickr, converted):
    images = tmp_path / "images"
    images.mkdir()
    kept = sorted((flickr / "flickr30k-images").iterdir())[1:]
    for path in kept:
        (images / path.name).write_bytes(path.read_bytes())
    result = export(str(converted), "cogvlm2", str(tmp_path / "dest"), image_root=str(images))
    assert result.skipped == {"missing-image": 1} and result.images == 5
    assert len(list((tmp_path / "dest").rglob("labels_en/*.json"))) == 5


def test_dest_rules(tmp_path, flickr, converted):
    images = str(flickr / "flickr30k-images")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds no earlier export"):
        export(str(converted), "cogvlm2", str(dest), image_root=images)
    (dest / "notes.txt").unlink()
    first = export(str(converted), "cogvlm2", str(dest), image_root=images)
    again = export(str(converted), "cogvlm2", str(dest), image_root=images, copy=True)  # an earlier export: redone
    assert first.to_dict() == again.to_dict()
    logged = {orjson.loads(line) for line in (dest / FILES_LOG).read_bytes().splitlines()}
    assert len(logged) == 2 * first.images
    # a file the tool did not write makes it refuse, and nothing is deleted
    stray = next(dest.glob("*/labels_en")) / "extra.json"
    stray.write_text("{}")
    with pytest.raises(UsageError, match="no earlier export wrote"):
        export(str(converted), "cogvlm2", str(dest), image_root=images)
    assert stray.exists() and len(list(dest.rglob("labels_en/*.json"))) == first.images + 1


def test_a_planted_symlink_is_never_followed(tmp_path, flickr, converted):
    images = str(flickr / "flickr30k-images")
    dest = tmp_path / "dest"
    export(str(converted), "cogvlm2", str(dest), image_root=images)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    split_dir = next(p for p in dest.iterdir() if not p.name.startswith("."))
    labels = split_dir / "labels_en"
    for p in labels.iterdir():
        p.unlink()
    labels.rmdir()
    labels.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match="no earlier export wrote"):
        export(str(converted), "cogvlm2", str(dest), image_root=images)
    assert list(elsewhere.iterdir()) == []


def test_refusals_are_clear(tmp_path, flickr, converted):
    with pytest.raises(UsageError, match="needs --image-root"):
        export(str(converted), "cogvlm2", str(tmp_path / "d"))
    with pytest.raises(UsageError, match="unknown layout"):
        export(str(converted), "llava", str(tmp_path / "d"), image_root=str(flickr))
    qwen = tmp_path / "qwen"
    convert(make_job(input=str(flickr), output=str(qwen), writer="qwen-vl"), RunOptions(progress=False))
    with pytest.raises(UsageError, match="regroups cogvlm records"):
        export(str(qwen), "cogvlm2", str(tmp_path / "d"), image_root=str(flickr))


def test_cli(tmp_path, flickr, converted):
    images = str(flickr / "flickr30k-images")
    args = ["export", str(converted), "--layout", "cogvlm2", "--dest", str(tmp_path / "a"), "--image-root", images]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "exported 6 image(s)" in result.output
    done = subprocess.run(
        [BIN, "export", str(converted), "--layout", "cogvlm2", "--dest", str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "needs --image-root" in done.stderr and "Traceback" not in done.stderr
