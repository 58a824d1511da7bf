"""GRIT reader: the real README record in all three layouts, filters, bad chunks, partitions, synth counts."""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.errors import Filtered, Note, Reject
from grounding_convert.readers import grit
from grounding_convert.readers.base import SampleBlock
from grounding_convert.readers.grit import GritReader, _byte_ranges
from grounding_convert.schema import Region, Sample
from grounding_convert.synth import generate
from grounding_convert.synth.grit import DOWNLOAD_COLUMNS, SCHEMA
from grounding_convert.synth.images import jpeg_bytes

CAPTION = "a wire hanger with a paper cover that reads we heart our customers"
HANGER = [0.019422357885505368, 0.027634161214033764, 0.9593302408854166, 0.969467560450236]
COVER = [0.019644069503434333, 0.31054004033406574, 0.9622142865754519, 0.9603442351023356]


def scaled(box: list[float], width: int, height: int) -> list[float]:
    return [box[0] * width, box[1] * height, box[2] * width, box[3] * height]


def read_all(path: Path, **options) -> list:
    reader = GritReader.from_mapping(options)
    return [item for part in reader.plan(str(path)) for item in reader.read(part)]


def samples(items: list) -> list[Sample]:
    return [x for x in items if isinstance(x, Sample)]


@pytest.fixture(scope="module")
def record(shared_data: Path) -> dict:
    return json.loads((shared_data / "grit" / "grit_coyo_readme_instance.jsonl").read_text())


def float_offsets(rec: dict) -> dict:
    return {**rec, **{f: [[float(v) for v in c] for c in rec[f]] for f in ("noun_chunks", "ref_exps")}}


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist([float_offsets(r) for r in rows], schema=SCHEMA), path)
    return path


def test_real_record_jsonl(shared_data: Path) -> None:
    path = shared_data / "grit" / "grit_coyo_readme_instance.jsonl"
    assert GritReader.detect(str(path))
    items = read_all(path)
    (sample,) = items
    assert sample.id == "grit/1795296605919" and sample.dataset == "grit" and sample.split == "train"
    assert sample.text == CAPTION and sample.text[19:32] == "a paper cover"
    assert sample.regions == [
        Region("a wire hanger", (0, 13), [scaled(HANGER, 1024, 693)], score=0.67520964),
        Region("a paper cover", (19, 32), [scaled(COVER, 1024, 693)], score=0.79298526),
    ]
    image = sample.image
    assert (image.file, image.id, image.width, image.height) == (
        "1795296605919.jpg",
        "1795296605919",
        1024,
        693,
    )
    assert image.url == "https://www.thestrapsaver.com/wp-content/uploads/customerservice-1.jpg"
    assert sample.meta == {
        "key": "000373938",
        "clip_similarity_vitb32": 0.353271484375,
        "clip_similarity_vitl14": 0.2958984375,
        "original_width": 1024,
        "original_height": 693,
    }


def test_real_record_parquet_with_float_offsets(tmp_path: Path, shared_data: Path, record: dict) -> None:
    path = write_parquet(tmp_path / "coyo_0_snappy.parquet", [record])
    assert pq.read_schema(path).field("noun_chunks").type == pa.list_(pa.list_(pa.float64()))
    assert GritReader.detect(str(tmp_path)) and GritReader.detect(str(path))
    (from_parquet,) = read_all(tmp_path)
    (from_jsonl,) = read_all(shared_data / "grit" / "grit_coyo_readme_instance.jsonl")
    assert from_parquet.to_record() == from_jsonl.to_record()
    assert from_parquet.regions[1].span == (19, 32) and isinstance(from_parquet.regions[1].span[0], int)


def write_download(root: Path, record: dict) -> None:
    """One downloaded (resized to 256x173) and one failed row, as img2dataset writes them."""
    ok = {**float_offsets(record), "key": "000000000", "status": "success", "error_message": None}
    ok.update(width=256, height=173, original_width=1024, original_height=693, exif="{}", sha256="ab" * 32)
    failed = {**ok, "key": "000000001", "status": "failed_to_download", "error_message": "HTTP Error 404"}
    failed.update(width=None, height=None, original_width=None, original_height=None, sha256=None)
    with tarfile.open(root / "00000.tar", "w") as tar:
        for name, data in [
            ("000000000.jpg", jpeg_bytes(256, 173)),
            ("000000000.json", orjson.dumps(ok)),
            ("000000000.txt", CAPTION.encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    columns = [name for name, _ in DOWNLOAD_COLUMNS]
    rows = [{c: r.get(c) for c in columns} for r in (ok, failed)]
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(DOWNLOAD_COLUMNS)), root / "00000.parquet")
    (root / "00000_stats.json").write_text(json.dumps({"count": 2, "successes": 1, "failed_to_download": 1}))


def test_real_record_img2dataset_uses_the_downloaded_size(tmp_path: Path, record: dict) -> None:
    write_download(tmp_path, record)
    assert GritReader.detect(str(tmp_path))
    items = read_all(tmp_path)
    sample, failed = items
    assert failed == Filtered("download-failed", str(tmp_path / "00000.parquet"), "000000001")
    assert sample.id == "grit/1795296605919"
    assert (sample.image.file, sample.image.width, sample.image.height) == ("000000000.jpg", 256, 173)
    assert [r.boxes for r in sample.regions] == [[scaled(HANGER, 256, 173)], [scaled(COVER, 256, 173)]]
    assert sample.meta["tar"] == "00000.tar" and sample.meta["key"] == "000000000"
    assert (sample.meta["original_width"], sample.meta["original_height"]) == (1024, 693)


def test_min_score_and_ref_exps(shared_data: Path) -> None:
    path = shared_data / "grit" / "grit_coyo_readme_instance.jsonl"
    note, sample = read_all(path, min_score="0.7")
    assert note == Note("below-min-score", 1, {"source": str(path)})
    assert [r.phrase for r in sample.regions] == ["a paper cover"]
    note, filtered = read_all(path, min_score="0.8")
    assert note.count == 2 and filtered == Filtered("no-regions", str(path), "byte 0")
    assert read_all(path, split="val") == [] and len(read_all(path, split="train")) == 1
    (sample,) = read_all(path, spans="ref-exps")
    assert sample.regions == [
        Region(CAPTION, (0, 66), [scaled(HANGER, 1024, 693)], score=0.67520964),
        Region(CAPTION[19:], (19, 66), [scaled(COVER, 1024, 693)], score=0.79298526),
    ]


def test_same_span_merges_and_slightly_outside_is_clipped(tmp_path: Path, record: dict) -> None:
    chunks = [[19, 32, *COVER, 0.5], [19, 32, -0.002, 0.1, 0.5, 1.001, 0.9]]
    path = tmp_path / "grit_coyo.jsonl"
    path.write_bytes(orjson.dumps({**record, "noun_chunks": chunks}) + b"\n")
    sample, note = read_all(path)
    (region,) = sample.regions
    assert region.boxes == [scaled(COVER, 1024, 693), [0.0, 0.1 * 693, 0.5 * 1024, 693.0]]
    assert region.score == 0.9
    assert note == Note("clipped-box", 1, {"sample_id": sample.id, "source": str(path)})


@pytest.mark.parametrize(
    ("chunk", "reason"),
    [
        ([19, 70, *COVER, 0.5], "bad-span"),
        ([32, 19, *COVER, 0.5], "bad-span"),
        ([19, 19, *COVER, 0.5], "bad-span"),
        ([19.5, 32, *COVER, 0.5], "bad-span"),
        ([19, 32, math.nan, 0.1, 0.5, 0.5, 0.5], "bad-box"),
        ([19, 32, 0.5, 0.1, 0.5, 0.5, 0.5], "empty-box"),
        ([19, 32, 0.5], "wrong-type"),
    ],
)
def test_bad_chunks_reject_the_record(tmp_path: Path, record: dict, chunk: list, reason: str) -> None:
    path = write_parquet(tmp_path / "bad.parquet", [{**record, "noun_chunks": [chunk]}])
    (reject,) = read_all(path)
    assert isinstance(reject, Reject) and reject.reason == reason
    assert reject.source == str(path) and reject.position == "row 0" and "noun_chunks[0]" in reject.message


def test_bad_json_lines_and_sizes(tmp_path: Path, record: dict) -> None:
    path = tmp_path / "grit_coyo.jsonl"
    lines = [b"{not json", orjson.dumps({**record, "width": 0}), orjson.dumps({**record, "caption": ""})]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert [(x.reason, x.position) for x in read_all(path)] == [
        ("bad-record", "byte 0"),
        ("bad-size", f"byte {len(lines[0]) + 1}"),
        ("bad-text", f"byte {len(lines[0]) + len(lines[1]) + 2}"),
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=60), st.integers(1, 9))
def test_byte_ranges_cover_every_line_once(tmp_path_factory, lengths: list[int], rows: int) -> None:
    path = tmp_path_factory.mktemp("ranges") / "x.jsonl"
    data = b"".join(b"x" * n + b"\n" for n in lengths)
    path.write_bytes(data)
    ranges = _byte_ranges(path, rows)
    line_starts = {0} | {i + 1 for i, c in enumerate(data) if c == ord("\n")}
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(start in line_starts for start, _ in ranges)


@pytest.mark.parametrize(("layout", "images"), [("parquet", 10_000), ("jsonl", 10_000), ("img2dataset", 800)])
def test_synth_counts_match(tmp_path: Path, layout: str, images: int) -> None:
    counts = generate("grit", tmp_path, images=images, seed=11, layout=layout)
    assert GritReader.detect(str(tmp_path))
    for spans in ("noun-chunks", "ref-exps"):
        reader = GritReader.from_mapping({"spans": spans, "rows_per_partition": 2500})
        partitions = reader.plan(str(tmp_path))
        assert len(partitions) >= 4
        items = [item for part in partitions for item in reader.read(part)]
        got = samples(items)
        kinds = Counter(type(x).__name__ + ":" + getattr(x, "reason", "") for x in items if isinstance(x, Filtered))
        assert len(got) == counts["samples"] and len({s.id for s in got}) == counts["samples"]
        assert kinds == ({"Filtered:download-failed": counts["failed"]} if counts["failed"] else {})
        name = spans.replace("-", "_")
        assert sum(len(s.regions) for s in got) == counts[f"regions_{name}"]
        assert sum(len(r.boxes) for s in got for r in s.regions) == counts[f"boxes_{name}"]
        clipped = sum(x.count for x in items if isinstance(x, Note) and x.what == "clipped-box")
        assert clipped == counts[f"clipped_{name}"]
        assert not any(isinstance(x, Reject) for x in items)
    assert len(samples(read_all(tmp_path, min_score="0.6"))) < counts["samples"]
    if layout == "parquet":
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "coyo_0_snappy.parquet",
            "coyo_1_snappy.parquet",
        ]


def test_detect_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "other.jsonl").write_text('{"text": "hello"}\n')
    assert not GritReader.detect(str(tmp_path))
    assert not GritReader.detect(str(tmp_path / "missing"))


def test_nan_and_inf_offsets_are_rejected_not_fatal(tmp_path):
    """Float offsets arrive as doubles in parquet: NaN/inf must be a bad-span reject, never a crash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from grounding_convert.errors import Reject
    from grounding_convert.readers.grit import GritReader
    from grounding_convert.schema import Sample

    good = [19.0, 32.0, 0.1, 0.2, 0.9, 0.9, 0.8]
    rows = []
    for i, first in enumerate(
        [good, [float("nan"), 32.0, 0.1, 0.2, 0.9, 0.9, 0.8], [19.0, float("inf"), 0.1, 0.2, 0.9, 0.9, 0.8]]
    ):
        rows.append(
            {
                "key": f"{i:09d}",
                "id": i,
                "url": f"http://x/{i}.jpg",
                "width": 100,
                "height": 80,
                "caption": "a wire hanger with a paper cover that reads we heart our customers",
                "clip_similarity_vitb32": 0.3,
                "clip_similarity_vitl14": 0.3,
                "noun_chunks": [first],
                "ref_exps": [first],
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "coyo_0_snappy.parquet")
    reader = GritReader()
    items = [item for p in reader.plan(str(tmp_path)) for item in reader.read(p)]
    assert [type(i).__name__ for i in items] == ["Sample", "Reject", "Reject"]
    assert isinstance(items[0], Sample) and items[0].regions[0].phrase == "a paper cover"
    assert all(isinstance(r, Reject) and r.reason == "bad-span" for r in items[1:])


@pytest.mark.parametrize("layout, vouched", [("parquet", True), ("jsonl", True), ("img2dataset", False)])
def test_only_strict_decoders_vouch_for_their_strings(tmp_path: Path, layout: str, vouched: bool) -> None:
    """Parquet (Arrow) and JSONL (orjson) strings cannot hold lone surrogates, so the pipeline's check is
    skipped for them; tar member names can, so downloads keep it."""
    generate("grit", tmp_path / layout, images=30, seed=1, layout=layout)
    reader = GritReader()
    partitions = reader.plan(str(tmp_path / layout))
    assert partitions and all(reader.valid_unicode(p) is vouched for p in partitions)
    with pytest.raises(orjson.JSONDecodeError):  # what the JSONL promise rests on
        orjson.loads(b'{"caption": "a \\ud800 dog"}')


odd_number = st.one_of(
    st.floats(-0.5, 1.5, allow_nan=False, width=64),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, math.nan, math.inf, -math.inf, 1e-12]),
)


@st.composite
def odd_rows(draw, index: int) -> dict:
    caption = draw(st.sampled_from(["a dog on a red car", "x", "  ", "dog", "ünïcode dög", None]))
    chunks = []
    length = len(caption or "")
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(-1, length) | st.sampled_from([0.5, math.nan]))
        end = draw(st.integers(0, length + 1))
        box = [draw(odd_number) for _ in range(4)]
        if draw(st.booleans()):  # mostly well-formed boxes, as real data
            x1, y1 = draw(st.floats(0, 0.8)), draw(st.floats(0, 0.8))
            box = [x1, y1, x1 + draw(st.floats(0.01, 0.2)), y1 + draw(st.floats(0.01, 0.2))]
        chunks.append([float(start), float(end), *box, draw(odd_number)])
    if chunks and draw(st.integers(0, 5)) == 0:
        chunks.append(list(chunks[0]))  # same span twice
    if draw(st.integers(0, 30)) == 0:
        chunks = None  # a null chunk list (the whole batch then takes the row path)
    width = draw(st.sampled_from([640, 1, 3000, 0, -5, None]))
    return {
        "id": 10**12 + index,
        "key": f"{index:09d}",
        "url": "u",
        "caption": caption,
        "width": width,
        "height": draw(st.sampled_from([480, 1, 2])),
        "clip_similarity_vitb32": 0.3,
        "clip_similarity_vitl14": 0.2,
        "noun_chunks": chunks,
        "ref_exps": chunks,
    }


@settings(max_examples=80, deadline=None)
@given(data=st.data(), min_score=st.sampled_from([0.0, 0.5]))
def test_array_pass_reads_exactly_what_the_row_path_reads(tmp_path_factory, data, min_score):
    """Parquet rows checked and de-normalized as arrays give the same items (samples, rejects, notes)."""
    rows = [data.draw(odd_rows(i)) for i in range(data.draw(st.integers(1, 12)))]
    folder = tmp_path_factory.mktemp("odd")
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), folder / "coyo_0_snappy.parquet")
    reader = GritReader.from_mapping({"min_score": min_score})
    (partition,) = reader.plan(str(folder))
    arrays = list(reader.read(partition))
    import grounding_convert.readers.grit as grit_module

    real = grit_module._chunk_arrays
    try:
        grit_module._chunk_arrays = lambda *_: None  # no array pass: every row takes the row path
        by_row = list(reader.read(partition))
    finally:
        grit_module._chunk_arrays = real
    assert repr(arrays) == repr(by_row)  # repr: NaN boxes compare equal in text, not as floats
    # blocks: the same samples in the same places, the same rejects and filtered rows, the same note counts
    expanded, notes, block_notes = [], Counter(), Counter()
    for item in reader.read_blocks(partition):
        if isinstance(item, SampleBlock):
            block_notes.update(item.notes)
            expanded += item.samples()
        elif isinstance(item, Note):
            block_notes[item.what] += item.count
        else:
            expanded.append(item)
    for item in arrays:
        if isinstance(item, Note):
            notes[item.what] += item.count
    assert repr(expanded) == repr([item for item in arrays if not isinstance(item, Note)])
    assert block_notes == notes


def test_blocks_carry_the_plain_rows_as_columns(tmp_path):
    """A block's columns are its samples' values: ids, texts, files, sizes, phrases, spans, boxes."""
    generate("grit", tmp_path, images=300, seed=4)
    reader = GritReader.from_mapping({})
    blocks = [item for p in reader.plan(str(tmp_path)) for item in reader.read_blocks(p)]
    blocks = [b for b in blocks if isinstance(b, SampleBlock)]
    assert sum(len(b) for b in blocks) >= 250
    for block in blocks:
        for i, sample in enumerate(block.samples()):
            assert (sample.id, sample.text, sample.image.file, sample.image.id) == (
                block.ids[i],
                block.texts[i],
                block.files[i],
                block.image_ids[i],
            )
            assert (sample.image.width, sample.image.height) == (block.widths[i], block.heights[i])
            regions = [k for k, s in enumerate(block.region_sample.tolist()) if s == i]
            assert [r.phrase for r in sample.regions] == [block.phrases[k] for k in regions]
            assert [r.span for r in sample.regions] == [(block.starts[k], block.ends[k]) for k in regions]
            offsets = block.region_boxes
            assert [r.boxes for r in sample.regions] == [
                block.boxes[offsets[k] : offsets[k + 1]].tolist() for k in regions
            ]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 0, 3, 5, 9, 12]), st.sampled_from([0, 3, 5, 9, 12]), st.floats(width=32)),
        max_size=8,
    )
)
def test_merge_spans_fast_path_equals_the_general_merge(raw):
    """Chunks with spans in order take the one-pass path; it must give what the general merge gives."""
    caption = "abcdefghijklmnop"
    chunks = [(a, b, [float(i), 0.0, 1.0, 1.0], score) for i, (a, b, score) in enumerate(raw) if a < b]
    fast, general = grit._merge_spans(caption, chunks), grit._merge_shared_spans(caption, chunks)
    assert repr(fast) == repr(general)  # repr: NaN scores compare equal too
    assert [repr(r.score) for r in fast] == [repr(r.score) for r in general]  # never -0.0 on either path
