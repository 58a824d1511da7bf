"""One test per bad-input class: what the user sees, the exit code, and what is kept.

Whole-file problems stop the run with exit 2 and one ``error: <file>: ...`` line; record problems go to
``rejects/`` with a reason code while the rest is converted; ``--strict`` and ``--max-rejects`` turn
rejects into exit 1.  ``docs/bad-input.md`` is the table of these same cases, copied from real runs.
"""

from __future__ import annotations

import json
import pickle
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import GroundingConvertError
from grounding_convert.output import shards

# ------------------------------------------------------------------------------------------ damages


def edit_json(rel: str, change: Callable[[Any], None]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        data = json.loads((root / rel).read_text())
        change(data)
        (root / rel).write_text(json.dumps(data))  # NaN/Infinity written as the tokens real files carry

    return damage


def edit_pickle(rel: str, change: Callable[[Any], None]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        from grounding_convert.safe_pickle import load_plain_pickle

        data = load_plain_pickle(root / rel)
        change(data)
        (root / rel).write_bytes(pickle.dumps(data, protocol=2))

    return damage


def write(rel: str, content: bytes) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(content)


def truncate(rel: str, fraction: float = 0.5) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[: int(len(data) * fraction)])

    return damage


def first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def flickr_sentences(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = first(root, "Sentences/*.txt")
        path.write_bytes(change(path.read_bytes()))

    return damage


def break_xml(root: Path) -> None:
    path = first(root, "Annotations/*.xml")
    path.write_bytes(path.read_bytes().replace(b"</annotation>", b"</annot"))


def rename_parquet_column(root: Path) -> None:
    path = first(root, "*.parquet")
    table = pq.read_table(path)
    pq.write_table(table.rename_columns(["text" if n == "caption" else n for n in table.column_names]), path)


def cut_tar_member(root: Path) -> None:
    """End the tar in the middle of its third member's data, as an interrupted download does."""
    path = first(root, "*.tar")
    with tarfile.open(path) as tar:
        member = tar.getmembers()[2]
    data = path.read_bytes()
    path.write_bytes(data[: member.offset_data + member.size // 2])


def corrupt_parquet_page(root: Path) -> None:
    path = first(root, "f30k-*.parquet")
    data = path.read_bytes()
    path.write_bytes(data[:4] + b"\x00" * 8 + data[12:])


def grit_span(root: Path) -> None:
    path = root / "grit_coyo.jsonl"
    lines = path.read_bytes().splitlines()
    record = json.loads(lines[0])
    record["noun_chunks"][0][1] = 999  # end beyond the caption
    lines[0] = json.dumps(record).encode()
    path.write_bytes(b"\n".join(lines) + b"\n")


def vg_region(change: Callable[[dict], None], index: int = 0) -> Callable[[Path], None]:
    return edit_json("region_descriptions.json", lambda d: change(d[0]["regions"][index]))


def vg_bad_regions(count: int) -> Callable[[Path], None]:
    def change(data: list) -> None:
        for region in data[0]["regions"][:count]:
            region["x"] = 10**6

    return edit_json("region_descriptions.json", change)


def refcoco_first_ref_bbox(root: Path) -> None:
    from grounding_convert.safe_pickle import load_plain_pickle

    ann_id = load_plain_pickle(root / "refcoco" / "refs(unc).p")[0]["ann_id"]

    def change(data: dict) -> None:
        for ann in data["annotations"]:
            if ann["id"] == ann_id:
                ann["bbox"] = [float("nan"), 1, 2, 3]

    edit_json("refcoco/instances.json", change)(root)


def v7w_drop_image(root: Path) -> None:
    first(root, "images/*.jpg").unlink()


def first_line(rel: str, content: bytes) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        lines = (root / rel).read_bytes().splitlines()
        (root / rel).write_bytes(b"\n".join([content, *lines[1:]]) + b"\n")

    return damage


def hf_bbox_as_xywh(root: Path) -> None:
    """One jxu124 row whose bbox is the xywh of raw_anns (the convention the card leaves open)."""
    path = first(root, "data/train-*.parquet")
    rows = pq.read_table(path).to_pylist()
    rows[0]["bbox"] = json.loads(rows[0]["raw_anns"])["bbox"]
    pq.write_table(pa.Table.from_pylist(rows), path)


def records_bad_patch(root: Path) -> None:
    path = first(root, "data/*.jsonl")
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["completion"] = record["completion"].replace("<patch_index_", "<patch_index_9", 1)
    record["text"] = record["prompt"] + record["completion"]
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


# -------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Bad:
    """One bad-input class: how to make it, and what the user must see."""

    id: str
    title: str
    fixture: str
    damage: Callable[[Path], None]
    exit: int
    names: str = ""  # for exit 2: this file name appears in the message
    reason: str = ""  # for exit 0: this reason code is among the rejects
    rejected: int = 0  # for exit 0: exactly this many records rejected with ``reason``
    flags: tuple[str, ...] = ()
    message: str = ""  # for exit 1/2: this text appears in the error line


def _remove(root: Path) -> None:
    shutil.rmtree(root)


WHOLE_FILE = [
    Bad("missing-input", "input folder missing", "visual-genome", _remove, 2, names="in"),
    Bad(
        "missing-file",
        "companion file missing (VG image_data.json)",
        "visual-genome",
        lambda r: (r / "image_data.json").unlink(),
        2,
        names="image_data.json",
    ),
    Bad(
        "truncated-json",
        "truncated JSON",
        "visual-genome",
        truncate("region_descriptions.json"),
        2,
        names="region_descriptions.json",
    ),
    Bad(
        "invalid-json", "invalid JSON", "refcoco", write("refcoco/instances.json", b"{oops"), 2, names="instances.json"
    ),
    Bad(
        "not-a-pickle",
        "not a pickle",
        "refcoco",
        write("refcoco/refs(unc).p", b"hello, not a pickle\n"),
        2,
        names="refs(unc).p",
    ),
    Bad(
        "wrong-parquet-schema",
        "wrong Parquet schema (GRIT, caption column renamed)",
        "grit-parquet",
        rename_parquet_column,
        2,
        names=".parquet",
    ),
    Bad(
        "corrupt-parquet",
        "damaged Parquet page (canonical shard)",
        "canonical",
        corrupt_parquet_page,
        2,
        names=".parquet",
    ),
    Bad(
        "unreadable-tar",
        "tar cut inside a member (GRIT img2dataset)",
        "grit-img2dataset",
        cut_tar_member,
        2,
        names="00000.tar",
    ),
    Bad(
        "empty-json",
        "empty file (Visual7W telling JSON)",
        "visual7w",
        write("dataset_v7w_telling.json", b""),
        2,
        names="dataset_v7w_telling.json",
    ),
    Bad(
        "empty-instances",
        "empty file (RefCOCO instances.json)",
        "refcoco",
        write("refcoco/instances.json", b""),
        2,
        names="instances.json",
    ),
    Bad(
        "coco-truncated",
        "truncated COCO instances JSON",
        "coco",
        truncate("annotations/instances_train2017.json"),
        2,
        names="instances_train2017.json",
    ),
    Bad("odvg-label-map", "broken ODVG label map", "odvg", write("label_map.json", b"[1,"), 2, names="label_map.json"),
    Bad(
        "records-manifest",
        "broken manifest of a records input",
        "records",
        write("manifest.json", b"{"),
        2,
        names="manifest.json",
    ),  # fmt: skip
    Bad(
        "hf-not-parquet",
        "not Parquet (refcoco-hf)",
        "refcoco-hf",
        write("data/train-00000-of-00001.parquet", b"PAR1"),
        2,
        names="train-00000-of-00001.parquet",
    ),  # fmt: skip
]

RECORDS = [
    Bad(
        "broken-xml",
        "broken XML (one Flickr30K annotation file)",
        "flickr30k-entities",
        break_xml,
        0,
        reason="bad-record",
        rejected=5,
    ),
    Bad(
        "missing-key",
        "missing key (VG region without phrase)",
        "visual-genome",
        vg_region(lambda r: r.pop("phrase")),
        0,
        reason="missing-key",
        rejected=1,
    ),
    Bad(
        "wrong-type",
        "wrong type (VG region x is a string)",
        "visual-genome",
        vg_region(lambda r: r.update(x="abc")),
        0,
        reason="wrong-type",
        rejected=1,
    ),
    Bad(
        "nan-box",
        "NaN in a box (RefCOCO bbox of the first ref)",
        "refcoco",
        refcoco_first_ref_bbox,
        0,
        reason="bad-box",
        rejected=1,
    ),
    Bad(
        "inf-size",
        "infinite image size (RefCOCO)",
        "refcoco",
        edit_json("refcoco/instances.json", lambda d: d["images"][0].update(width=float("inf"))),
        0,
        reason="bad-size",
        rejected=1,
    ),
    Bad(
        "negative-size",
        "negative image size (VG image_data)",
        "visual-genome",
        edit_json("image_data.json", lambda d: d[0].update(height=-5)),
        0,
        reason="bad-size",
        rejected=4,
    ),
    Bad(
        "box-outside",
        "box outside the image (VG)",
        "visual-genome",
        vg_region(lambda r: r.update(x=10**6)),
        0,
        reason="empty-box",
        rejected=1,
    ),
    Bad(
        "empty-box",
        "zero-area box (VG width 0)",
        "visual-genome",
        vg_region(lambda r: r.update(width=0)),
        0,
        reason="empty-box",
        rejected=1,
    ),
    Bad("bad-span", "span outside the caption (GRIT)", "grit-jsonl", grit_span, 0, reason="bad-span", rejected=1),
    Bad(
        "unknown-chain",
        "unknown chain id (Flickr30K /EN#9999999/)",
        "flickr30k-entities",
        flickr_sentences(lambda b: b.replace(b"[/EN#", b"[/EN#9999999/other x] [/EN#", 1)),
        0,
        reason="unknown-reference",
        rejected=1,
    ),
    Bad(
        "unknown-ann",
        "unknown annotation id (RefCOCO ann_id)",
        "refcoco",
        edit_pickle("refcoco/refs(unc).p", lambda refs: refs[0].update(ann_id=99999999)),
        0,
        reason="unknown-reference",
        rejected=1,
    ),
    Bad(
        "duplicate-id",
        "duplicate record (VG region listed twice)",
        "visual-genome",
        edit_json("region_descriptions.json", lambda d: d[0]["regions"].append(d[0]["regions"][0])),
        0,
        reason="duplicate-id",
        rejected=1,
    ),
    Bad(
        "non-utf8",
        "non-UTF-8 bytes in text (Flickr30K sentence)",
        "flickr30k-entities",
        flickr_sentences(lambda b: b.replace(b" ", b" \xff", 1)),
        0,
        reason="bad-text",
        rejected=1,
    ),
    Bad(
        "missing-image",
        "image missing (Visual7W --image-root lacks one JPEG)",
        "visual7w-images",
        v7w_drop_image,
        0,
        reason="missing-image",
        rejected=9,
    ),
    Bad(
        "coco-empty-box",
        "zero-area COCO annotation",
        "coco",
        edit_json("annotations/instances_train2017.json", lambda d: d["annotations"][0]["bbox"].__setitem__(2, 0)),
        0,
        reason="empty-box",
        rejected=1,
    ),
    Bad(
        "mdetr-span",
        "MDETR tokens_positive beyond the caption",
        "mdetr",
        edit_json(
            "final_flickr_separateGT_train.json", lambda d: d["annotations"][0].update(tokens_positive=[[0, 999]])
        ),
        0,
        reason="bad-span",
        rejected=1,
    ),
    Bad(
        "odvg-line",
        "one ODVG line not JSON",
        "odvg",
        first_line("od.jsonl", b"{oops"),
        0,
        reason="bad-record",
        rejected=1,
    ),
    Bad(
        "hf-bbox-xywh",
        "jxu124 bbox not xyxy of raw_anns",
        "refcoco-hf",
        hf_bbox_as_xywh,
        0,
        reason="bad-box",
        rejected=1,
    ),
    Bad(
        "records-token",
        "records: patch index out of range",
        "records",
        records_bad_patch,
        0,
        reason="bad-box",
        rejected=1,
    ),
]

POLICY = [
    Bad(
        "strict",
        "--strict and one bad record",
        "visual-genome",
        vg_bad_regions(1),
        1,
        flags=("--strict",),
        message="--strict:",
    ),
    Bad(
        "max-rejects-count",
        "--max-rejects 2 and 3 bad records",
        "visual-genome",
        vg_bad_regions(3),
        1,
        flags=("--max-rejects", "2"),
        message="--max-rejects 2 exceeded",
    ),
    Bad(
        "max-rejects-share",
        "--max-rejects 10% and 2 of 8 bad",
        "visual-genome",
        vg_bad_regions(2),
        1,
        flags=("--max-rejects", "10%"),
        message="--max-rejects 10%",
    ),
    Bad(
        "max-rejects-under",
        "--max-rejects 20% and 1 of 8 bad",
        "visual-genome",
        vg_bad_regions(1),
        0,
        flags=("--max-rejects", "20%"),
        reason="empty-box",
        rejected=1,
    ),
]

ALL = WHOLE_FILE + RECORDS + POLICY


def run_case(kit, case: Bad, tmp: Path):
    root = kit.pristine.copy(case.fixture, tmp / "in")
    case.damage(root)
    out = tmp / "out"
    return root, out, kit.cli(*kit.convert_args(case.fixture, root, out, *case.flags))


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


# -------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", WHOLE_FILE, ids=lambda c: c.id)
def test_whole_file_problem_is_one_message_and_exit_2(kit, case, tmp_path):
    root, out, result = run_case(kit, case, tmp_path)
    assert result.exit_code == 2, result.output
    assert kit.TRACEBACK not in result.output and "internal error" not in result.output
    (line,) = error_lines(result.output)
    assert str(tmp_path / "in") in line and case.names in line, line
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("case", RECORDS, ids=lambda c: c.id)
def test_record_problem_is_rejected_and_the_rest_kept(kit, case, tmp_path):
    pristine = kit.read_manifest_of(case.fixture, tmp_path / "pristine")
    root, out, result = run_case(kit, case, tmp_path)
    assert result.exit_code == 0, result.output
    manifest = kit.check_accounting(out)
    counts, before = manifest["counts"], pristine["counts"]
    new_rejects = counts["reject_reasons"].get(case.reason, 0) - before["reject_reasons"].get(case.reason, 0)
    assert new_rejects == case.rejected, counts["reject_reasons"]
    assert counts["written"] >= before["written"] - case.rejected > 0  # everything else still converted
    lines = [r for r in kit.reject_lines(out) if r["reason"] == case.reason]
    assert lines and all(r["source"].startswith(str(root)) for r in lines), lines


@pytest.mark.parametrize("case", POLICY, ids=lambda c: c.id)
def test_strict_and_max_rejects(kit, case, tmp_path):
    _, out, result = run_case(kit, case, tmp_path)
    assert result.exit_code == case.exit, result.output
    assert kit.TRACEBACK not in result.output
    if case.exit == 1:
        (line,) = error_lines(result.output)
        assert case.message in line, line
        assert not (out / "manifest.json").exists()
    else:
        assert kit.check_accounting(out)["counts"]["reject_reasons"] == {case.reason: case.rejected}


def test_debug_shows_the_traceback(kit, tmp_path):
    root = kit.pristine.copy("visual-genome", tmp_path / "in")
    truncate("region_descriptions.json")(root)
    args = kit.convert_args("visual-genome", root, tmp_path / "out")
    plain, debug = kit.cli(*args), kit.cli("--debug", *args)
    assert plain.exit_code == debug.exit_code == 2
    assert kit.TRACEBACK not in plain.output
    assert kit.TRACEBACK in debug.output and "InputFileError" in debug.output
    assert error_lines(debug.output) == error_lines(plain.output)


class _Evil:
    """A pickle whose loading would create a file: the safe loader must refuse before calling anything."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_malicious_pickle_is_refused_and_never_runs(kit, tmp_path):
    root = kit.pristine.copy("refcoco", tmp_path / "in")
    marker = tmp_path / "pwned"
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([_Evil(marker)], protocol=2))
    result = kit.cli(*kit.convert_args("refcoco", root, tmp_path / "out"))
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert "refs(unc).p" in line and "refused" in line, line
    assert not marker.exists()


def test_interrupted_output_never_looks_finished(kit, tmp_path, monkeypatch):
    """A writer dying mid-shard (no cleanup, as under SIGKILL) leaves only hidden temporaries, no manifest."""
    root = kit.pristine.copy("visual-genome", tmp_path / "in")
    out = tmp_path / "out"
    calls = {"n": 0}
    real_close = shards.ShardSink._close_current

    def dying_close(self):
        calls["n"] += 1
        if calls["n"] == 2:  # after one full shard (rotation at 3 records), before the next one's rename
            raise RuntimeError("disk vanished")
        real_close(self)

    # records arrive one by one (per-record path) or in runs (columnar path): both end shards here
    monkeypatch.setattr(shards.ShardSink, "_close_current", dying_close)
    monkeypatch.setattr(shards.ShardSink, "abort", lambda self: None)  # a killed process cleans nothing up
    job = make_job(
        input=str(root),
        output=str(out),
        writer="qwen-vl",
        reader="visual-genome",
        format="jsonl",
        max_records_per_shard=3,
    )
    with pytest.raises(GroundingConvertError, match="disk vanished"):
        convert(job, RunOptions(progress=False))
    assert not (out / "manifest.json").exists() and not (out / "README.md").exists()
    assert not list((out / "_progress").glob("part-*.json")), "the partition must not be committed"
    assert sorted(p.name for p in (out / "data").iterdir()) == [".parts"]  # nothing a glob of data/ would load
    data = sorted(p.name for p in (out / "data" / ".parts").iterdir())
    hidden = [n for n in data if n.startswith(".") and n.endswith(".tmp")]
    assert hidden, data  # the shard being written when it died
    assert not [n for n in data if "-of-" in n], data  # never a final shard name
    # a rerun with --resume redoes the partition and ends with balanced books
    monkeypatch.undo()
    convert(job, RunOptions(progress=False, resume=True))
    kit.check_accounting(out)
    assert not [p for p in (out / "data").iterdir() if p.name.startswith(".")]


def _surrogate_sentence(root: Path) -> None:
    """A py3 pickle keeps a lone surrogate (BINUNICODE is read with surrogatepass)."""
    edit_pickle("refcoco/refs(unc).p", lambda refs: refs[0]["sentences"][0].update(sent="a \ud800 dog"))(root)


def _surrogate_escape(root: Path) -> None:
    """A ``\\ud800`` escape: orjson refuses it, the json fallback (kept for NaN boxes) lets it through."""
    edit_json("refcoco/instances.json", lambda d: [i.update(file_name="x\ud800.jpg") for i in d["images"]])(root)


@pytest.mark.parametrize("damage", [_surrogate_sentence, _surrogate_escape], ids=["pickle-text", "json-escape"])
def test_lone_surrogate_is_a_record_problem(kit, damage, tmp_path):
    root = kit.pristine.copy("refcoco", tmp_path / "in")
    damage(root)
    out = tmp_path / "out"
    result = kit.cli(*kit.convert_args("refcoco", root, out))
    kit.check_outcome(result, root, out)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for f in (out / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert lines and all(r["reason"] == "bad-text" and "surrogate" in r["message"] for r in lines)
