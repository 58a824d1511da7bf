"""Visual Genome reader on the real 5-image excerpt, hand-made bad files and the synthetic generator."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding_convert.errors import InputFileError, Note, Reject, UsageError
from grounding_convert.readers.base import Reader
from grounding_convert.readers.visual_genome import VisualGenomeReader
from grounding_convert.schema import Sample
from grounding_convert.synth.visual_genome import generate

from . import block_checks
from .block_checks import accounting as tally
from .block_checks import same_accounting


def read_all(path: Path | str, **options: object) -> list:
    reader = VisualGenomeReader.from_mapping(dict(options))
    return [item for partition in reader.plan(str(path)) for item in reader.read(partition)]


def samples(items: list) -> list[Sample]:
    return [item for item in items if isinstance(item, Sample)]


# --- the real excerpt ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "annotations", "expected"),
    [
        ("v1.2", "regions", 1278),
        ("v1.0", "regions", 1288),
        ("v1.2", "objects", 177),
        ("v1.0", "objects", 224),
    ],
)
def test_real_excerpt_counts(vg_excerpt: Path, version: str, annotations: str, expected: int) -> None:
    items = read_all(vg_excerpt / version, annotations=annotations)
    # the 5-image sample has no out-of-image or empty boxes (SOURCES §1.4): nothing rejected or clipped
    assert tally(items) == Counter({"sample": expected})
    ids = [s.id for s in samples(items)]
    assert len(set(ids)) == expected


def test_reader_contract(vg_excerpt: Path) -> None:
    assert issubclass(VisualGenomeReader, Reader)
    assert (VisualGenomeReader.name, VisualGenomeReader.dataset) == ("visual-genome", "visual_genome")
    reader = VisualGenomeReader()
    [partition] = reader.plan(str(vg_excerpt / "v1.2"))
    assert pickle.loads(pickle.dumps(partition)) == partition
    assert partition.params["image_data"] == str(vg_excerpt / "image_data.json")
    files = reader.input_files(str(vg_excerpt / "v1.2"))
    assert [f.name for f in files] == ["region_descriptions.json", "image_data.json"]


def test_region_box_matches_raw_json(vg_excerpt: Path) -> None:
    raw = json.loads((vg_excerpt / "v1.2" / "region_descriptions.json").read_text())
    region = next(r for e in raw for r in e["regions"] if r["region_id"] == 1384)
    assert (region["x"], region["y"], region["width"], region["height"]) == (241, 491, 61, 30)
    by_id = {s.id: s for s in samples(read_all(vg_excerpt / "v1.2"))}
    sample = by_id["visual_genome/1/1384"]
    assert sample.text == "man is wearing sneakers"
    assert sample.regions[0].boxes == [[241.0, 491.0, 302.0, 521.0]]
    assert sample.regions[0].span == (0, len(sample.text))
    assert sample.split is None
    assert sample.meta == {"image_id": 1, "region_id": 1384}
    # image 1 lives in VG_100K_2 (from its url), image 2 in VG_100K
    assert (sample.image.file, sample.image.id, sample.image.width, sample.image.height) == (
        "VG_100K_2/1.jpg",
        "1",
        800,
        600,
    )
    assert sample.image.url == "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg"
    image2 = next(s for s in by_id.values() if s.image.id == "2")
    assert (image2.image.file, image2.image.width, image2.image.height) == ("VG_100K/2.jpg", 800, 600)


def test_both_versions_key_spellings(vg_excerpt: Path) -> None:
    v10 = {s.id: s for s in samples(read_all(vg_excerpt / "v1.0"))}
    v12 = {s.id: s for s in samples(read_all(vg_excerpt / "v1.2"))}
    # v1.0 regions spell ids "id" and the image "image"; v1.2 "region_id" and "image_id"
    for table in (v10, v12):
        first = table["visual_genome/1/1382"]
        assert first.text == "the clock is green in colour"
        assert first.regions[0].boxes == [[421.0, 57.0, 503.0, 196.0]]
    objects10 = samples(read_all(vg_excerpt / "v1.0", annotations="objects"))
    objects12 = samples(read_all(vg_excerpt / "v1.2", annotations="objects"))
    # the same clock is object 38203 in v1.0 and 1058498 in v1.2 (ids are not stable across versions)
    assert objects10[0].id == "visual_genome/1/38203"
    assert objects12[0].id == "visual_genome/1/1058498"
    for obj in (objects10[0], objects12[0]):
        assert obj.text == "clock"
        assert obj.regions[0].boxes == [[421.0, 91.0, 500.0, 430.0]]
    assert objects10[0].regions[0].category is None  # v1.0 has no synsets
    assert objects12[0].regions[0].category == "clock.n.01"
    assert objects12[0].meta == {"image_id": 1, "object_id": 1058498, "synsets": "clock.n.01"}
    several = [s for s in objects12 if "names" in s.meta]
    assert len(several) == 12  # SOURCES §1.4: 12 of 177 v1.2 objects have 2-3 names
    assert all(s.text == s.meta["names"].split("|")[0] for s in several)


def test_stray_whitespace_is_removed(vg_excerpt: Path) -> None:
    raw = json.loads((vg_excerpt / "v1.2" / "region_descriptions.json").read_text())
    phrases = {f"visual_genome/{e['id']}/{r['region_id']}": r["phrase"] for e in raw for r in e["regions"]}
    assert phrases["visual_genome/1/1383"] == "shade is along the street "
    by_id = {s.id: s for s in samples(read_all(vg_excerpt / "v1.2"))}
    assert by_id.keys() == phrases.keys()
    sample = by_id["visual_genome/1/1383"]
    assert sample.text == sample.regions[0].phrase == "shade is along the street"
    assert sample.regions[0].span == (0, 25)
    changed = [sid for sid, phrase in phrases.items() if by_id[sid].text != phrase]
    assert len(changed) == 98  # 90 with whitespace at an end, 9 with inner runs of spaces (1 has both)
    assert all(by_id[sid].text == " ".join(phrases[sid].split()) for sid in phrases)


@pytest.mark.parametrize(("version", "annotations"), [("v1.2", "regions"), ("v1.2", "objects"), ("v1.0", "objects")])
def test_partitioning_does_not_change_output(vg_excerpt: Path, version: str, annotations: str) -> None:
    whole = read_all(vg_excerpt / version, annotations=annotations)
    reader = VisualGenomeReader.from_mapping({"annotations": annotations, "regions_per_partition": "20"})
    partitions = reader.plan(str(vg_excerpt / version))
    assert len(partitions) == 5  # one image per partition: 20 regions is far below any image's bytes
    assert [p.index for p in partitions] == list(range(5))
    assert len({p.key for p in partitions}) == 5
    assert reader.plan(str(vg_excerpt / version)) == partitions  # stable
    split = [item for p in partitions for item in reader.read(p)]
    assert [s.to_record() for s in samples(split)] == [s.to_record() for s in samples(whole)]


def test_file_input_and_explicit_image_data(vg_excerpt: Path) -> None:
    # an objects.json given directly is read as objects whatever --annotations says
    items = read_all(vg_excerpt / "v1.2" / "objects.json")
    assert tally(items) == Counter({"sample": 177})
    items = read_all(vg_excerpt / "v1.0", vg_image_data=str(vg_excerpt / "image_data.json"))
    assert tally(items) == Counter({"sample": 1288})


def test_detect(vg_excerpt: Path, tmp_path: Path) -> None:
    assert VisualGenomeReader.detect(str(vg_excerpt / "v1.0"))
    assert VisualGenomeReader.detect(str(vg_excerpt / "v1.2"))
    assert VisualGenomeReader.detect(str(vg_excerpt / "v1.2" / "objects.json"))
    assert not VisualGenomeReader.detect(str(vg_excerpt))  # the parent holds only image_data.json
    assert not VisualGenomeReader.detect(str(vg_excerpt / "v1.2" / "relationships.json"))
    assert not VisualGenomeReader.detect(str(vg_excerpt / "image_data.json"))
    (tmp_path / "region_descriptions.json").write_text('{"images": []}')
    assert not VisualGenomeReader.detect(str(tmp_path))
    assert not VisualGenomeReader.detect(str(tmp_path / "missing"))


def test_split_is_refused(vg_excerpt: Path) -> None:
    with pytest.raises(UsageError, match="no splits"):
        VisualGenomeReader.from_mapping({"split": "train"}).plan(str(vg_excerpt / "v1.2"))


# --- hand-made bad files ---------------------------------------------------------------------------


def write_vg(folder: Path, elements: list, images: list | None = None, name: str = "region_descriptions.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = [{"width": 100, "height": 50, "image_id": 1, "url": "https://x/VG_100K/1.jpg"}]
    (folder / "image_data.json").write_text(json.dumps(images))
    (folder / name).write_text(json.dumps(elements))
    return folder


def region(rid: int, x: object, y: object, w: object, h: object, phrase: object = "a thing") -> dict:
    return {"region_id": rid, "width": w, "height": h, "image_id": 1, "phrase": phrase, "y": y, "x": x}


def test_clipping_and_empty_boxes(tmp_path: Path) -> None:
    folder = write_vg(
        tmp_path,
        [
            {
                "regions": [
                    region(1, 10, 10, 20, 20),  # inside
                    region(2, -5, 40, 20, 20),  # partly outside left and bottom: clipped
                    region(3, 90, -904, 30, 20),  # wholly above the image: empty after clipping
                    region(4, 10, 10, 0, 20),  # zero width
                    region(5, 100, 0, 10, 10),  # starts on the right border: no area inside
                    region(6, 0, 0, 100, 50),  # exactly the image
                ],
                "id": 1,
            }
        ],
    )
    items = read_all(folder)
    assert tally(items) == Counter({"sample": 3, "note:clipped-box": 1, "reject:empty-box": 3})
    boxes = {s.id: s.regions[0].boxes for s in samples(items)}
    assert boxes == {
        "visual_genome/1/1": [[10.0, 10.0, 30.0, 30.0]],
        "visual_genome/1/2": [[0.0, 40.0, 15.0, 50.0]],
        "visual_genome/1/6": [[0.0, 0.0, 100.0, 50.0]],
    }
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [r.position for r in rejects] == ["image 1 region 3", "image 1 region 4", "image 1 region 5"]
    assert all(
        "region_descriptions.json" in r.message and r.source.endswith("region_descriptions.json") for r in rejects
    )
    assert rejects[0].raw["y"] == -904
    # the note comes just before the sample it concerns
    note_at = next(i for i, item in enumerate(items) if isinstance(item, Note))
    assert items[note_at + 1].id == "visual_genome/1/2"
    assert items[note_at].extra == {
        "sample_id": "visual_genome/1/2",
        "source": str(folder / "region_descriptions.json"),
    }


def test_bad_records_are_rejected_with_reasons(tmp_path: Path) -> None:
    folder = write_vg(
        tmp_path,
        [
            {
                "regions": [
                    region(1, 1, 1, 5, 5),
                    region(2, "1", 1, 5, 5),  # string coordinate
                    {"region_id": 3, "width": 5, "height": 5, "image_id": 1, "y": 1, "x": 1},  # no phrase
                    region(4, 1, 1, 5, 5, phrase=" \n "),  # blank phrase
                    region(5, 1, 1, 5, 5, phrase=7),
                    {"width": 5, "height": 5, "image_id": 1, "phrase": "p", "y": 1, "x": 1},  # no id
                    "not an object",
                    region(8, True, 1, 5, 5),
                    region(9, 1.5, 2.25, 3.5, 4),  # floats are fine
                    {"region_id": 10, "width": 5, "image_id": 1, "phrase": "p", "y": 1, "x": 1},  # no height
                ],
                "id": 1,
            },
            {"regions": [region(1, 1, 1, 5, 5)], "id": 2},  # image 2 is not in image_data.json
            {"regions": [region(1, 1, 1, 5, 5)], "id": 3},  # image 3 has no size
            {"id": 4},
            {"regions": {"a": 1}, "id": 5},
            [1, 2],
            {"regions": [], "id": 6},
        ],
        images=[
            {"width": 100, "height": 50, "image_id": 1, "url": "https://x/VG_100K/1.jpg"},
            {"width": None, "height": 50, "id": 3},
        ],
    )
    items = read_all(folder)
    assert tally(items) == Counter(
        {
            "sample": 2,
            "reject:wrong-type": 6,
            "reject:missing-key": 4,
            "reject:bad-text": 1,
            "reject:bad-size": 2,
        }
    )
    assert [s.id for s in samples(items)] == ["visual_genome/1/1", "visual_genome/1/9"]
    assert samples(items)[1].regions[0].boxes == [[1.5, 2.25, 5.0, 6.25]]
    messages = [i.message for i in items if isinstance(i, Reject)]
    assert "region_descriptions.json: image 1 region 2: 'x' is not a number: '1'" in messages
    assert "region_descriptions.json: image 1 region 3: no 'phrase'" in messages
    assert "region_descriptions.json: image 1 region #5: no 'region_id' or 'id'" in messages
    assert "region_descriptions.json: image 1 region 10: no 'height'" in messages
    assert "region_descriptions.json: image 4 has no 'regions' list" in messages
    assert any("image 2 is not in image_data.json" in m for m in messages)
    assert any(m.startswith("region_descriptions.json: element 5 of bytes") for m in messages)


def test_objects_name_spellings(tmp_path: Path) -> None:
    folder = write_vg(
        tmp_path,
        [
            {
                "image_url": "https://x/{weird}/1.jpg",  # a "{" in a string before the key
                "image_id": 1,
                "objects": [
                    {"h": 5, "object_id": 11, "names": [" tall tree "], "w": 5, "y": 1, "x": 1},
                    {
                        "h": 5,
                        "object_id": 12,
                        "name": "sign",
                        "w": 5,
                        "y": 1,
                        "x": 1,
                        "merged_object_ids": [],
                    },
                    {"h": 5, "id": 13, "names": [], "w": 5, "y": 1, "x": 1},
                    {"h": 5, "id": 14, "w": 5, "y": 1, "x": 1},
                ],
            }
        ],
        name="objects.json",
    )
    items = read_all(folder, annotations="objects")
    assert tally(items) == Counter({"sample": 2, "reject:wrong-type": 1, "reject:missing-key": 1})
    assert [(s.id, s.text) for s in samples(items)] == [
        ("visual_genome/1/11", "tall tree"),
        ("visual_genome/1/12", "sign"),
    ]


# --- whole-file problems ---------------------------------------------------------------------------


def test_truncated_file_names_the_file(vg_excerpt: Path, tmp_path: Path) -> None:
    data = (vg_excerpt / "v1.2" / "region_descriptions.json").read_bytes()
    (tmp_path / "image_data.json").write_bytes((vg_excerpt / "image_data.json").read_bytes())
    target = tmp_path / "region_descriptions.json"
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        VisualGenomeReader().plan(str(tmp_path))
    assert info.value.path == str(target)


def test_corrupt_middle_names_the_file(vg_excerpt: Path, tmp_path: Path) -> None:
    data = (vg_excerpt / "v1.2" / "region_descriptions.json").read_bytes()
    (tmp_path / "image_data.json").write_bytes((vg_excerpt / "image_data.json").read_bytes())
    target = tmp_path / "region_descriptions.json"
    cut = data.index(b'"phrase"', 50_000)
    target.write_bytes(data[:cut] + b"@@" + data[cut:])
    reader = VisualGenomeReader()
    with pytest.raises(InputFileError, match="invalid JSON") as info:
        [item for p in reader.plan(str(tmp_path)) for item in reader.read(p)]
    assert info.value.path == str(target)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "is empty"), (b'{"regions": []}', "does not start with"), (b"  [ ] ", None)],
)
def test_empty_and_non_array_files(tmp_path: Path, content: bytes, problem: str | None) -> None:
    write_vg(tmp_path, [])
    (tmp_path / "region_descriptions.json").write_bytes(content)
    if problem is None:
        assert VisualGenomeReader().plan(str(tmp_path)) == []
        return
    with pytest.raises(InputFileError, match=problem):
        VisualGenomeReader().plan(str(tmp_path))


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        VisualGenomeReader().plan(str(tmp_path / "nowhere"))
    with pytest.raises(InputFileError, match="not found") as info:
        VisualGenomeReader().plan(str(tmp_path))
    assert info.value.path.endswith("region_descriptions.json")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "region_descriptions.json").write_text("[]")
    with pytest.raises(InputFileError, match="image_data.json"):
        VisualGenomeReader().plan(str(sub))
    with pytest.raises(InputFileError, match="not found"):
        VisualGenomeReader.from_mapping({"vg_image_data": str(tmp_path / "x.json")}).plan(str(sub))


# --- boundary search survives adversarial strings ------------------------------------------------

# phrases built from JSON punctuation and look-alikes of the key the boundary search seeks
TRICKY = st.lists(
    st.sampled_from(list('{}[]",: \\\nab') + ['"regions": [', '{"regions"', "}, {", '\\"regions\\": ']),
    max_size=12,
).map("".join)


@settings(max_examples=40, deadline=None)
@given(phrases=st.lists(st.lists(TRICKY, min_size=1, max_size=4), min_size=2, max_size=8), size=st.integers(1, 4))
def test_any_partition_size_gives_the_same_output(tmp_path_factory: pytest.TempPathFactory, phrases, size) -> None:
    folder = tmp_path_factory.mktemp("vg")
    elements = [
        {"regions": [region(i * 10 + j, 1, 1, 5, 5, phrase=p) for j, p in enumerate(ps)], "id": 1}
        for i, ps in enumerate(phrases)
    ]
    write_vg(folder, elements)
    whole = read_all(folder)
    reader = VisualGenomeReader.from_mapping({"regions_per_partition": size})
    parts = reader.plan(str(folder))
    split = [item for p in parts for item in reader.read(p)]
    assert [getattr(i, "id", None) or i.position for i in split] == [
        getattr(i, "id", None) or i.position for i in whole
    ]
    assert tally(whole)["sample"] + tally(whole)["reject:bad-text"] == sum(len(ps) for ps in phrases)


# --- synthetic data --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.0"])
def test_synthetic_counts_match_generator(tmp_path: Path, version: str) -> None:
    counts = generate(tmp_path, images=200, seed=3, version=version, write_images=False)
    assert counts["regions"] >= 10_000
    assert counts["rejected"] > 0 and counts["clipped"] > 0 and counts["trailing_spaces"] > 0
    reader_options = {"regions_per_partition": 1000}
    items = read_all(tmp_path, **reader_options)
    assert tally(items) == Counter(
        {
            "sample": counts["samples"],
            "reject:empty-box": counts["rejected"],
            "note:clipped-box": counts["clipped"],
        }
    )
    objects = read_all(tmp_path, annotations="objects", **reader_options)
    assert tally(objects) == Counter(
        {
            "sample": counts["object_samples"],
            "reject:empty-box": counts["object_rejected"],
            "note:clipped-box": counts["object_clipped"],
        }
    )
    assert len(VisualGenomeReader.from_mapping(reader_options).plan(str(tmp_path))) >= 10
    regions_in_file = json.loads((tmp_path / "region_descriptions.json").read_text())
    key = "id" if version == "1.0" else "region_id"
    assert sum(len(e["regions"]) for e in regions_in_file) == counts["regions"]
    assert all(key in r for e in regions_in_file for r in e["regions"])
    kept = samples(items)
    assert all(s.text == " ".join(s.text.split()) for s in kept)
    for sample in kept:
        x1, y1, x2, y2 = sample.regions[0].boxes[0]
        assert 0 <= x1 < x2 <= sample.image.width and 0 <= y1 < y2 <= sample.image.height


def test_synthetic_images_are_where_the_samples_say(tmp_path: Path) -> None:
    counts = generate(tmp_path, images=8, seed=1, regions_per_image=3, objects_per_image=2)
    assert counts["image_files"] == 8
    kept = samples(read_all(tmp_path))
    assert {s.image.file for s in kept} >= {"VG_100K/1.jpg", "VG_100K_2/7.jpg"}
    assert all((tmp_path / s.image.file).is_file() for s in kept)
    assert not any(s.image.id == "3" for s in kept)  # image 3 has an empty regions list
    assert generate(tmp_path / "again", images=8, seed=1, regions_per_image=3, objects_per_image=2) == counts
    assert (tmp_path / "again" / "region_descriptions.json").read_bytes() == (
        tmp_path / "region_descriptions.json"
    ).read_bytes()


# --- blocks (read_blocks): the same samples, rejects and note counts as read ---------------------------------


def blocks_and_rows(path: Path | str, **options: object) -> tuple[list, list, int]:
    return block_checks.blocks_and_rows(VisualGenomeReader.from_mapping(dict(options)), path)


@pytest.mark.parametrize(("version", "annotations"), [("v1.2", "regions"), ("v1.0", "regions"), ("v1.2", "objects")])
def test_blocks_give_what_read_gives_on_the_real_excerpt(vg_excerpt: Path, version: str, annotations: str) -> None:
    rows, expanded, blocks = blocks_and_rows(vg_excerpt / version, annotations=annotations)
    same_accounting(rows, expanded)
    assert (blocks > 0) == (annotations == "regions")  # objects come as samples


def test_blocks_around_bad_records(tmp_path: Path) -> None:
    """Rejects, odd-but-valid regions (float boxes) and clipped boxes among plain regions."""
    elements = [
        {"regions": [region(i, 1, 1, 5, 5) for i in range(1, 6)] + [region(6, "1", 1, 5, 5)], "id": 1},
        {"regions": [region(7, 1.5, 2.25, 3.5, 4), region(8, 90, 40, 50, 50), region(9, 2, 2, 3, 3)], "id": 1},
        {"id": 4},
        {"regions": [region(10, 200, 200, 5, 5), region(11, 1, 1, 5, 5)], "id": 1},
    ]
    folder = write_vg(tmp_path, elements, images=[{"width": 100, "height": 50, "image_id": 1}])
    rows, expanded, blocks = blocks_and_rows(folder)
    same_accounting(rows, expanded)
    assert tally(rows)["note:clipped-box"] == 1 and blocks == 1  # rejects do not cut a block


def test_blocks_on_synthetic_regions(tmp_path: Path) -> None:
    generate(tmp_path, images=60, seed=3)
    rows, expanded, blocks = blocks_and_rows(tmp_path)
    same_accounting(rows, expanded)
    assert blocks > 0 and len(samples(rows)) > 500
