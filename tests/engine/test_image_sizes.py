"""``--image-root`` on any reader: each image's header against the annotated size (``--size-mismatch``)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import RecordError, UsageError
from grounding_convert.images import ImageSizes, SizeCheck, rescale
from grounding_convert.schema import ImageRef, Region, Sample
from grounding_convert.synth import generate
from grounding_convert.synth.images import write_jpeg

# dataset → (generator options, reader input, image root, reader options) relative to the fixture folder
DATASETS = {
    "flickr30k-entities": ({}, ".", "flickr30k-images", {}),
    "visual-genome": ({}, ".", ".", {}),
    "refcoco": ({}, "refcoco", "images/mscoco/images/train2014", {}),
    # Visual7W's JSONs have no size: the VG image_data.json gives it, the headers are checked against it
    "visual7w": ({}, ".", "images", {"vg_image_data": "image_data.json"}),
    "grit": ({"layout": "img2dataset"}, ".", "extracted", {}),
}


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    out = {}
    for name, (gen_options, inner, images, reader_options) in DATASETS.items():
        root = tmp_path_factory.mktemp(name)
        generate(name, root, images=4, seed=5, **gen_options)
        if name == "grit":  # the downloaded JPEGs, unpacked from the webdataset shard
            with tarfile.open(root / "00000.tar") as tar:
                tar.extractall(root / "extracted", filter="data")
        options = {k: str(root / v) for k, v in reader_options.items()}
        out[name] = (root / inner, root / images, options)
    return out


def run(path: Path, output: Path, reader: str, reader_options: dict, **job) -> tuple:
    made = make_job(
        input=str(path),
        output=str(output),
        writer="canonical",
        reader=reader,
        reader_options=reader_options,
        format="jsonl",
        **job,
    )
    result = convert(made, RunOptions(progress=False))
    records = {}
    for shard in sorted((output / "data").glob("*.jsonl")):
        for line in shard.read_bytes().splitlines():
            record = orjson.loads(line)
            records[record["id"]] = record
    return result.tally, records


def halve(path: Path) -> tuple[int, int]:
    """Resize the image to half its size, in place (a 'downscaled mirror'); returns the new size."""
    with Image.open(path) as image:
        image.load()
        small = image.resize((max(1, image.width // 2), max(1, image.height // 2)))
    small.save(path, format="JPEG")
    return small.size


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_reader_checks_real_sizes(native, tmp_path, dataset):
    path, images, options = native[dataset]
    baseline_tally, baseline = run(path, tmp_path / "plain", dataset, options)
    checked_tally, checked = run(path, tmp_path / "checked", dataset, options, image_root=str(images))
    assert checked == baseline and checked_tally.rejected == baseline_tally.rejected  # matching images: no change
    assert not {"size-mismatch", "missing-image", "unsafe-path"} & set(checked_tally.reject_reasons)

    first = next(iter(baseline.values()))
    victim = first["image"]["file"]
    of_victim = {rid for rid, r in baseline.items() if r["image"]["file"] == victim}
    annotated = (first["image"]["width"], first["image"]["height"])
    work = tmp_path / "images"
    _copy_tree(images, work)
    real = halve(work / victim)

    tally, kept = run(path, tmp_path / "reject", dataset, options, image_root=str(work))
    assert tally.reject_reasons["size-mismatch"] == len(of_victim)
    assert set(kept) == set(baseline) - of_victim and tally.balanced
    card = (tmp_path / "reject" / "README.md").read_text()
    assert f"| size-mismatch | {len(of_victim)} |" in card
    rejects = [r for r in read_rejects(tmp_path / "reject") if r["reason"] == "size-mismatch"]
    assert {r["position"] for r in rejects} == of_victim
    assert all(f"{real[0]}x{real[1]}" in r["message"] and victim in r["message"] for r in rejects)

    tally, scaled = run(path, tmp_path / "rescale", dataset, options, image_root=str(work), size_mismatch="rescale")
    assert tally.notes["size-rescaled"] == len(of_victim) and "size-mismatch" not in tally.reject_reasons
    assert set(scaled) == set(baseline)
    for rid, record in scaled.items():
        source = baseline[rid]
        if rid not in of_victim:
            assert record == source
            continue
        assert (record["image"]["width"], record["image"]["height"]) == real
        meta = orjson.loads(record["meta"])
        assert (meta["annotated_width"], meta["annotated_height"]) == annotated
        for region, before in zip(record["regions"], source["regions"], strict=True):
            expected = [
                [b[0] * real[0] / annotated[0], b[1] * real[1] / annotated[1], b[2] * real[0] / annotated[0],
                 b[3] * real[1] / annotated[1]]
                for b in before["boxes"]
            ]  # fmt: skip
            assert region["boxes"] == expected  # exactly the source boxes scaled

    tally, trusted = run(path, tmp_path / "trust", dataset, options, image_root=str(work), size_mismatch="trust")
    assert trusted == baseline and tally.notes["size-mismatch-trusted"] == len(of_victim)

    os.remove(work / victim)
    tally, _ = run(path, tmp_path / "missing", dataset, options, image_root=str(work))
    assert tally.reject_reasons["missing-image"] == len(of_victim)


def read_rejects(output: Path) -> list[dict]:
    return [
        orjson.loads(line) for f in sorted((output / "rejects").glob("*.jsonl")) for line in f.read_bytes().splitlines()
    ]


def _copy_tree(source: Path, target: Path) -> None:
    for file in source.rglob("*"):
        if file.is_file():
            (target / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (target / file.relative_to(source)).write_bytes(file.read_bytes())


def test_summary_and_card_count_mismatches_through_the_cli(native, tmp_path):
    path, images, _ = native["refcoco"]
    work = tmp_path / "images"
    _copy_tree(images, work)
    victim = sorted(work.iterdir())[0]
    halve(victim)
    args = ["convert", "-f", "refcoco", "-t", "qwen-vl", "-i", str(path), "--image-root", str(work), "--quiet"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("rejected:"))
    count = int(line.split("size-mismatch ")[1].split(",")[0])
    assert count >= 1 and f"| size-mismatch | {count} |" in (tmp_path / "out" / "README.md").read_text()
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "r"), "--size-mismatch", "rescale"])
    assert result.exit_code == 0 and f"size-rescaled {count}" in result.output
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b"), "--size-mismatch", "shrink"])
    assert (
        result.exit_code == 2
        and "Invalid value for '--size-mismatch': shrink (accepted: one of reject, rescale, trust)" in result.output
    )
    result = CliRunner().invoke(app, [*args[:-3], "--image-root", str(tmp_path / "nowhere"), "-o", str(tmp_path / "n")])
    assert result.exit_code == 2 and "folder not found" in result.output
    strict = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "s"), "--strict"])
    assert strict.exit_code == 1 and "size-mismatch" in strict.output


def test_make_job_refuses_an_unknown_policy(tmp_path):
    with pytest.raises(UsageError, match="size-mismatch"):
        make_job(input=str(tmp_path), output=str(tmp_path / "o"), writer="qwen-vl", reader="refcoco", size_mismatch="x")


def sample(file: str, width: int | None, height: int | None, boxes: list[list[float]]) -> Sample:
    return Sample(
        "s/1", "refcoco", "train", ImageRef(file, "1", width, height), "a cat", regions=[Region("a cat", None, boxes)]
    )


def test_headers_are_read_once_per_image(tmp_path):
    write_jpeg(tmp_path / "a.jpg", 30, 20)
    write_jpeg(tmp_path / "sub" / "b.jpg", 7, 9)
    sizes = ImageSizes(str(tmp_path), capacity=2)
    for _ in range(50):
        assert sizes.size("a.jpg") == (30, 20)
        assert sizes.size("./a.jpg") == (30, 20)  # another spelling, the same resolved path: no new read
        assert sizes.size("sub/b.jpg") == (7, 9)
    assert sizes.header_reads == 2
    write_jpeg(tmp_path / "c.jpg", 5, 5)
    assert sizes.size("c.jpg") == (5, 5)  # a third image pushes the least recently used one out
    assert sizes.size("a.jpg") == (30, 20) and sizes.header_reads == 4


def test_missing_broken_and_special_files_are_missing_images(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")  # a FIFO planted in an image folder must not hang the run
    sizes = ImageSizes(str(tmp_path))
    for name in ("absent.jpg", "broken.jpg", "folder.jpg", "fifo.jpg"):
        for _ in range(2):  # the cached error is raised again, as a fresh exception
            with pytest.raises(RecordError) as info:
                sizes.size(name)
            assert info.value.reason == "missing-image" and repr(name) in info.value.message


def test_a_sample_without_annotated_size_takes_the_real_one(tmp_path):
    write_jpeg(tmp_path / "a.jpg", 30, 20)
    checked, note = SizeCheck(str(tmp_path))(sample("a.jpg", None, None, [[1, 2, 3, 4]]))
    assert (checked.image.width, checked.image.height, note) == (30, 20, "size-from-image")
    same = sample("a.jpg", 30, 20, [[1, 2, 3, 4]])
    assert SizeCheck(str(tmp_path))(same) == (same, None)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5000),
    st.integers(1, 5000),
    st.integers(1, 5000),
    st.integers(1, 5000),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=5),
)
def test_rescale_scales_every_box_and_keeps_the_source(aw, ah, rw, rh, fractions):
    boxes = [[f[0] * aw, f[1] * ah, max(f[0], f[2]) * aw, max(f[1], f[3]) * ah] for f in fractions]
    original = sample("a.jpg", aw, ah, [list(b) for b in boxes])
    out = rescale(original, rw, rh)
    assert (out.image.width, out.image.height) == (rw, rh)
    assert out.meta == {"annotated_width": aw, "annotated_height": ah}
    assert out.regions[0].boxes == [[b[0] * rw / aw, b[1] * rh / ah, b[2] * rw / aw, b[3] * rh / ah] for b in boxes]
    for box in out.regions[0].boxes:  # inside the real image, edges on the border land on it exactly
        assert 0 <= box[0] <= box[2] <= rw and 0 <= box[1] <= box[3] <= rh
    assert original.regions[0].boxes == boxes and original.image.width == aw and original.meta == {}
