"""The ``mdetr`` reader on a hand-checked final_*.json excerpt and the synthetic generator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from grounding_convert.errors import Reject
from grounding_convert.plugins import detect_reader
from grounding_convert.readers.mdetr import MdetrReader
from grounding_convert.schema import Sample
from grounding_convert.synth import generate

FIXTURE = Path(__file__).parent / "fixtures" / "mdetr" / "final_flickr_separateGT_val.json"


def read_all(path: Path) -> list:
    reader = MdetrReader()
    return [item for p in reader.plan(str(path)) for item in reader.read(p)]


def test_hand_checked_excerpt():
    items = read_all(FIXTURE)
    first, second = [i for i in items if isinstance(i, Sample)]
    assert first.id == "mdetr/final_flickr_separateGT_val/0" and first.split == "val"
    assert first.text == "Two men hold the red kite ."
    men, kite = first.regions
    # annotation 3 lists both spans: its box joins both regions
    assert (men.phrase, men.span) == ("Two men", (0, 7))
    assert men.boxes == [[10.0, 20.0, 110.0, 220.0], [150.0, 20.0, 250.0, 220.0], [0.0, 0.0, 10.0, 10.0]]
    assert (kite.phrase, kite.span) == ("the red kite", (13, 25))
    assert kite.boxes == [[300.0, 10.0, 350.0, 50.0], [0.0, 0.0, 10.0, 10.0]]
    assert first.meta == {"dataset_name": "flickr", "original_img_id": 1000092795, "sentence_id": 0}
    assert (second.text, second.regions[0].phrase, second.regions[0].span) == ("Kite .", "Kite", (0, 4))
    assert Counter(i.reason for i in items if isinstance(i, Reject)) == {"bad-span": 1}  # annotation 4: [20, 99]
    assert detect_reader(str(FIXTURE)) == "mdetr"


def test_synthetic_counts(tmp_path):
    counts = generate("mdetr", tmp_path, images=9, seed=1, write_images=False)
    items = read_all(tmp_path / "final_flickr_separateGT_train.json")
    found = [i for i in items if isinstance(i, Sample)]
    assert len(found) == counts["samples"] and sum(len(s.regions) for s in found) == counts["regions"]
    assert not [i for i in items if isinstance(i, Reject)]
    for sample in found:
        for region in sample.regions:
            assert sample.text[region.span[0] : region.span[1]] == region.phrase
