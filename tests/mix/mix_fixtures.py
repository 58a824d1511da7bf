"""Synth fixtures with known overlaps between training sources and evaluation sets.

RefCOCO (unc) and Flickr30K Entities are generated first; then a Visual Genome fixture whose image_data.json
gives VG images 1-3 the COCO ids of three RefCOCO testA images, and images 4-5 the Flickr ids of two
Flickr30K test images (image 3 of the VG synth has no regions, so it contributes no samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grounding_convert.readers.flickr30k_entities import Flickr30kEntitiesReader
from grounding_convert.readers.refcoco import RefCocoReader
from grounding_convert.readers.visual_genome import VisualGenomeReader
from grounding_convert.schema import Sample
from grounding_convert.synth import generate


@dataclass
class Fixtures:
    root: Path
    testa_coco: list[int]  # COCO ids of RefCOCO testA images planted in VG
    test_flickr: list[int]  # Flickr ids of Flickr30K test images planted in VG
    coco_of_vg: dict[int, int]
    flickr_of_vg: dict[int, int]
    vg_samples: dict[int, int]  # VG image id → samples the reader yields
    all_testa_coco: set[int]
    all_test_flickr: set[int]


def samples_of(reader, path: Path) -> list[Sample]:
    return [item for p in reader.plan(str(path)) for item in reader.read(p) if isinstance(item, Sample)]


def build(root: Path) -> Fixtures:
    generate("refcoco", root / "refcoco_data", images=120, seed=5, write_images=False)
    generate("flickr30k-entities", root / "flickr", images=30, seed=6, write_images=False)
    refcoco = samples_of(RefCocoReader(), root / "refcoco_data" / "refcoco")
    flickr = samples_of(Flickr30kEntitiesReader(), root / "flickr")
    testa = sorted({s.image.keys["coco"] for s in refcoco if s.split == "testA"})
    test = sorted({s.image.keys["flickr"] for s in flickr if s.split == "test"})
    assert len(testa) >= 3 and len(test) >= 2, (testa, test)
    coco_of_vg = {1: testa[0], 2: testa[1], 3: testa[2]}
    flickr_of_vg = {4: test[0], 5: test[1]}
    generate(
        "visual-genome",
        root / "vg",
        images=24,
        seed=7,
        write_images=False,
        regions_per_image=6,
        objects_per_image=1,
        coco_ids=coco_of_vg,
        flickr_ids=flickr_of_vg,
    )
    vg_samples: dict[int, int] = {}
    for s in samples_of(VisualGenomeReader(), root / "vg"):
        vg_samples[int(s.image.id)] = vg_samples.get(int(s.image.id), 0) + 1
    return Fixtures(
        root,
        testa[:3],
        test[:2],
        coco_of_vg,
        flickr_of_vg,
        vg_samples,
        set(testa),
        set(test),
    )


RECIPE = """\
# a small grounding mixture over the synth fixtures
writer: qwen-vl
format: {format}
seed: {seed}
sources:
  - name: vg
    reader: visual-genome
    input: {root}/vg
    tasks: [rec]
    weight: {vg_weight}
  - name: refcoco
    reader: refcoco
    input: {root}/refcoco_data/refcoco
    options: {{split: train}}
    tasks: [rec, reg]
  - name: flickr
    reader: flickr30k-entities
    input: {root}/flickr
    options: {{split: train}}
{exclude}dedup: {dedup}
max_records_per_shard: {shard}
"""

EXCLUDE = """\
exclude:
  - name: refcoco-testA
    reader: refcoco
    input: {root}/refcoco_data/refcoco
    splits: [testA]
  - name: flickr-test
    reader: flickr30k-entities
    input: {root}/flickr
    splits: [test]
"""


def write_recipe(
    path: Path,
    data: Fixtures,
    *,
    exclude: bool = True,
    vg_weight: float = 1.0,
    seed: int = 0,
    dedup: str = "off",
    shard: int = 100_000,
    format: str = "parquet",
) -> Path:
    text = RECIPE.format(
        root=data.root,
        format=format,
        seed=seed,
        vg_weight=vg_weight,
        exclude=EXCLUDE.format(root=data.root) if exclude else "",
        dedup=dedup,
        shard=shard,
    )
    path.write_text(text)
    return path
