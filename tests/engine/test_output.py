"""The output directory of DESIGN §4: shard names, card, manifest, determinism, load_dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
import yaml
from datasets import load_dataset

from grounding_convert.engine.runner import RunOptions, convert, make_job


def run(input: Path, output: Path, writer: str = "qwen-vl", fmt: str = "parquet", workers: int = 1, **kw):
    job = make_job(
        input=str(input),
        output=str(output),
        writer=writer,
        reader="flickr30k-entities",
        format=fmt,
        reader_options={"images_per_partition": 50},
        **kw,
    )
    return convert(job, RunOptions(workers=workers, progress=False))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_load_dataset_returns_written_rows(flickr_excerpt, tmp_path, fmt):
    result = run(flickr_excerpt, tmp_path / "out", fmt=fmt)
    names = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    assert names == [f"test-0000{i}-of-00004.{fmt}" for i in range(4)]
    ds = load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "hf-cache"))  # never a stale cache
    assert list(ds) == ["test"]
    assert len(ds["test"]) == result.tally.total_records() == 996 + 2999 + 2999
    written = []
    for name in names:
        path = tmp_path / "out" / "data" / name
        if fmt == "jsonl":
            written += [orjson.loads(line) for line in path.read_bytes().splitlines()]
        else:
            import pyarrow.parquet as pq

            written += pq.read_table(path).to_pylist()
    assert [r["id"] for r in ds["test"]] == [r["id"] for r in written]
    assert ds["test"][5]["conversations"] == written[5]["conversations"]


def test_workers_do_not_change_bytes(flickr_excerpt, tmp_path):
    run(flickr_excerpt, tmp_path / "one", workers=1)
    run(flickr_excerpt, tmp_path / "two", workers=2)
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert one.keys() == two.keys()
    assert one == two


def test_manifest_and_card(flickr_excerpt, tmp_path):
    result = run(flickr_excerpt, tmp_path / "out", fmt="jsonl", seed=7)
    out = tmp_path / "out"
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["job"]["seed"] == 7 and manifest["job"]["writer"] == "qwen-vl"
    counts = manifest["counts"]
    assert counts["read"] == 1000 == counts["written"] + counts["rejected"] + counts["filtered"]
    assert counts["records"]["test"] == {"grounded-caption": 996, "rec": 2999, "reg": 2999}
    assert sum(s["records"] for s in manifest["shards"]) == result.tally.total_records()
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"] == [{"split": "test", "path": "data/test-*"}]
    for needle in ("## Counts per split", "Words per text", "Box area", "### rec", "load_dataset"):
        assert needle in card
    assert not list(out.rglob(".*.tmp")), "no temporary files left behind"


def test_overwrite_and_refusals(flickr_excerpt, tmp_path):
    from grounding_convert.errors import UsageError

    run(flickr_excerpt, tmp_path / "out")
    with pytest.raises(UsageError, match="not empty"):
        run(flickr_excerpt, tmp_path / "out")
    job = make_job(
        input=str(flickr_excerpt),
        output=str(tmp_path / "out"),
        writer="qwen-vl",
        reader="flickr30k-entities",
        reader_options={"images_per_partition": 50},
        seed=1,
    )
    with pytest.raises(UsageError, match="seed: was 0, now 1"):
        convert(job, RunOptions(resume=True, progress=False))
    convert(job, RunOptions(overwrite=True, progress=False))
    assert orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())["job"]["seed"] == 1


def test_limit_takes_first_samples_in_plan_order(flickr_excerpt, tmp_path):
    result = run(flickr_excerpt, tmp_path / "out", writer="canonical", fmt="jsonl", limit=120)
    assert result.tally.read == 120
    lines = b"".join(p.read_bytes() for p in sorted((tmp_path / "out" / "data").iterdir())).splitlines()
    assert len(lines) == 120
    assert orjson.loads(lines[0])["id"] == "flickr30k_entities/1016887272/0"


def test_canonical_round_trip(flickr_excerpt, tmp_path):
    run(flickr_excerpt, tmp_path / "canon", writer="canonical", fmt="parquet")
    job = make_job(input=str(tmp_path / "canon"), output=str(tmp_path / "again"), writer="canonical", format="jsonl")
    assert job.reader == "canonical"  # detected from the manifest
    convert(job, RunOptions(progress=False))
    run(flickr_excerpt, tmp_path / "direct", writer="canonical", fmt="jsonl")
    again = files(tmp_path / "again" / "data")
    direct = files(tmp_path / "direct" / "data")
    assert b"".join(again.values()) == b"".join(direct.values())
    first = orjson.loads(next(iter(direct.values())).splitlines()[0])
    assert list(first) == ["id", "dataset", "split", "image", "text", "answer", "regions", "meta"]
    assert list(first["regions"][0]) == ["phrase", "span", "boxes", "category", "score", "role"]


def test_shards_rotate_by_bytes(flickr_excerpt, tmp_path):
    run(flickr_excerpt, tmp_path / "out", fmt="jsonl", max_shard_bytes=200_000)
    shards = sorted((tmp_path / "out" / "data").iterdir())
    assert len(shards) > 4  # more than one shard per partition
    assert all(p.stat().st_size < 200_000 + 5_000 for p in shards)  # rotated right after crossing the limit
    n = len(shards)
    assert [p.name for p in shards] == [f"test-{i:05d}-of-{n:05d}.jsonl" for i in range(n)]
    ds = load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "hf-cache"))  # never a stale cache
    assert len(ds["test"]) == 996 + 2999 + 2999


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "json"])
def test_manifest_sha256_is_the_shards_bytes(flickr_excerpt, tmp_path, fmt):
    """Shards are hashed as they are written (no second pass): the digest must be the file's."""
    run(flickr_excerpt, tmp_path / "out", fmt=fmt, max_records_per_shard=2000)
    manifest = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert len(manifest["shards"]) >= 3  # rotation: several files hashed
    for shard in manifest["shards"]:
        data = (tmp_path / "out" / shard["file"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)


def test_a_sought_file_is_hashed_by_reading_it_back(tmp_path):
    from grounding_convert.output.storage import Store

    store = Store(str(tmp_path))
    with store.open("x.bin", "wb", hashed=True) as fh:
        fh.write(b"abc")
        fh.seek(0)
        fh.write(b"z")
        assert fh.digest is None  # the running digest no longer describes the file
    assert store.sha256("x.bin") == hashlib.sha256(b"zbc").hexdigest()
