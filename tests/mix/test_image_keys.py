"""image.keys: the canonical field, its Arrow round trip, and every reader that can fill it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from grounding_convert.readers.flickr30k_entities import Flickr30kEntitiesReader
from grounding_convert.readers.refcoco import RefCocoReader
from grounding_convert.readers.visual7w import Visual7wReader
from grounding_convert.readers.visual_genome import VisualGenomeReader
from grounding_convert.schema import SAMPLE_SCHEMA, ImageRef, Sample, image_keys
from grounding_convert.synth import generate


def samples_of(reader, path: str) -> list[Sample]:
    return [item for p in reader.plan(path) for item in reader.read(p) if isinstance(item, Sample)]


def test_image_keys_helper_keeps_only_what_the_data_says() -> None:
    assert image_keys(coco=581857, flickr="1000092795", vg=None) == {"coco": 581857, "flickr": 1000092795}
    assert image_keys(coco=True, flickr="abc", vg=-3) == {}
    with pytest.raises(ValueError, match="unknown image key namespace 'o365'"):
        image_keys(o365=1)


def test_keys_round_trip_through_arrow_and_old_rows_read_without_keys() -> None:
    sample = Sample("x/1", "visual_genome", None, ImageRef("a.jpg", "1", 4, 3, keys={"vg": 1, "coco": 9}), "t")
    record = sample.to_record()
    assert record["image"]["keys"] == {"coco": 9, "flickr": None, "vg": 1}
    table = pa.Table.from_pylist([record], schema=SAMPLE_SCHEMA)
    back = Sample.from_record(table.to_pylist()[0])
    assert back == sample
    old = dict(record, image={k: v for k, v in record["image"].items() if k != "keys"})
    assert Sample.from_record(old).image.keys == {}


def test_visual_genome_keys_from_image_data(tmp_path: Path) -> None:
    generate("visual-genome", tmp_path, images=4, seed=1, write_images=False, coco_ids="1:581857", flickr_ids="2:77")
    by_image = {s.image.id: s.image.keys for s in samples_of(VisualGenomeReader(), str(tmp_path))}
    assert by_image["1"] == {"vg": 1, "coco": 581857}
    assert by_image["2"] == {"vg": 2, "flickr": 77}
    assert by_image["4"] == {"vg": 4}


def test_refcoco_keys_are_the_coco_ids_of_the_file_names(tmp_path: Path) -> None:
    generate("refcoco", tmp_path, images=6, seed=2, write_images=False)
    found = samples_of(RefCocoReader(), str(tmp_path / "refcoco"))
    assert found
    for s in found:
        assert s.image.file == f"COCO_train2014_{s.image.keys['coco']:012d}.jpg"
        assert set(s.image.keys) == {"coco"}


def test_flickr_keys_are_the_file_stems(tmp_path: Path) -> None:
    generate("flickr30k-entities", tmp_path, images=3, seed=3, write_images=False)
    found = samples_of(Flickr30kEntitiesReader(), str(tmp_path))
    assert found
    assert all(s.image.keys == {"flickr": int(Path(s.image.file).stem)} for s in found)


def test_visual7w_keys_are_vg_ids_plus_image_data_ids(tmp_path: Path) -> None:
    generate("visual7w", tmp_path, images=3, seed=4, write_images=False)
    data = orjson.loads((tmp_path / "image_data.json").read_bytes())
    data[0]["coco_id"], data[0]["flickr_id"] = 42, 43
    (tmp_path / "image_data.json").write_bytes(orjson.dumps(data))
    reader = Visual7wReader.from_mapping({"vg_image_data": str(tmp_path / "image_data.json")})
    found = samples_of(reader, str(tmp_path))
    first = data[0]["image_id"]
    assert {s.image.id for s in found} == {str(d["image_id"]) for d in data}
    for s in found:
        expected = {"vg": first, "coco": 42, "flickr": 43} if s.image.id == str(first) else {"vg": int(s.image.id)}
        assert s.image.keys == expected
