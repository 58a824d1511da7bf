"""The Flickr30K Entities synth writes the native layout, and the reader counts exactly what it wrote."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from grounding_convert.errors import UsageError
from grounding_convert.readers.flickr30k_entities import Flickr30kEntitiesReader
from grounding_convert.schema import Sample
from grounding_convert.synth import generate as synth_generate
from grounding_convert.synth.flickr30k_entities import generate

TOKEN = r"(?:[^\[\]\s]+|\[/EN#\d+/[a-z]+(?:/[a-z]+)? [^\[\]]+\])"
LINE = re.compile(rf"^{TOKEN}(?: {TOKEN})*$")


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("flickr_big")
    return root, generate(root, images=2000, seed=11, write_images=False)


def test_reader_counts_equal_generator_counts(big):
    root, counts = big
    assert counts["images"] == 2000 and counts["samples"] == 10000
    reader = Flickr30kEntitiesReader()
    parts = reader.plan(str(root))
    assert all(len(p.params["ids"]) <= 500 for p in parts)
    items = [x for p in parts for x in reader.read(p)]
    samples = [x for x in items if isinstance(x, Sample)]
    assert len(items) == len(samples)  # valid synthetic data: no rejects or notes
    assert len(samples) == counts["samples"]
    assert len({s.image.id for s in samples}) == counts["images"]
    assert sum(len(s.regions) for s in samples) == counts["regions"]
    assert sum(len(r.boxes) for s in samples for r in s.regions) == counts["boxes"]
    assert sum(1 for s in samples for r in s.regions if not r.boxes) == counts["regions_without_boxes"]
    assert sum(1 for s in samples for r in s.regions if r.category == "notvisual") == counts["notvisual_regions"]
    per_split = Counter(s.split for s in samples)
    for split in ("train", "val", "test"):
        assert per_split[split] == counts[f"samples_{split}"] > 0
        assert counts[f"images_{split}"] * 5 == counts[f"samples_{split}"]
    assert counts["multi_name_objects"] > 0 and counts["flag_objects"] > 0
    assert all(isinstance(v, int) for v in counts.values())
    val = Flickr30kEntitiesReader(Flickr30kEntitiesReader.Options(split="val"))
    assert sum(len(p.params["ids"]) for p in val.plan(str(root))) == counts["images_val"]


def test_native_layout(big):
    root, _ = big
    xmls = sorted((root / "Annotations").iterdir())[:200]
    for xml_path in xmls:
        image_id = xml_path.stem
        xml = xml_path.read_text(encoding="utf-8")
        assert xml.startswith(f"<annotation>\n\t<filename>{image_id}.jpg</filename>\n\t<size>\n\t\t<width>")
        assert xml.endswith("\t</object>\n</annotation>") and "<?xml" not in xml
        assert "\t\t<depth>3</depth>\n\t</size>\n" in xml
        for obj in re.findall(r"\t<object>\n(.*?)\t</object>\n", xml, flags=re.S):
            body = re.sub(r"^(\t\t<name>\d+</name>\n)+", "", obj)
            assert re.fullmatch(
                r"\t\t<bndbox>\n(\t\t\t<(xmin|ymin|xmax|ymax)>\d+</\2>\n){4}\t\t</bndbox>\n"
                r"|\t\t<scene>[01]</scene>\n\t\t<nobndbox>[01]</nobndbox>\n",
                body,
            ), obj
            assert "<scene>0</scene>\n\t\t<nobndbox>0" not in body
        text = (root / "Sentences" / f"{image_id}.txt").read_text(encoding="utf-8")
        lines = text.split("\n")
        assert len(lines) == 6 and lines[-1] == "" and all(LINE.match(line) for line in lines[:5]), text
    ids = {p.stem for p in (root / "Sentences").iterdir()}
    listed = [(root / f"{s}.txt").read_text().split() for s in ("train", "val", "test")]
    assert sorted(i for part in listed for i in part) == sorted(ids)
    assert all((root / f"{s}.txt").read_text().endswith("\n") for s in ("train", "val", "test"))
    assert not (root / "flickr30k-images").exists()


def test_small_run_with_images_is_deterministic(tmp_path: Path):
    a = synth_generate("flickr30k-entities", tmp_path / "a", images=6, seed=3)
    b = generate(tmp_path / "b", images=6, seed=3)
    generate(tmp_path / "c", images=6, seed=4)
    assert a == b and tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")
    reader = Flickr30kEntitiesReader()
    samples = [x for p in reader.plan(str(tmp_path / "a")) for x in reader.read(p)]
    assert len(samples) == a["samples"] == 30
    for s in samples:
        with Image.open(tmp_path / "a" / "flickr30k-images" / s.image.file) as im:
            assert im.format == "JPEG" and im.size == (s.image.width, s.image.height)
            assert 48 <= im.width <= 160 and 48 <= im.height <= 160


def test_unknown_option_is_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError, match="colour"):
        generate(tmp_path, images=1, seed=0, colour=True)
