"""RefCOCO / RefCOCO+ / RefCOCOg readers over native refer-layout files (pickles written by the tests)."""

from __future__ import annotations

import copy
import json
import os
import pickle
import pickletools
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from grounding_convert.boxes import xywh_to_xyxy
from grounding_convert.errors import Filtered, InputFileError, Note, Reject, UsageError
from grounding_convert.readers import refcoco as mod
from grounding_convert.readers.refcoco import RefCocogReader, RefCocoPlusReader, RefCocoReader
from grounding_convert.schema import Sample
from grounding_convert.synth import refcoco as synth

READERS = (RefCocoReader, RefCocoPlusReader, RefCocogReader)


def read_all(reader, path) -> list:
    return [item for part in reader.plan(str(path)) for item in reader.read(part)]


def samples(items) -> list[Sample]:
    return [i for i in items if isinstance(i, Sample)]


def kinds(items) -> Counter:
    return Counter(type(i).__name__ for i in items)


@pytest.fixture(scope="module")
def excerpt(shared_data: Path) -> dict:
    return json.loads((shared_data / "refcoco" / "excerpts_transcribed.json").read_text())


def write_native(folder: Path, refs: list, instances: dict, split_by: str = "unc", py2: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = synth.py2_pickle_bytes(refs) if py2 else pickle.dumps(refs, protocol=2)
    (folder / f"refs({split_by}).p").write_bytes(data)
    (folder / "instances.json").write_text(json.dumps(instances))
    return folder


def instances_of(excerpt: dict, images=None, annotations=None) -> dict:
    return {
        "info": {"description": "excerpt"},
        "images": images if images is not None else [excerpt["refcoco_instances_json__images_0"]],
        "licenses": [{"id": 1, "name": "CC BY 2.0", "url": ""}],
        "annotations": annotations if annotations is not None else [excerpt["refcoco_instances_json__annotations_0"]],
        "categories": synth.CATEGORIES,
    }


def ref0_on_ann_3007(excerpt: dict) -> dict:
    """Element 0 of refs(unc).p, pointed at the one annotation the excerpt has (ann 3007, image 98304)."""
    ref = copy.deepcopy(excerpt["refcoco_unc_refs_p__element_0"])
    ref.update(ann_id=3007, image_id=98304, category_id=18)
    return ref


# --- the real excerpt ---------------------------------------------------------------------------------


@pytest.mark.parametrize("py2", [True, False])
def test_transcribed_element_0_becomes_three_canonical_samples(tmp_path, excerpt, py2):
    folder = write_native(tmp_path / "refcoco", [ref0_on_ann_3007(excerpt)], instances_of(excerpt), py2=py2)
    items = read_all(RefCocoReader(), folder)
    assert kinds(items) == {"Sample": 3}
    got = samples(items)
    expected_box = xywh_to_xyxy(263.87, 216.88, 21.13, 15.17)
    assert expected_box == pytest.approx([263.87, 216.88, 285.0, 232.05])
    assert [s.id for s in got] == ["refcoco/unc/0/0", "refcoco/unc/0/1", "refcoco/unc/0/2"]
    assert [s.text for s in got] == ["the lady with the blue shirt", "lady with back to us", "blue shirt"]
    for sample, sent_id in zip(got, range(3), strict=True):
        assert sample.dataset == "refcoco" and sample.split == "train"
        assert sample.image.file == "COCO_train2014_000000098304.jpg"  # instances name, not the ref's _16 one
        assert (sample.image.id, sample.image.width, sample.image.height) == ("98304", 640, 424)
        assert len(sample.regions) == 1
        region = sample.regions[0]
        assert region.phrase == sample.text and region.span == (0, len(sample.text))
        assert region.boxes == [expected_box]
        assert region.category == "dog"
        assert sample.meta == {"ref_id": 0, "ann_id": 3007, "sent_id": sent_id, "category_id": 18}
        assert Sample.from_record(sample.to_record()) == sample

    raw = samples(read_all(RefCocoReader(RefCocoReader.Options(text="raw")), folder))
    assert [s.text for s in raw] == ["THE LADY WITH THE BLUE SHIRT", "lady w back to us", "blue shirt"]
    assert [s.regions[0].span for s in raw] == [(0, 28), (0, 17), (0, 10)]


def test_unmodified_element_0_has_no_annotation_and_is_rejected(tmp_path, excerpt):
    ref = excerpt["refcoco_unc_refs_p__element_0"]  # ann 1719310: not in the one-annotation excerpt
    folder = write_native(tmp_path / "refcoco", [ref], instances_of(excerpt))
    items = read_all(RefCocoReader(), folder)
    assert kinds(items) == {"Reject": 3}
    refs_file = str(folder / "refs(unc).p")
    for item, sent_id in zip(items, range(3), strict=True):
        assert item.reason == "unknown-reference"
        assert item.source == refs_file and item.position == f"ref_id=0 sent_id={sent_id}"
        assert refs_file in item.message and "ann_id 1719310" in item.message


# --- bad records ------------------------------------------------------------------------------------


def _bad_fixture(tmp_path: Path, excerpt: dict) -> Path:
    base = ref0_on_ann_3007(excerpt)
    image = excerpt["refcoco_instances_json__images_0"]
    ann = excerpt["refcoco_instances_json__annotations_0"]

    def ref(ref_id, **changes):
        r = copy.deepcopy(base)
        r.update(ref_id=ref_id, sentences=[dict(s, sent_id=ref_id * 10 + j) for j, s in enumerate(r["sentences"])])
        r.update(changes)
        return r

    def annotation(ann_id, bbox, image_id=98304):
        return dict(ann, id=ann_id, bbox=bbox, image_id=image_id)

    annotations = [
        ann,
        annotation(1, [0, 0, 0, 15]),  # zero width
        annotation(2, [1, 2, float("nan"), 4]),  # NaN → not finite
        annotation(3, [600, 400, 100, 100]),  # partly outside 640x424 → clipped
        annotation(4, [700, 10, 20, 20]),  # wholly outside → nothing left
        annotation(5, [10, 10, 20, 20], image_id=7),  # its image is absent
        annotation(6, "10 10 20 20"),  # not a list
        annotation(7, [10, 10, 20, 20], image_id=11),  # image with a bad size
    ]
    images = [image, dict(image, id=11, width=0)]
    one = [{"sent": "one", "raw": "One", "sent_id": 0, "tokens": ["one"]}]
    refs = [
        ref(1, ann_id=1),
        ref(2, ann_id=2),
        ref(3, ann_id=3, sentences=one),
        ref(4, ann_id=4),
        ref(5, ann_id=5, image_id=7),
        ref(6, ann_id=6),
        ref(7, ann_id=7, image_id=11),
        "not a ref",
        {k: v for k, v in base.items() if k != "sentences"} | {"ref_id": 9},
        ref(10, sentences=[{"sent": "", "sent_id": 100}, {"raw": "x", "sent_id": 101}, {"sent": "ok"}, 5]),
        ref(11, ann_id="3007"),
        ref(12, split=None),
        ref(13, sentences=[]),
        ref(14, image_id=555),  # ref and annotation disagree on the image
    ]
    instances = instances_of(excerpt, images=images, annotations=annotations)
    return write_native(tmp_path / "refcoco", refs, instances)


def test_bad_records_are_rejected_with_reason_file_and_ids(tmp_path, excerpt):
    folder = _bad_fixture(tmp_path, excerpt)
    refs_file = str(folder / "refs(unc).p")
    items = read_all(RefCocoReader(), folder)
    rejects = [i for i in items if isinstance(i, Reject)]
    assert all(r.source == refs_file and r.message.startswith(refs_file) for r in rejects)
    by_ref: dict[str, Counter] = {}
    for r in rejects:
        key = r.position.split(" sent_id=")[0]
        by_ref.setdefault(key, Counter())[r.reason] += 1
    assert by_ref == {
        "ref_id=1": {"empty-box": 3},
        "ref_id=2": {"bad-box": 3},
        "ref_id=4": {"empty-box": 3},
        "ref_id=5": {"unknown-reference": 3},
        "ref_id=6": {"bad-box": 3},
        "ref_id=7": {"bad-size": 3},
        "refs[7]": {"wrong-type": 1},
        "refs[8] ref_id=9": {"missing-key": 1},
        "ref_id=10": {"bad-text": 1, "missing-key": 2, "wrong-type": 1},
        "ref_id=11": {"wrong-type": 3},
        "ref_id=12": {"wrong-type": 3},
        "refs[12] ref_id=13": {"bad-record": 1},
        "ref_id=14": {"unknown-reference": 3},
    }
    messages = {r.position: r.message for r in rejects}
    assert "has no 'sentences'" in messages["refs[8] ref_id=9"]
    assert "sentence 1 has no 'sent'" in messages["ref_id=10 sent_id=101"]
    assert "sentence 2 has no 'sent_id'" in messages["ref_id=10 sent_id=?2"]
    assert "lies outside the 640x424 image" in messages["ref_id=4 sent_id=40"]
    assert "image 7 is not in instances.json images" in messages["ref_id=5 sent_id=50"]
    assert "ref image_id 555 but annotation 3007 is on image 98304" in messages["ref_id=14 sent_id=140"]

    kept = samples(items)
    assert [s.id for s in kept] == ["refcoco/unc/3/0"]
    assert kept[0].regions[0].boxes == [[600.0, 400.0, 640.0, 424.0]]
    assert [i.what for i in items if isinstance(i, Note)] == ["clipped-box"]


def test_whole_file_problems_raise_input_file_error(tmp_path, excerpt):
    folder = write_native(tmp_path / "refcoco", [ref0_on_ann_3007(excerpt)], instances_of(excerpt), "google")
    (folder / "refs(umd).p").write_bytes(b"")
    with pytest.raises(InputFileError) as info:
        RefCocoReader().plan(str(folder))
    assert info.value.path == str(folder / "refs(unc).p")
    assert "this folder has refs(google).p, refs(umd).p" in str(info.value) and "--split-by" in str(info.value)
    assert len(RefCocoReader(RefCocoReader.Options(split_by="google")).plan(str(folder))) == 1
    with pytest.raises(InputFileError, match="is empty"):
        RefCocoReader(RefCocoReader.Options(split_by="umd")).plan(str(folder))

    with pytest.raises(InputFileError, match="does not exist"):
        RefCocoReader().plan(str(tmp_path / "nowhere"))
    (folder / "refs(unc).p").write_bytes(pickle.dumps({"not": "a list"}, protocol=2))
    with pytest.raises(InputFileError, match="holds a dict, not a list of refs"):
        RefCocoReader().plan(str(folder))
    (folder / "refs(unc).p").write_bytes(pickle.dumps([os.getpid], protocol=2))
    with pytest.raises(InputFileError, match="refused to load"):
        RefCocoReader().plan(str(folder))

    (folder / "instances.json").write_text('{"images": [')
    with pytest.raises(InputFileError, match="not valid JSON"):
        RefCocoReader(RefCocoReader.Options(split_by="google")).plan(str(folder))
    (folder / "instances.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(InputFileError, match="has no 'categories' list"):
        RefCocoReader(RefCocoReader.Options(split_by="google")).plan(str(folder))
    (folder / "instances.json").unlink()
    with pytest.raises(InputFileError, match="instances.json: not found"):
        RefCocoReader(RefCocoReader.Options(split_by="google")).plan(str(folder))


def test_options_are_validated(tmp_path, excerpt):
    folder = write_native(tmp_path / "refcoco", [ref0_on_ann_3007(excerpt)], instances_of(excerpt))
    reader = RefCocoReader.from_mapping({"split-by": "unc", "text": "raw", "refs-per-partition": "10"})
    assert (reader.options.split_by, reader.options.text, reader.options.refs_per_partition) == (
        "unc",
        "raw",
        10,
    )
    with pytest.raises(UsageError):
        RefCocoReader.from_mapping({"text": "tokens"})
    with pytest.raises(UsageError, match="positive"):
        RefCocoReader(RefCocoReader.Options(refs_per_partition=0)).plan(str(folder))
    with pytest.raises(UsageError, match="not a refs file name part"):
        RefCocoReader(RefCocoReader.Options(split_by="../x")).plan(str(folder))
    with pytest.raises(UsageError, match=r"no split 'testA' \(its splits: train\)"):
        RefCocoReader(RefCocoReader.Options(split="testA")).plan(str(folder))


def test_input_forms_detect_and_input_files(tmp_path, excerpt):
    ref, inst = [ref0_on_ann_3007(excerpt)], instances_of(excerpt)
    for name in ("refcoco", "refcoco+", "refcocog"):
        write_native(tmp_path / "data" / name, ref, inst, split_by="umd")
    for name in ("refcoco", "refcoco+", "refcocog"):
        assert [r.detect(str(tmp_path / "data" / name)) for r in READERS] == [r.dataset == name for r in READERS]
    other = write_native(tmp_path / "my_copy", ref, inst)
    assert [r.detect(str(other)) for r in READERS] == [True, False, False]
    assert not any(r.detect(str(tmp_path / "data")) for r in READERS)
    (other / "instances.json").unlink()
    assert not any(r.detect(str(other)) for r in READERS)

    # the refer data/ root, the dataset folder and a refs file all work
    reader = RefCocogReader()
    root = samples(read_all(reader, tmp_path / "data"))
    assert [s.id for s in root] == ["refcocog/umd/0/0", "refcocog/umd/0/1", "refcocog/umd/0/2"]
    folder = tmp_path / "data" / "refcocog"
    assert [s.id for s in samples(read_all(RefCocoReader(), folder / "refs(umd).p"))][0] == "refcoco/umd/0/0"
    assert reader.input_files(str(folder)) == [folder / "refs(umd).p", folder / "instances.json"]
    assert reader.input_files(str(tmp_path / "nowhere")) == []
    with pytest.raises(UsageError, match="split_by 'umd'"):
        RefCocoReader(RefCocoReader.Options(split_by="unc")).plan(str(folder / "refs(umd).p"))


def test_loads_are_cached_until_the_file_changes(tmp_path, excerpt):
    folder = write_native(tmp_path / "refcoco", [ref0_on_ann_3007(excerpt)], instances_of(excerpt))
    refs = folder / "refs(unc).p"
    first = mod.load_refs(refs)
    assert mod.load_refs(refs) is first
    assert mod.load_instances(folder / "instances.json") is mod.load_instances(folder / "instances.json")
    refs.write_bytes(synth.py2_pickle_bytes([ref0_on_ann_3007(excerpt)] * 2))
    os.utime(refs, ns=(1, 1))
    assert len(mod.load_refs(refs)) == 2


# --- synthetic native files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "split_by", "splits"),
    [
        ("refcoco", "unc", {"train", "val", "testA", "testB"}),
        ("refcocog", "umd", {"train", "val", "test"}),
    ],
)
def test_synth_at_scale_reader_counts_equal_generator_counts(tmp_path, dataset, split_by, splits):
    counts = synth.generate(tmp_path, images=3000, seed=7, dataset=dataset, write_images=False)
    assert counts["samples"] >= 10_000
    reader = {"refcoco": RefCocoReader, "refcocog": RefCocogReader}[dataset]()
    parts = reader.plan(str(tmp_path / dataset))
    assert len(parts) == -(-counts["refs"] // 5000)
    items = read_all(reader, tmp_path / dataset)
    got = samples(items)
    assert len(got) == len(items) == counts["samples"] == counts["regions"] == counts["boxes"]
    assert {k: v for k, v in counts.items() if k.startswith("samples_")} == {
        f"samples_{k}": v for k, v in Counter(s.split for s in got).items()
    }
    assert set(Counter(s.split for s in got)) == splits
    assert len({s.image.file for s in got}) == counts["images"]
    assert len({s.meta["ref_id"] for s in got}) == counts["refs"]
    assert len({s.id for s in got}) == len(got)
    assert all(s.id.startswith(f"{dataset}/{split_by}/") for s in got)

    raw = samples(read_all(type(reader)(reader.Options(text="raw")), tmp_path / dataset))
    assert sum(not s.text.isascii() for s in raw) == counts["non_ascii_raw"] > 0
    assert all(s.text.isascii() for s in got)


def test_synth_files_are_native_py2_pickles_with_images(tmp_path):
    counts = synth.generate(tmp_path, images=12, seed=3, dataset="refcoco+")
    refs_file = tmp_path / "refcoco+" / "refs(unc).p"
    data = refs_file.read_bytes()
    ops = Counter(op.name for op, _, _ in pickletools.genops(data))
    assert data[:2] == b"\x80\x02" and ops["SHORT_BINSTRING"] > 0
    assert not {"BINUNICODE", "GLOBAL", "STACK_GLOBAL", "REDUCE"} & set(ops)
    refs = mod.load_refs(refs_file)
    assert len(refs) == counts["refs"]
    assert set(refs[0]) == {
        "sent_ids",
        "file_name",
        "ann_id",
        "ref_id",
        "image_id",
        "split",
        "sentences",
        "category_id",
    }
    assert set(refs[0]["sentences"][0]) == {"tokens", "raw", "sent_id", "sent"}
    instances = json.loads((tmp_path / "refcoco+" / "instances.json").read_text())
    assert list(instances) == ["info", "images", "licenses", "annotations", "categories"]
    assert len(instances["categories"]) == 80 and len(instances["images"]) == 12

    got = samples(read_all(RefCocoPlusReader(), tmp_path / "refcoco+"))
    assert len(got) == counts["samples"]
    by_image = {i["id"]: i for i in instances["images"]}
    for ref in refs:
        assert ref["file_name"].rsplit("_", 1)[0] + ".jpg" == by_image[ref["image_id"]]["file_name"]
    image_root = tmp_path / "images" / "mscoco" / "images" / "train2014"
    for sample in got:
        with Image.open(image_root / sample.image.file) as im:
            assert im.format == "JPEG" and im.size == (sample.image.width, sample.image.height)


def test_partitions_and_split_filter(tmp_path):
    counts = synth.generate(tmp_path, images=40, seed=5, write_images=False)
    folder = tmp_path / "refcoco"
    whole = read_all(RefCocoReader(), folder)
    reader = RefCocoReader(RefCocoReader.Options(refs_per_partition=7))
    parts = reader.plan(str(folder))
    assert len(parts) == -(-counts["refs"] // 7)
    assert len({p.key for p in parts}) == len(parts) and parts[0].key == "refs-unc-00000"
    assert pickle.loads(pickle.dumps(parts)) == parts
    assert [s.id for s in samples(whole)] == [s.id for s in read_all(reader, folder)]
    assert [s.to_record() for s in samples(whole)] == [s.to_record() for s in read_all(reader, folder)]

    items = read_all(RefCocoReader(RefCocoReader.Options(split="val")), folder)
    assert kinds(items) == {
        "Sample": counts["samples_val"],
        "Filtered": counts["samples"] - counts["samples_val"],
    }
    assert all(i.reason == "split" for i in items if isinstance(i, Filtered))
    assert {s.split for s in samples(items)} == {"val"}


def test_synth_rejects_unknown_options(tmp_path):
    with pytest.raises(UsageError):
        synth.generate(tmp_path, images=1, seed=0, colour="blue")
    with pytest.raises(UsageError):
        synth.generate(tmp_path, images=1, seed=0, dataset="refclef")
