"""Flickr30K Entities reader on the real 200-image excerpt, plus bad-input handling."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding_convert.errors import Filtered, InputFileError, Note, Reject
from grounding_convert.readers import flickr30k_entities_files as files
from grounding_convert.readers.base import SampleBlock
from grounding_convert.readers.flickr30k_entities import Flickr30kEntitiesReader
from grounding_convert.readers.flickr30k_entities_files import parse_annotation, parse_caption
from grounding_convert.schema import Sample

from . import block_checks

# --- helpers -----------------------------------------------------------------------------------------


def read_all(path: Path, **options) -> list:
    reader = Flickr30kEntitiesReader(Flickr30kEntitiesReader.Options(**options))
    return [item for part in reader.plan(str(path)) for item in reader.read(part)]


def samples_of(items: list) -> list[Sample]:
    return [x for x in items if isinstance(x, Sample)]


def official_sentences(path: Path) -> list[dict]:
    """Independent re-parse in the style of the official get_sentence_data (word indices, not offsets)."""
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        words, phrases, current, in_phrase = [], [], None, False
        for token in line.split():
            if in_phrase:
                if token.endswith("]"):
                    in_phrase = False
                    token = token[:-1]
                    current["words"].append(token)
                    phrases.append(current)
                else:
                    current["words"].append(token)
                words.append(token)
            elif token.startswith("["):
                in_phrase = True
                parts = token.split("/")
                current = {"first": len(words), "id": parts[1][3:], "types": parts[2:], "words": []}
            else:
                words.append(token)
        out.append({"words": words, "phrases": phrases})
    return out


def xml_boxes(path: Path) -> tuple[dict[str, list[list[float]]], int, int]:
    root = ET.parse(path).getroot()
    boxes: dict[str, list[list[float]]] = {}
    for obj in root.findall("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            continue
        v = [int(bnd.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        for name in obj.findall("name"):
            boxes.setdefault(name.text, []).append([v[0] - 1.0, v[1] - 1.0, float(v[2]), float(v[3])])
    return boxes, int(root.findtext("size/width")), int(root.findtext("size/height"))


HEAD = (
    "<annotation>\n\t<filename>{id}.jpg</filename>\n\t<size>\n"
    "\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
)


def box_obj(names: list[str], xmin, ymin, xmax, ymax) -> str:
    named = "".join(f"\t\t<name>{n}</name>\n" for n in names)
    return (
        f"\t<object>\n{named}\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
        f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n"
    )


def flag_obj(names: list[str], scene: int, nobox: int) -> str:
    named = "".join(f"\t\t<name>{n}</name>\n" for n in names)
    return f"\t<object>\n{named}\t\t<scene>{scene}</scene>\n\t\t<nobndbox>{nobox}</nobndbox>\n\t</object>\n"


def make_dataset(root: Path, images: dict[str, tuple[bytes | str, str | bytes | None]], splits=None) -> Path:
    """Write Sentences/Annotations for {id: (sentences, xml or None)} and optional split lists."""
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for image_id, (sentences, xml) in images.items():
        data = sentences.encode() if isinstance(sentences, str) else sentences
        (root / "Sentences" / f"{image_id}.txt").write_bytes(data)
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_bytes(xml.encode() if isinstance(xml, str) else xml)
    for split, ids in (splits or {}).items():
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


GOOD_XML = HEAD.format(id=7, w=100, h=80) + box_obj(["1"], 1, 1, 50, 40) + flag_obj(["2"], 1, 0) + "</annotation>"


# --- the real excerpt --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def excerpt_items(flickr_excerpt: Path) -> list:
    return read_all(flickr_excerpt)


def test_excerpt_counts(excerpt_items):
    samples = samples_of(excerpt_items)
    # No rejects or filtered on real data; one note: test.txt lists 1,000 ids, the excerpt ships 200 of them.
    others = [item for item in excerpt_items if not isinstance(item, Sample)]
    assert len(samples) == 1000
    assert others == [Note("split-ids-without-files", 800)]
    assert sum(len(s.regions) for s in samples) == 3574
    assert sum(1 for s in samples for r in s.regions if r.category == "notvisual") == 189
    assert {s.split for s in samples} == {"test"}
    assert len({s.id for s in samples}) == 1000
    assert len({s.image.id for s in samples}) == 200


def test_excerpt_spans_match_phrases(excerpt_items):
    for s in samples_of(excerpt_items):
        assert s.text == " ".join(s.text.split())
        for r in s.regions:
            assert s.text[r.span[0] : r.span[1]] == r.phrase
        starts = [r.span[0] for r in s.regions]
        assert starts == sorted(starts)


def test_excerpt_matches_independent_reparse(excerpt_items, flickr_excerpt: Path):
    by_image: dict[str, list[Sample]] = {}
    for s in samples_of(excerpt_items):
        by_image.setdefault(s.image.id, []).append(s)
    test_order = (flickr_excerpt / "test.txt").read_text().split()[:200]
    assert list(by_image) == test_order  # split-file order
    for image_id, samples in by_image.items():
        captions = official_sentences(flickr_excerpt / "Sentences" / f"{image_id}.txt")
        boxes, width, height = xml_boxes(flickr_excerpt / "Annotations" / f"{image_id}.xml")
        assert [s.id for s in samples] == [f"flickr30k_entities/{image_id}/{i}" for i in range(len(captions))]
        for s, cap in zip(samples, captions, strict=True):
            assert (s.image.file, s.image.width, s.image.height) == (f"{image_id}.jpg", width, height)
            assert s.text == " ".join(cap["words"])
            assert s.meta["chain_ids"] == " ".join(p["id"] for p in cap["phrases"])
            assert len(s.regions) == len(cap["phrases"])
            for r, p in zip(s.regions, cap["phrases"], strict=True):
                start = sum(len(w) + 1 for w in cap["words"][: p["first"]])
                assert r.span == (start, start + len(" ".join(p["words"])))
                assert r.category == "/".join(p["types"])
                assert r.boxes == ([] if p["id"] == "0" else boxes.get(p["id"], []))


def test_excerpt_spot_checks(excerpt_items):
    by_id = {s.id: s for s in samples_of(excerpt_items)}
    s0 = by_id["flickr30k_entities/101262930/0"]
    assert s0.text.startswith("Two asian or spanish people , a woman and a man , sitting together")
    regions = {r.phrase: r for r in s0.regions}
    # multi-name objects: <name>404</name><name>406</name> and <name>404</name><name>405</name>
    assert regions["Two asian or spanish people"].boxes == [[99, 115, 477, 438], [101, 128, 247, 440]]
    assert regions["Two asian or spanish people"].span == (0, 27)
    assert regions["a woman"].boxes == [[101, 128, 247, 440]]
    assert regions["a man"].boxes == [[99, 115, 477, 438]]
    assert regions["cars"].boxes == [[1, 85, 158, 186], [67, 89, 392, 210], [439, 71, 500, 163]]
    s1 = by_id["flickr30k_entities/101262930/1"]
    arm = next(r for r in s1.regions if r.phrase == "his arm")
    assert (arm.category, arm.boxes) == ("bodyparts/people", [[107, 195, 237, 256]])
    s3 = by_id["flickr30k_entities/101262930/3"]
    assert s3.regions[-1].phrase == "some traffic" and s3.regions[-1].boxes == []  # scene=1 flag object
    assert s3.meta == {"chain_ids": "406 405 413", "scene_chains": "413", "nobox_chains": ""}
    row = by_id["flickr30k_entities/1016887272/0"]
    assert [r.phrase for r in row.regions if not r.boxes] == ["a row"]
    assert row.meta["nobox_chains"] == "554"
    assert row.regions[-1].boxes == [[118, 80, 188, 488]]
    s = by_id["flickr30k_entities/1303727066/0"]
    it = s.regions[-1]
    assert (it.phrase, it.category, it.boxes, it.span) == (
        "it",
        "notvisual",
        [],
        (len(s.text) - 4, len(s.text) - 2),
    )
    # the last caption of 1016887272 has no final period and ends inside a phrase-free word
    assert by_id["flickr30k_entities/1016887272/3"].text.endswith("while one man belays")


def test_plan_partitions_in_split_order(flickr_excerpt: Path):
    reader = Flickr30kEntitiesReader(Flickr30kEntitiesReader.Options(images_per_partition=64))
    parts = reader.plan(str(flickr_excerpt))
    assert [p.key for p in parts] == ["test-00000", "test-00001", "test-00002", "test-00003"]
    assert [len(p.params["ids"]) for p in parts] == [64, 64, 64, 8]
    assert [p.index for p in parts] == [0, 1, 2, 3]
    assert [i for p in parts for i in p.params["ids"]] == (flickr_excerpt / "test.txt").read_text().split()[:200]
    assert reader.plan(str(flickr_excerpt)) == parts
    assert len(Flickr30kEntitiesReader().plan(str(flickr_excerpt))) == 1
    assert Flickr30kEntitiesReader(Flickr30kEntitiesReader.Options(split="train")).plan(str(flickr_excerpt)) == []
    assert len(samples_of(read_all(flickr_excerpt, split="test", images_per_partition=50))) == 1000


def test_detect_and_input_files(flickr_excerpt: Path, tmp_path: Path):
    assert Flickr30kEntitiesReader.detect(str(flickr_excerpt))
    assert not Flickr30kEntitiesReader.detect(str(tmp_path))
    files = Flickr30kEntitiesReader().input_files(str(flickr_excerpt))
    assert len(files) == 3 + 200 + 200
    # path strings, as Path would spell them (the manifest's listing and --resume's check depend on it)
    assert [str(Path(f)) for f in files] == files
    assert files[:3] == [str(flickr_excerpt / f"{s}.txt") for s in ("train", "val", "test")]
    assert files[3] == str(flickr_excerpt / "Sentences" / "101262930.txt")
    assert all(Path(f).is_file() for f in files)


def test_without_split_files_ids_are_sorted_and_unsplit(flickr_excerpt: Path, tmp_path: Path):
    ids = ["16396205", "1016887272", "101262930"]
    for sub, ext in (("Sentences", "txt"), ("Annotations", "xml")):
        (tmp_path / sub).mkdir()
        for i in ids:
            shutil.copy(flickr_excerpt / sub / f"{i}.{ext}", tmp_path / sub / f"{i}.{ext}")
    parts = Flickr30kEntitiesReader().plan(str(tmp_path))
    assert [(p.key, p.params["ids"], p.params["split"]) for p in parts] == [
        ("unlisted-00000", ["16396205", "101262930", "1016887272"], None)
    ]
    samples = samples_of(read_all(tmp_path))
    assert len(samples) == 15 and {s.split for s in samples} == {None}
    with pytest.raises(InputFileError, match="train.txt"):
        Flickr30kEntitiesReader(Flickr30kEntitiesReader.Options(split="train")).plan(str(tmp_path))


# --- bad input ---------------------------------------------------------------------------------------


def test_missing_folders_raise_input_file_error(tmp_path: Path):
    with pytest.raises(InputFileError, match="does not exist"):
        Flickr30kEntitiesReader().plan(str(tmp_path / "nope"))
    with pytest.raises(InputFileError, match="Sentences"):
        Flickr30kEntitiesReader().plan(str(tmp_path))
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputFileError, match="not a folder"):
        Flickr30kEntitiesReader().plan(str(tmp_path / "f"))


def test_bad_split_file_raises(tmp_path: Path):
    root = make_dataset(tmp_path, {"7": ("[/EN#1/people A man] .\n", GOOD_XML)})
    (root / "val.txt").write_bytes(b"7\n\xff\xfe\n")
    with pytest.raises(InputFileError, match="val.txt"):
        Flickr30kEntitiesReader().plan(str(root))


def test_missing_and_broken_xml_reject_every_caption(tmp_path: Path):
    caps = "[/EN#1/people A man] .\n[/EN#1/people The man] sits .\n"
    root = make_dataset(tmp_path, {"7": (caps, None), "8": (caps, "<annotation><size>"), "9": (caps, GOOD_XML)})
    items = read_all(root)
    rejects = [x for x in items if isinstance(x, Reject)]
    assert [(r.reason, r.position) for r in rejects] == [
        ("unknown-reference", "caption 0 (line 1)"),
        ("unknown-reference", "caption 1 (line 2)"),
        ("bad-record", "caption 0 (line 1)"),
        ("bad-record", "caption 1 (line 2)"),
    ]
    assert "Annotations/7.xml" in rejects[0].message and "Sentences/7.txt caption 0" in rejects[0].message
    assert "not well-formed XML" in rejects[2].message and rejects[2].source.endswith("Sentences/8.txt")
    assert [s.id for s in samples_of(items)] == ["flickr30k_entities/9/0", "flickr30k_entities/9/1"]


def odd_records(tmp_path: Path) -> Path:
    """One image whose captions hit every per-caption problem, between plain, clipped and non-visual ones."""
    xml = (
        HEAD.format(id=7, w=100, h=80)
        + box_obj(["1", "3"], 1, 1, 50, 40)
        + box_obj(["1"], 90, 70, 120, 90)  # partly outside: clipped to [89, 69, 100, 80]
        + box_obj(["4"], 101, 81, 130, 95)  # wholly outside
        + box_obj(["5"], 30, 30, 10, 40)  # inverted
        + box_obj(["6"], "a", 1, 2, 3)  # not a number
        + flag_obj(["2"], 1, 0)
        + "</annotation>"
    )
    lines = [
        b"[/EN#1/people A man] in [/EN#2/scene a park] .",
        b"",
        b"[/EN#9/people A ghost] .",
        b"A caf\xe9 sign .",
        b"[/EN#4/other a far thing] .",
        b"[/EN#5/other an inverted thing] .",
        b"[/EN#6/other a nan thing] .",
        b"[/EN#1/people A man [/EN#3/people nested] .",
        b"[/EN#3/people the other] near [/EN#0/notvisual it] .",
    ]
    return make_dataset(tmp_path, {"7": (b"\n".join(lines) + b"\n", xml)}, splits={"val": ["7"]})


def test_record_problems_reject_only_their_caption(tmp_path: Path):
    root = odd_records(tmp_path)
    items = read_all(root)
    kinds = [
        (type(x).__name__, x.reason if isinstance(x, Reject) else getattr(x, "id", getattr(x, "what", None)))
        for x in items
    ]
    assert kinds == [
        ("Sample", "flickr30k_entities/7/0"),
        ("Note", "clipped-box"),
        ("Reject", "unknown-reference"),
        ("Reject", "bad-text"),
        ("Reject", "empty-box"),
        ("Reject", "empty-box"),
        ("Reject", "bad-box"),
        ("Reject", "bad-record"),
        ("Sample", "flickr30k_entities/7/7"),
    ]
    first = items[0]
    assert first.split == "val"
    assert first.regions[0].boxes == [[0, 0, 50, 40], [89, 69, 100, 80]]
    assert first.regions[1].boxes == [] and first.meta["scene_chains"] == "2"
    assert items[1].count == 1 and items[1].extra["sample_id"] == "flickr30k_entities/7/0"
    rejects = [x for x in items if isinstance(x, Reject)]
    assert [r.position for r in rejects] == [f"caption {i} (line {i + 1 + (i > 0)})" for i in range(1, 7)]
    assert "chain 9" in rejects[0].message and "Sentences/7.txt caption 1 (line 3)" in rejects[0].message
    assert "UTF-8" in rejects[1].message
    assert "outside the 100x80 image" in rejects[2].message and "Annotations/7.xml object 2" in rejects[2].message
    assert "has no area" in rejects[3].message
    assert "'a' is not a number" in rejects[4].message
    assert "not closed" in rejects[5].message
    last = items[-1]
    assert [(r.phrase, r.boxes) for r in last.regions] == [("the other", [[0, 0, 50, 40]]), ("it", [])]


def test_bad_size_rejects(tmp_path: Path):
    xml = HEAD.format(id=7, w=0, h=80) + box_obj(["1"], 1, 1, 5, 5) + "</annotation>"
    items = read_all(make_dataset(tmp_path, {"7": ("[/EN#1/people A man] .\n", xml)}))
    assert [(x.reason, "width '0'" in x.message) for x in items] == [("bad-size", True)]


def test_doctype_is_refused(tmp_path: Path):
    xml = '<!DOCTYPE a [<!ENTITY x "y">]>' + GOOD_XML
    items = read_all(make_dataset(tmp_path, {"7": ("[/EN#1/people A man] .\n", xml)}))
    assert [x.reason for x in items] == ["bad-record"]


def test_utf8_captions_and_bom(tmp_path: Path):
    caps = "\ufeff[/EN#1/people The man’s “dog”] runs .\n".encode()
    items = read_all(make_dataset(tmp_path, {"7": (caps, GOOD_XML)}))
    (s,) = items
    assert s.text == "The man’s “dog” runs ." and s.regions[0].span == (0, 15)


def test_parse_caption_word_boundaries():
    text, mentions = parse_caption("  [/EN#3/people/scene A  man]   at\t[/EN#0/notvisual it]\r")
    assert text == "A man at it"
    assert [(m.phrase, m.start, m.end, m.chain, m.types) for m in mentions] == [
        ("A man", 0, 5, "3", ["people", "scene"]),
        ("it", 9, 11, "0", ["notvisual"]),
    ]


WORD = st.text(alphabet=st.characters(blacklist_characters="[]", blacklist_categories=("Z", "C")), min_size=1)


@given(st.lists(st.tuples(st.lists(WORD, max_size=3), st.one_of(st.none(), st.lists(WORD, min_size=1, max_size=4)))))
def test_parse_caption_spans_property(parts):
    line, expected = [], []
    for plain, phrase in parts:
        line += plain
        if phrase is not None:
            line.append(f"[/EN#12/other {' '.join(phrase)}]")
            expected.append(" ".join(phrase))
    text, mentions = parse_caption(" ".join(line))
    assert [m.phrase for m in mentions] == expected
    assert all(text[m.start : m.end] == m.phrase for m in mentions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=st.binary(max_size=200), xml=st.one_of(st.binary(max_size=200), st.just(GOOD_XML.encode())))
def test_garbage_never_raises_and_every_caption_is_accounted(tmp_path_factory, sentences, xml):
    root = make_dataset(tmp_path_factory.mktemp("g"), {"7": (sentences, xml)})
    items = read_all(root)
    captions = [line for line in sentences.removeprefix(b"\xef\xbb\xbf").split(b"\n") if line.strip()]
    outcomes = [x for x in items if isinstance(x, Sample | Reject | Filtered)]
    assert len(outcomes) == len(captions)
    assert all(isinstance(x, Sample | Reject | Note) for x in items)


# --- blocks (read_blocks) ------------------------------------------------------------------------------


def flickr_blocks(path: Path) -> tuple[list, list, int]:
    return block_checks.blocks_and_rows(Flickr30kEntitiesReader(), path)


def test_blocks_give_what_read_gives_on_the_real_excerpt(flickr_excerpt: Path):
    rows, expanded, blocks = flickr_blocks(flickr_excerpt)
    block_checks.same_accounting(rows, expanded)
    assert blocks > 0 and len(samples_of(rows)) == 1000


def test_blocks_around_bad_records(tmp_path: Path):
    """Rejects, a clipped box and a non-visual phrase among plain captions: one block, the same samples."""
    rows, expanded, blocks = flickr_blocks(odd_records(tmp_path))
    block_checks.same_accounting(rows, expanded)
    assert block_checks.accounting(rows)["note:clipped-box"] == 1 and blocks == 1  # rejects do not cut a block


def test_block_columns_count_phrases_without_boxes(tmp_path: Path):
    """A non-visual phrase is not in the block's regions but keeps its place in the record numbering and in
    the sample's region count."""
    reader = Flickr30kEntitiesReader()
    (partition,) = reader.plan(str(odd_records(tmp_path)))
    blocks = [b for b in reader.read_blocks(partition) if isinstance(b, SampleBlock)]
    (block,) = blocks
    assert block.ids == ["flickr30k_entities/7/0", "flickr30k_entities/7/7"]
    assert block.phrases == ["A man", "the other"]  # "a park" (scene, no box) and "it" (non-visual) left out
    assert block.region_index.tolist() == [0, 0] and block.region_counts.tolist() == [2, 2]
    assert block.region_boxes.tolist() == [0, 2, 3] and block.boxes.tolist()[1] == [89, 69, 100, 80]
    assert block.notes == {"clipped-box": 1} and block.split == "val"


def test_blocks_on_synthetic_captions(tmp_path: Path):
    from grounding_convert.synth.flickr30k_entities import generate

    generate(tmp_path, images=80, seed=5, write_images=False)
    rows, expanded, blocks = flickr_blocks(tmp_path)
    block_checks.same_accounting(rows, expanded)
    assert blocks >= 2 and len(samples_of(rows)) == 400


# --- the XML walk equals ElementPath's reading ----------------------------------------------------------


def element_path_annotation(data: bytes) -> tuple:
    """The annotation as the ElementPath calls (findtext/findall/find) read it: the reference for the
    hand-written child walk of ``parse_annotation``."""
    root = ET.fromstring(data)
    width, height = root.findtext("size/width"), root.findtext("size/height")
    objects = []
    for obj in root.iter("object"):
        corners = [obj.findtext(f"bndbox/{tag}") for tag in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(
            (
                [(n.text or "").strip() for n in obj.findall("name") if (n.text or "").strip()],
                corners if obj.find("bndbox") is not None else None,
                (obj.findtext("scene") or "").strip() == "1",
                (obj.findtext("nobndbox") or "").strip() == "1",
            )
        )
    return width, height, objects


def expected_annotation(data: bytes) -> dict:
    """What parse_annotation must give, built from the ElementPath reading with the reader's own box rules."""
    width, height, objects = element_path_annotation(data)
    w, h = int(float(width)), int(float(height))
    out: dict = {"names": set(), "boxes": {}, "bad": {}, "scene": set(), "nobox": set()}
    for index, (names, corners, scene, nobox) in enumerate(objects):
        out["names"].update(names)
        if corners is not None:
            frame = ET.Element("bndbox")
            for tag, text in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
                if text is not None:
                    ET.SubElement(frame, tag).text = text
            try:
                result = files._box([frame], index, w, h)
            except files.AnnotationError as exc:
                for name in names:
                    out["bad"].setdefault(name, (exc.reason, exc.message))
            else:
                for name in names:
                    out["boxes"].setdefault(name, []).append(result)
        if scene:
            out["scene"].update(names)
        if nobox:
            out["nobox"].update(names)
    return out


_corner = st.one_of(st.none(), st.sampled_from(["1", "5", " 40 ", "", "x", "120", "3.0"]))
_child = st.one_of(
    st.builds(lambda n: f"<name>{n}</name>", st.sampled_from(["1", "2", " 3 ", "", "0"])),
    st.builds(
        lambda c: (
            "<bndbox>"
            + "".join(
                f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), c, strict=True) if v is not None
            )
            + "</bndbox>"
        ),
        st.tuples(_corner, _corner, _corner, _corner),
    ),
    st.builds(lambda v: f"<scene>{v}</scene>", st.sampled_from(["0", "1", " 1 ", ""])),
    st.builds(lambda v: f"<nobndbox>{v}</nobndbox>", st.sampled_from(["0", "1", ""])),
    st.just("<object><name>9</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"),
    st.just("<other>1</other>"),
)


@settings(max_examples=300, deadline=None)
@given(objects=st.lists(st.lists(_child, max_size=7), max_size=5))
def test_xml_walk_reads_what_element_path_reads(objects):
    """Several names, several or partial <bndbox>es, repeated flags, nested objects, empty texts: the child
    walk gives the annotation the ElementPath reading gives."""
    body = "".join("<object>" + "".join(children) + "</object>" for children in objects)
    data = f"<annotation><size><width>100</width><height>80</height></size>{body}</annotation>".encode()
    ann = parse_annotation(data)
    got = {"names": ann.names, "boxes": ann.boxes, "bad": ann.bad, "scene": ann.scene, "nobox": ann.nobox}
    assert got == expected_annotation(data)


def test_an_annotation_that_is_a_folder_rejects_its_captions(tmp_path: Path):
    """Files are read with plain system calls: a folder where the XML should be is still an unreadable
    annotation (every caption rejected, saying why), and a large XML is read whole."""
    big = HEAD.format(id=8, w=100, h=80) + box_obj(["1"], 1, 1, 50, 40) * 3000 + "</annotation>"
    assert len(big) > 1 << 18  # several reads of 64 KiB
    root = make_dataset(tmp_path, {"7": ("[/EN#1/people A man] .\n", None), "8": ("[/EN#1/people A man] .\n", big)})
    (root / "Annotations" / "7.xml").mkdir()
    items = read_all(root)
    assert [type(x).__name__ for x in items] == ["Reject", "Sample"]
    assert items[0].reason == "unknown-reference" and "cannot be read (Is a directory)" in items[0].message
    assert len(items[1].regions[0].boxes) == 3000
