"""Our output read the way each model's own training code reads it (CONFORMANCE.md quotes the lines).

No upstream package can be installed for OFA or Qwen-VL's tokenizer, so their reading code is re-stated
here from the quoted lines and applied to real output: OFA's TSV rows (file_dataset.py + refcoco_dataset.py
+ caption_dataset.py) and Qwen-VL's ``_fetch_all_box_with_ref`` (tokenization_qwen.py).  KOSMOS-2 is checked
against transformers itself in tests/writers/test_kosmos2.py; ``json.load`` of every ``--format json`` shard
in tests/output/test_containers.py.
"""

from __future__ import annotations

import base64
import re
from io import BytesIO
from pathlib import Path

import orjson
import pytest
from PIL import Image

from grounding_convert.cli.demo import sample_data_dir
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.synth import generate
from grounding_convert.tools.validate import index_source
from grounding_convert.writers.base import ordered_spans

# --- OFA ---------------------------------------------------------------------------------------------------


def ofa_file_dataset_rows(path: Path, selected_cols: str) -> list[list[str]]:
    """OFA-Sys/OFA data/file_dataset.py: ``open(file_path, "r")``, then per row L104/L106
    ``column_l = self._reader.readline().rstrip("\\n").split(self.separator)`` (separator ``"\\t"``) and
    ``[dtype(column_l[col_id]) for col_id ...]`` over ``--selected-cols``."""
    cols = [int(c) for c in selected_cols.split(",")]
    rows = []
    with open(path) as reader:
        for line in reader:
            column_l = line.rstrip("\n").split("\t")
            rows.append([str(column_l[col_id]) for col_id in cols])
    return rows


def ofa_refcoco_item(row: list[str]) -> tuple[Image.Image, list[float]]:
    """data/mm_data/refcoco_dataset.py L127-133 (selected_cols=0,4,2,3, train_refcoco.sh L17)."""
    uniq_id, base64_str, text, region_coord = row
    image = Image.open(BytesIO(base64.urlsafe_b64decode(base64_str)))
    assert image.format == "JPEG"
    image = image.convert("RGB")
    x0, y0, x1, y1 = region_coord.strip().split(",")
    return image, [float(x0), float(y0), float(x1), float(y1)]


def ofa_caption_item(row: list[str]) -> tuple[Image.Image, str]:
    """data/mm_data/caption_dataset.py L122-124 (selected_cols=0,4,2, train_caption_stage1.sh L17)."""
    uniq_id, image, caption = row
    return Image.open(BytesIO(base64.urlsafe_b64decode(image))), caption


@pytest.fixture(scope="module")
def ofa_tsv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ofa")
    generate("flickr30k-entities", root / "flickr", images=6, seed=11)
    job = make_job(
        input=str(root / "flickr"),
        output=str(root / "out"),
        writer="ofa",
        reader="flickr30k-entities",
        format="tsv",
        image_root=str(root / "flickr" / "flickr30k-images"),
    )
    convert(job, RunOptions(progress=False))
    return root / "out"


def test_ofa_refcoco_loader_reads_every_rec_and_reg_row(ofa_tsv):
    files = sorted((ofa_tsv / "data").glob("re[cg]-*.tsv"))
    assert {f.name.split("-")[0] for f in files} == {"rec", "reg"}
    checked = 0
    for path in files:
        for row in ofa_file_dataset_rows(path, "0,4,2,3"):
            image, (x0, y0, x1, y1) = ofa_refcoco_item(row)
            w, h = image.size
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert row[2]  # the referring expression (raw; OFA applies pre_caption itself)
            checked += 1
    assert checked > 50


def test_ofa_caption_loader_reads_every_grounded_caption_row(ofa_tsv):
    files = sorted((ofa_tsv / "data").glob("grounded-caption-*.tsv"))
    rows = [row for path in files for row in ofa_file_dataset_rows(path, "0,4,2")]
    assert len(rows) >= 20
    for row in rows:
        image, caption = ofa_caption_item(row)
        assert image.format == "JPEG" and caption.strip() and "<bin_" not in caption


def test_ofa_refcoco_loader_fails_on_the_old_mixed_layout(ofa_tsv, tmp_path):
    """The old single TSV held REC, REG and caption rows together: the caption rows' empty region_coord
    crashes OFA's refcoco loader at ``x0, y0, x1, y1 = region_coord.strip().split(',')``."""
    mixed = tmp_path / "mixed.tsv"
    mixed.write_bytes(b"".join(p.read_bytes() for p in sorted((ofa_tsv / "data").glob("*-train-*.tsv"))))
    with pytest.raises(ValueError, match="not enough values to unpack"):
        for row in ofa_file_dataset_rows(mixed, "0,4,2,3"):
            ofa_refcoco_item(row)


# --- Qwen-VL -----------------------------------------------------------------------------------------------

TAGGED = re.compile(r"<(img|ref|box|quad)>(.*?)</\1>", re.S)


def to_list_format(text: str) -> list[dict[str, str]]:
    """tokenization_qwen.py ``to_list_format``: the text cut at ``<img>``/``<ref>``/``<box>``/``<quad>`` closed
    tags (``_replace_closed_tag``), each tag one element ``{tag: content}``, the text between as ``{"text": …}``."""
    out, cursor = [], 0
    for match in TAGGED.finditer(text):
        if match.start() > cursor:
            out.append({"text": text[cursor : match.start()]})
        out.append({match.group(1): match.group(2)})
        cursor = match.end()
    if cursor < len(text):
        out.append({"text": text[cursor:]})
    return out


def fetch_all_box_with_ref(text: str) -> list[dict]:
    """tokenization_qwen.py ``_fetch_all_box_with_ref``, as quoted in CONFORMANCE.md."""
    list_format = to_list_format(text)
    output = []
    for i, ele in enumerate(list_format):
        if "box" in ele:
            bbox = tuple(map(int, ele["box"].replace("(", "").replace(")", "").split(",")))
            assert len(bbox) == 4
            output.append({"box": bbox})
            if i > 0 and "ref" in list_format[i - 1]:
                output[-1]["ref"] = list_format[i - 1]["ref"].strip()
    return output


@pytest.fixture(scope="module")
def qwen_captions(tmp_path_factory):
    """Every grounded caption of the bundled sample with its source sample."""
    out = tmp_path_factory.mktemp("qwen") / "out"
    source = sample_data_dir()
    job = make_job(
        input=str(source),
        output=str(out),
        writer="qwen-vl",
        reader="flickr30k-entities",
        tasks=["grounded-caption"],
        format="jsonl",
    )
    convert(job, RunOptions(progress=False))
    samples = index_source(str(source), "flickr30k-entities", {})
    records = [orjson.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.open("rb")]
    assert len(records) == 50
    return [(record, samples[record["sample_id"]]) for record in records]


def test_qwen_grounded_captions_round_trip_through_fetch_all_box_with_ref(qwen_captions):
    """Each phrase's first box carries its ref, ``.strip()``ped equal to the phrase; the draw decoder
    (``int(x1 / 1000 * w)``, draw_bbox_on_latest_picture) lands within one per-mille step of the source."""
    for record, sample in qwen_captions:
        reply = record["conversations"][1]["value"]
        boxes = fetch_all_box_with_ref(reply)
        expected = [
            (region.phrase if i == 0 else None, box)
            for region in ordered_spans(sample)
            for i, box in enumerate(region.boxes)
        ]
        assert [b.get("ref") for b in boxes] == [phrase for phrase, _ in expected], reply
        w, h = sample.image.width, sample.image.height
        for got, (_, source) in zip(boxes, expected, strict=True):
            x1, y1, x2, y2 = got["box"]
            decoded = (int(x1 / 1000 * w), int(y1 / 1000 * h), int(x2 / 1000 * w), int(y2 / 1000 * h))
            assert all(abs(d - s) <= size / 1000 + 1 for d, s, size in zip(decoded, source, (w, h, w, h), strict=True))


def test_qwen_grounded_caption_spacing_is_upstreams(qwen_captions):
    """README.md L752 / TUTORIAL.md L248: the space before a phrase is inside ``<ref>`` (``to<ref> the red
    car</ref>``), also at the start of a reply (``<ref> Woman</ref>``); never ``" <ref>"``."""
    for record, sample in qwen_captions:
        reply, text = record["conversations"][1]["value"], sample.text
        assert " <ref>" not in reply, reply
        refs = [ele["ref"] for ele in to_list_format(reply) if "ref" in ele]
        spans = ordered_spans(sample)
        want = [(" " if s.span[0] == 0 or text[s.span[0] - 1] == " " else "") + s.phrase for s in spans]
        assert refs == want, reply
