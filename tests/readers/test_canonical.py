"""The canonical reader's blocks (``read_blocks``): the same samples, rejects and order as ``read``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.readers.canonical import CanonicalReader
from grounding_convert.schema import SAMPLE_SCHEMA, ImageRef, Region, Sample
from grounding_convert.synth import generate

from . import block_checks


def canonical_from(tmp_path: Path, dataset: str, images: int) -> Path:
    """A --to canonical Parquet output of a synthetic dataset."""
    generate(dataset, tmp_path / "native", images=images, seed=7)
    out = tmp_path / "canonical"
    convert(make_job(input=str(tmp_path / "native"), output=str(out), writer="canonical", reader=dataset,
                     format="parquet"), RunOptions(progress=False))  # fmt: skip
    return out


@pytest.mark.parametrize("dataset", ["flickr30k-entities", "grit", "visual-genome"])
def test_blocks_give_what_read_gives_on_canonical_shards(tmp_path, dataset):
    rows, expanded, blocks = block_checks.blocks_and_rows(CanonicalReader(), canonical_from(tmp_path, dataset, 40))
    block_checks.same_accounting(rows, expanded)
    assert blocks > 0 and len([r for r in rows if isinstance(r, Sample)]) >= 40


def good(i: int, split: str = "train") -> dict:
    regions = [
        Region("a dog", (0, 5), [[1.0, 2.0, 30.0, 40.0]]),
        Region("it", (6, 8), []),  # no box: not in the block's regions, but counted in the numbering
        Region("a cat", (9, 14), [[5.0, 5.0, 9.0, 9.0], [10.0, 1.0, 20.0, 30.0]]),
    ]
    image = ImageRef(f"{i}.jpg", str(i), 64, 48)
    return Sample(f"s/{i}", "synthetic", split, image, "a dog it a cat", None, regions, {"n": i}).to_record()


def odd_rows() -> list[dict]:
    """Rows each path must read row by row (and some it must reject), each between plain ones."""
    odd = []

    def variant(change) -> None:
        row = good(100 + len(odd))
        change(row)
        odd.append(row)

    variant(lambda r: r.update(id=None))
    variant(lambda r: r.update(id=""))
    variant(lambda r: r.update(text=""))
    variant(lambda r: r["image"].update(width=None))
    variant(lambda r: r["image"].update(height=0))
    variant(lambda r: r.update(image=None))
    variant(lambda r: r.update(dataset=None))
    variant(lambda r: r["regions"][1].update(role="answer"))
    variant(lambda r: r["regions"][0].update(role="choice"))  # a grounded region with a role
    variant(lambda r: r["regions"][0].update(phrase=None))
    variant(lambda r: r["regions"][0].update(span=None))
    variant(lambda r: r["regions"][0].update(span=[3, 3]))
    variant(lambda r: r["regions"][0].update(span=[None, 4]))
    variant(lambda r: r["regions"][0].update(span=[0, 10]))  # overlaps "a cat"
    variant(lambda r: r["regions"].reverse())  # grounded regions out of text order
    variant(lambda r: r["regions"][0].update(boxes=[[1.0, 2.0, 3.0]]))
    variant(lambda r: r["regions"][2]["boxes"].append(None))
    variant(lambda r: r["regions"][2]["boxes"][1].__setitem__(2, None))
    variant(lambda r: r["regions"].insert(1, None))
    variant(lambda r: r.update(regions=None))  # no regions: plain (nothing to render)
    variant(lambda r: r.update(split="val"))  # a split change ends the block
    variant(lambda r: r["regions"][0].update(boxes=None))  # boxless now: still plain
    rows = []
    for n, row in enumerate(odd):
        rows += [good(n), row]
    return [*rows, good(999)]


def test_blocks_around_odd_rows(tmp_path):
    """Every condition a block vouches for, broken one row at a time: read_blocks gives read's samples,
    rejects and order, and the plain rows still go in blocks."""
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(odd_rows(), schema=SAMPLE_SCHEMA), path, row_group_size=7)
    reader = CanonicalReader()
    rows, expanded, blocks = block_checks.blocks_and_rows(reader, path)
    block_checks.same_accounting(rows, expanded)
    accounting = block_checks.accounting(rows)
    assert accounting["reject:bad-record"] >= 2 and accounting["sample"] >= 30
    in_blocks = sum(len(b) for p in reader.plan(str(path)) for b in reader.read_blocks(p) if hasattr(b, "make"))
    assert in_blocks >= 23  # the 21 good rows and the plain odd ones (no regions, boxless, val)


def odd_shard(tmp_path: Path) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(odd_rows(), schema=SAMPLE_SCHEMA), folder / "train-0.parquet", row_group_size=7)
    return folder


@pytest.mark.parametrize("source", ["synthetic", "odd"])
def test_blocks_render_as_samples_do(tmp_path, monkeypatch, source):
    """A whole conversion from canonical shards (synthetic Flickr30K Entities, and the odd rows): blocks, the
    sample path and the per-record path give the same output tree."""
    from grounding_convert.readers.base import Reader
    from grounding_convert.writers.base import Writer

    source = canonical_from(tmp_path, "flickr30k-entities", 40) if source == "synthetic" else odd_shard(tmp_path)
    calls = []
    real = Writer.render_block
    monkeypatch.setattr(Writer, "render_block", lambda self, b, t, s: calls.append(len(b)) or real(self, b, t, s))
    trees = {}
    for name, patches in (("blocks", []), ("samples", [(CanonicalReader, "read_blocks", Reader.read_blocks)]),
                          ("per-record", [(Writer, "batch_ready", lambda self, tasks: False)])):  # fmt: skip
        with monkeypatch.context() as patch:
            for owner, attribute, value in patches:
                patch.setattr(owner, attribute, value)
            out = tmp_path / name
            convert(make_job(input=str(source), output=str(out), writer="qwen-vl", reader="canonical"),
                    RunOptions(progress=False))  # fmt: skip
            trees[name] = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert trees["blocks"] == trees["samples"] == trees["per-record"]
    assert sum(calls) >= 20  # the blocks run took the block path
