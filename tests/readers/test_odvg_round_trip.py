"""The odvg reader reads back what the odvg writer wrote (issue 15: "round-trips with the odvg writer")."""

from __future__ import annotations

from pathlib import Path

import pytest

import grounding_convert as gc


def test_odvg_writer_output_reads_back_to_the_source_captions_and_boxes(flickr_excerpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "odvg"
    result = gc.convert(
        str(flickr_excerpt), str(out), reader="flickr30k-entities", writer="odvg",
        format="jsonl", tasks="grounded-caption",
    )  # fmt: skip
    assert result.written > 0
    source = {s.id: s for s in gc.read(str(flickr_excerpt), reader="flickr30k-entities")}
    shards = sorted((out / "data").glob("*.jsonl"))
    back = [s for shard in shards for s in gc.read(str(shard), reader="odvg")]
    assert len(back) == sum(len(shard.read_bytes().splitlines()) for shard in shards)  # one sample per line
    by_text = {}
    for sample in source.values():
        if any(r.boxes and r.span for r in sample.regions):
            by_text.setdefault((sample.image.file, sample.text), sample)
    assert len(back) == len(by_text)
    for sample in back:
        original = by_text[(sample.image.file, sample.text)]
        assert (sample.image.width, sample.image.height) == (original.image.width, original.image.height)
        want = sorted((r.phrase, tuple(map(tuple, r.boxes))) for r in original.regions if r.boxes and r.span)
        got = sorted((r.phrase, tuple(map(tuple, r.boxes))) for r in sample.regions)
        assert [p for p, _ in got] == [p for p, _ in want]
        for (_, gb), (_, wb) in zip(got, want, strict=True):
            assert len(gb) == len(wb)
            assert [v for box in gb for v in box] == pytest.approx([v for box in wb for v in box], abs=1e-6)
