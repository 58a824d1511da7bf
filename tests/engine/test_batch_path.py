"""A whole conversion through the writers' columnar path ends byte-identical to the per-record path.

Every writer and every container that takes batches (Parquet, JSONL, JSON); odd samples in between (a tag
in the text, a box that quantizes to nothing, a duplicate id) must land in the same place, with the same
rejects, and shards must rotate at the same records, whatever the worker count.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grounding_convert.engine import pipeline
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.plugins import get_reader
from grounding_convert.readers.base import Reader
from grounding_convert.synth import generate
from grounding_convert.synth import grit as synth_grit
from grounding_convert.writers.base import Writer
from grounding_convert.writers.qwen_vl import QwenVlWriter

WRITERS = ["qwen-vl", "ofa", "kosmos-2", "cogvlm"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def odd_grit(tmp_path_factory) -> Path:
    """GRIT parquet with, among 3,000 plain rows, rows each path must treat specially."""
    root = tmp_path_factory.mktemp("grit")
    rng = random.Random(3)
    rows = [synth_grit.make_record(rng, i, 10**12 + i) for i in range(3000)]
    rows[10]["caption"] = "a <ref>tag</ref> in the text"  # per-record path: render-failed reject
    rows[10]["noun_chunks"] = [[2, 7, 0.1, 0.1, 0.5, 0.5, 0.9]]
    rows[500]["width"] = 100_000  # a 0.01% wide box quantizes to nothing: empty-box reject
    rows[500]["noun_chunks"] = [[0, 3, 0.2, 0.2, 0.20001, 0.9, 0.9]]
    rows[501]["id"] = rows[499]["id"]  # duplicate id
    rows[1200]["caption"] = "x < y and a dog"  # a bare "<": not batchable, rendered per record
    rows[1200]["noun_chunks"] = [[10, 15, 0.1, 0.1, 0.5, 0.5, 0.9]]
    for row in rows:
        for field in ("noun_chunks", "ref_exps"):
            row[field] = [[float(v) for v in chunk] for chunk in row[field]]
    table = pa.Table.from_pylist(rows, schema=synth_grit.SCHEMA)
    pq.write_table(table, root / "coyo_0_snappy.parquet", row_group_size=1000)
    return root


def run_both(monkeypatch, tmp_path: Path, writer: str = "qwen-vl", **job) -> tuple[dict[str, bytes], dict[str, bytes]]:
    outputs = {}
    for name, batched in (("batched", True), ("per-record", False)):
        with monkeypatch.context() as patch:
            if not batched:
                patch.setattr(Writer, "batch_ready", lambda self, tasks: False)
            out = tmp_path / name
            convert(make_job(output=str(out), writer=writer, **job), RunOptions(progress=False))
            outputs[name] = tree(out)
    return outputs["batched"], outputs["per-record"]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_every_writer_batched_equals_per_record(odd_grit, tmp_path, monkeypatch, writer, fmt):
    """Whole output trees (shards, rejects, manifest, card) are byte-identical between the two paths."""
    batched, per_record = run_both(
        monkeypatch, tmp_path, writer, input=str(odd_grit), reader="grit", format=fmt, max_records_per_shard=1100
    )
    assert batched == per_record
    assert sum(1 for name in batched if name.startswith("data/train-")) >= 3  # rotation inside batches


def test_json_array_batched_equals_per_record(odd_grit, tmp_path, monkeypatch):
    batched, per_record = run_both(
        monkeypatch, tmp_path, "cogvlm", input=str(odd_grit), reader="grit", format="json", max_shard_bytes=300_000
    )
    assert batched == per_record
    shards = [name for name in batched if name.startswith("data/train-")]
    assert len(shards) >= 3 and all(len(orjson.loads(batched[name])) > 0 for name in shards)


@pytest.mark.parametrize(
    "tasks",
    [None, ["grounded-caption"], ["reg", "rec"]],
)
def test_grit_batched_equals_per_record(odd_grit, tmp_path, monkeypatch, tasks):
    batched, per_record = run_both(
        monkeypatch, tmp_path, input=str(odd_grit), reader="grit", tasks=tasks, max_records_per_shard=1100
    )
    assert batched == per_record
    manifest = orjson.loads(batched["manifest.json"])
    reasons = manifest["counts"]["reject_reasons"]
    assert reasons == {"duplicate-id": 1, "empty-box": 1, "render-failed": 1}, reasons
    assert sum(1 for name in batched if name.startswith("data/train-")) >= 3  # rotation inside batches


def test_batches_are_taken(odd_grit, tmp_path, monkeypatch):
    """The comparison above would be empty if the columnar path never ran."""
    calls = []
    real = QwenVlWriter.render_batch

    def counting(self, samples, tasks, seed):
        calls.append(len(samples))
        return real(self, samples, tasks, seed)

    monkeypatch.setattr(QwenVlWriter, "render_batch", counting)
    monkeypatch.setattr(pipeline, "BATCH_SAMPLES", 1000)
    convert(
        make_job(input=str(odd_grit), output=str(tmp_path / "o"), writer="qwen-vl", reader="grit"),
        RunOptions(progress=False),
    )
    assert max(calls) == 1000
    assert sum(calls) >= 2996  # every plain sample, some twice (the batch around a refused box is redone)


def test_flickr_splits_batched_equals_per_record(tmp_path, monkeypatch):
    root = tmp_path / "flickr"
    generate("flickr30k-entities", root, images=120, seed=4)
    batched, per_record = run_both(
        monkeypatch,
        tmp_path,
        input=str(root),
        reader="flickr30k-entities",
        reader_options={"images_per_partition": 50},
        writer_options={"language": "mixed", "image_prefix": "/data/flickr/"},
    )
    assert batched == per_record
    assert {name.split("-")[0] for name in batched if name.startswith("data/")} == {
        "data/train",
        "data/val",
        "data/test",
    }


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_text_containers_take_batches_too(odd_grit, tmp_path, monkeypatch, fmt):
    """JSON output goes through the columnar path and Arrow → JSON, not a dict per record."""
    from grounding_convert.output import containers

    encoded = []
    real = containers.json_records
    monkeypatch.setattr(
        containers, "json_records", lambda batch, end: encoded.append(batch.num_rows) or real(batch, end)
    )
    job = make_job(input=str(odd_grit), output=str(tmp_path / "o"), writer="qwen-vl", reader="grit", format=fmt)
    result = convert(job, RunOptions(progress=False))
    assert sum(encoded) >= result.tally.written - 20  # all but the odd rows' records


def trees_by_workers(root: Path, tmp_path: Path) -> list[dict[str, bytes]]:
    """The output folder of one and of two workers (the manifest's timings and progress files left out)."""
    trees = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        job = make_job(input=str(root), output=str(out), writer="ofa", reader="grit", format="jsonl")
        convert(job, RunOptions(workers=workers, progress=False))
        trees.append({k: v for k, v in tree(out).items() if k != "manifest.json" and not k.startswith("_progress")})
    return trees


def test_worker_counts_give_the_same_tree(odd_grit, tmp_path):
    trees = trees_by_workers(odd_grit, tmp_path)
    assert trees[0] == trees[1]


def test_a_failing_columnar_path_falls_back_to_per_record(odd_grit, tmp_path, monkeypatch):
    """A bug in a writer's columnar path costs speed, never records: every sample is rendered per record."""
    outputs = {}
    for name, broken in (("broken", True), ("per-record", False)):
        with monkeypatch.context() as patch:
            if broken:
                patch.setattr(QwenVlWriter, "render_batch", lambda *_: 1 / 0)
                patch.setattr(QwenVlWriter, "batchable", lambda self, s: True if s.id[-1] != "7" else [][1])
            else:
                patch.setattr(QwenVlWriter, "batch_ready", lambda self, tasks: False)
            out = tmp_path / name
            job = make_job(input=str(odd_grit), output=str(out), writer="qwen-vl", reader="grit")
            convert(job, RunOptions(progress=False))
            outputs[name] = tree(out)
    assert outputs["broken"] == outputs["per-record"]


def test_interleaved_splits_lose_no_sample(tmp_path, monkeypatch):
    """RefCOCO refs alternate splits: the sample that ends a batch by its split must start the next one."""
    root = tmp_path / "refcoco"
    generate("refcoco", root, images=80, seed=5, write_images=False)
    batched, per_record = run_both(monkeypatch, tmp_path, input=str(root / "refcoco"), reader="refcoco")
    assert batched == per_record
    job = make_job(input=str(root / "refcoco"), output=str(tmp_path / "again"), writer="qwen-vl", reader="refcoco")
    tally = convert(job, RunOptions(progress=False)).tally
    assert tally.read == tally.written > 0


@pytest.fixture(scope="module")
def image_token_grit(tmp_path_factory) -> Path:
    """GRIT rows, one of whose captions holds the trainers' ``<image>`` placeholder in a grounded phrase."""
    root = tmp_path_factory.mktemp("grit-image-token")
    rng = random.Random(8)
    rows = [synth_grit.make_record(rng, i, 2 * 10**12 + i) for i in range(1500)]
    rows[700]["caption"] = "an <image> of a dog"
    rows[700]["noun_chunks"] = [[3, 10, 0.1, 0.1, 0.5, 0.5, 0.9]]
    for row in rows:
        for field in ("noun_chunks", "ref_exps"):
            row[field] = [[float(v) for v in chunk] for chunk in row[field]]
    pq.write_table(pa.Table.from_pylist(rows, schema=synth_grit.SCHEMA), root / "coyo_0_snappy.parquet")
    return root


@pytest.mark.parametrize(
    "writer, options",
    [
        ("qwen-vl", {"layout": "llamafactory"}),
        ("qwen2.5-vl", {"layout": "ms-swift", "resize_profile": "hf"}),
        ("internvl", {"layout": "llamafactory"}),
    ],
)
def test_trainer_layouts_batched_equal_per_record(image_token_grit, tmp_path, monkeypatch, writer, options):
    """--layout takes the columnar path too; the record holding <image> is refused the same way on both."""
    calls = []
    real = pipeline._Converter._render_batch
    monkeypatch.setattr(pipeline._Converter, "_render_batch", lambda self, s: calls.append(len(s)) or real(self, s))
    batched, per_record = run_both(
        monkeypatch, tmp_path, writer, input=str(image_token_grit), reader="grit", format="jsonl",
        writer_options=options, max_records_per_shard=1100,
    )  # fmt: skip
    assert batched == per_record
    assert sum(calls) >= 1499  # the batched run took the columnar path for every plain sample
    manifest = orjson.loads(batched["manifest.json"])
    assert manifest["counts"]["reject_reasons"] == {"render-failed": 1}
    assert ("dataset_info.json" in batched) == (options["layout"] == "llamafactory")


@pytest.mark.parametrize(
    "dataset, reader, options",
    [
        ("grit", "grit", {}),
        ("visual-genome", "visual-genome", {}),
        ("visual-genome", "visual-genome", {"annotations": "objects"}),
        ("flickr30k-entities", "flickr30k-entities", {}),
    ],
)
def test_reader_blocks_equal_samples_and_per_record(tmp_path, monkeypatch, dataset, reader, options):
    """Readers' SampleBlocks (GRIT parquet, VG regions, Flickr30K Entities captions) give the trees of the
    sample path and of the per-record path; the blocks are taken where a reader makes them."""
    root = tmp_path / "in"
    generate(dataset, root, images=60, seed=6)
    calls = []
    real = Writer.render_block
    monkeypatch.setattr(Writer, "render_block", lambda self, b, t, s: calls.append(len(b)) or real(self, b, t, s))
    batched, per_record = run_both(monkeypatch, tmp_path, input=str(root), reader=reader, reader_options=options)
    assert batched == per_record
    with monkeypatch.context() as patch:
        patch.setattr(Reader, "read_blocks", lambda self, partition: self.read(partition))
        patch.setattr(type(get_reader(reader)()), "read_blocks", lambda self, partition: self.read(partition))
        out = tmp_path / "samples"
        convert(make_job(output=str(out), writer="qwen-vl", input=str(root), reader=reader,
                         reader_options=options), RunOptions(progress=False))  # fmt: skip
    assert tree(out) == batched
    assert (sum(calls) > 0) == (options.get("annotations") != "objects")
