"""Reliability kit: pristine native fixtures, a structure-aware mutator, and the run-and-check harness.

Helpers live here (exposed through the ``kit`` fixture) because this folder may only hold these files.
The mutator knows the shape of each native format (JSON, JSONL, pickle, Parquet, XML, text, tar) so that
besides byte damage it can delete keys, swap types, put NaN/inf/negative numbers in boxes and sizes,
duplicate records and point ids at nothing — the damage real downloads and hand-edited files show.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import re
import shutil
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.safe_pickle import loads_plain
from grounding_convert.synth import generate

# ---------------------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Case:
    """How to build one reader's pristine native fixture and how to point the CLI at it."""

    reader: str
    build: Any  # (root: Path) -> None
    input: str = ""  # relative to the fixture root
    flags: tuple[str, ...] = ()  # "{root}" is replaced by the fixture root
    # globs of files whose damage need not stop the run: per-image files (their records are rejected) and
    # files read only when needed (Visual7W pointing answers back up the boxes the QA file already has)
    lenient: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()  # globs of files the reader does not read with these flags (not damaged)


def _synth(dataset: str, images: int, **options: Any):
    return lambda root: generate(dataset, root, images=images, seed=7, **options)


def _canonical(root: Path) -> None:
    """Two canonical shards (Parquet + JSONL) of different datasets, so ids never collide."""
    scratch = root.parent / (root.name + "-scratch")
    generate("flickr30k-entities", scratch / "f30k", images=2, seed=7, write_images=False)
    generate(
        "visual-genome", scratch / "vg", images=1, seed=7, write_images=False, regions_per_image=4, objects_per_image=2
    )
    root.mkdir(parents=True)
    for name, fmt, reader in (("f30k", "parquet", "flickr30k-entities"), ("vg", "jsonl", "visual-genome")):
        out = scratch / f"out-{name}"
        job = make_job(input=str(scratch / name), output=str(out), writer="canonical", reader=reader, format=fmt)
        convert(job, RunOptions(progress=False))
        for shard in sorted((out / "data").iterdir()):
            shutil.copy(shard, root / f"{name}-{shard.name}")
    shutil.rmtree(scratch)


_vg = _synth("visual-genome", 2, write_images=False, regions_per_image=4, objects_per_image=3)
V7W_LAZY = ("*/v7w_pointing_answers.json",)

CASES: dict[str, Case] = {
    "flickr30k-entities": Case(
        "flickr30k-entities", _synth("flickr30k-entities", 3, write_images=False), lenient=("Annotations/*.xml",)
    ),
    "visual-genome": Case("visual-genome", _vg, unused=("objects.json",)),
    "visual-genome-objects": Case(
        "visual-genome", _vg, flags=("--annotations", "objects"), unused=("region_descriptions.json",)
    ),
    "refcoco": Case("refcoco", _synth("refcoco", 3, write_images=False), input="refcoco"),
    "refcoco+": Case("refcoco+", _synth("refcoco+", 3, write_images=False), input="refcoco+"),
    "refcocog": Case("refcocog", _synth("refcocog", 3, write_images=False), input="refcocog"),
    "visual7w": Case(
        "visual7w",
        _synth("visual7w", 3, write_images=False),
        flags=("--vg-image-data", "{root}/image_data.json"),
        lenient=V7W_LAZY,
    ),
    "visual7w-images": Case(
        "visual7w",
        _synth("visual7w", 2),
        flags=("--image-root", "{root}/images"),
        lenient=V7W_LAZY,
        unused=("image_data.json",),
    ),
    "grit-parquet": Case("grit", _synth("grit", 4, layout="parquet")),
    "grit-jsonl": Case("grit", _synth("grit", 4, layout="jsonl")),
    "grit-img2dataset": Case("grit", _synth("grit", 4, layout="img2dataset"), unused=("*_stats.json",)),
    "canonical": Case("canonical", _canonical),
    "coco": Case(
        "coco",
        _synth("coco", 4, write_images=False, annotations_per_image=3),
        input="annotations/instances_train2017.json",
    ),
    "mdetr": Case("mdetr", _synth("mdetr", 3, write_images=False), input="final_flickr_separateGT_train.json"),
    "odvg": Case("odvg", _synth("odvg", 4, write_images=False), input="od.jsonl"),
    "refcoco-hf": Case("refcoco-hf", _synth("refcoco-hf", 6)),
    "records": Case("records", _synth("records", 2, format="jsonl"), unused=("_progress/*", "README.md")),
}


class Pristine:
    """Builds each fixture once per session; hands out fresh copies to damage."""

    def __init__(self, base: Path):
        self.base = base

    def path(self, name: str) -> Path:
        root = self.base / name
        if not root.exists():
            CASES[name].build(root)
        return root

    def copy(self, name: str, dest: Path) -> Path:
        shutil.copytree(self.path(name), dest)
        return dest


# ------------------------------------------------------------------------------------------- mutations

NAN, INF = float("nan"), float("inf")
REPLACEMENTS: tuple[Any, ...] = ("x", "", 7, -5, 0, 10**9, -0.5, NAN, INF, -INF, None, True, [], {}, [1, 2], "12")
BYTE_KINDS = ("truncate", "insert-bytes", "non-utf8", "empty")
TREE_KINDS = ("delete", "swap", "duplicate", "unknown-id", "retext")
NON_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"\xfe\xfe")
WHOLE_DOCUMENT = (".json", ".p", ".parquet", ".xml")  # one document per file: broken bytes break the file


@dataclass(frozen=True)
class Mutation:
    """One damage to one file; the repr is what hypothesis prints for a failing example."""

    file: str  # relative to the fixture root
    kind: str
    where: float  # 0..1: byte offset fraction, or which node/line/member
    pick: int  # which replacement / which byte pattern
    junk: bytes = b""


def mutation_strategy(files: list[str]) -> st.SearchStrategy[Mutation]:
    return st.builds(
        Mutation,
        file=st.sampled_from(files),
        kind=st.sampled_from(BYTE_KINDS + TREE_KINDS),
        where=st.floats(0, 1, allow_nan=False),
        pick=st.integers(0, 1000),
        junk=st.binary(min_size=1, max_size=12),
    )


def mutable_files(name: str, root: Path) -> list[str]:
    """Annotation files the reader reads (not the tiny JPEGs, whose pixels no reader decodes)."""
    unused = CASES[name].unused
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".jpg" and not any(p.relative_to(root).match(g) for g in unused)
    )


def is_lenient(name: str, file: str) -> bool:
    return any(Path(file).match(g) for g in CASES[name].lenient)


def apply(mutation: Mutation, root: Path) -> bool:
    """Damage the file in place; True when the file is now certainly not a readable document of its kind."""
    path = root / mutation.file
    data = path.read_bytes()
    kind, where, pick = mutation.kind, mutation.where, mutation.pick
    if kind == "empty":
        new = b""
    elif kind == "truncate":
        new = data[: int(where * len(data))]
    elif kind == "insert-bytes":
        at = int(where * len(data))
        new = data[:at] + mutation.junk + data[at:]
    elif kind == "non-utf8":
        new = _non_utf8(data, where, pick)
    else:
        new = _structured(path.suffix, data, kind, where, pick)
    path.write_bytes(new)
    return path.suffix in WHOLE_DOCUMENT and new != data and not _parses(path.suffix, new)


def _non_utf8(data: bytes, where: float, pick: int) -> bytes:
    """Invalid UTF-8 right after a quote or a letter, so it lands inside text where one exists."""
    spots = [m.end() for m in re.finditer(rb'"[A-Za-z]|>[A-Za-z]|\] [A-Za-z]', data)] or [int(where * len(data))]
    at = spots[int(where * (len(spots) - 1))]
    return data[:at] + NON_UTF8[pick % len(NON_UTF8)] + data[at:]


def _parses(suffix: str, data: bytes) -> bool:
    try:
        if suffix == ".json":  # the lenient parse (NaN/Infinity tokens) the RefCOCO toolkit accepts too
            json.loads(data.decode("utf-8"))
        elif suffix == ".p":
            loads_plain(data, "latin-1")
        elif suffix == ".parquet":
            pq.read_table(io.BytesIO(data))
        elif suffix == ".xml":
            ET.fromstring(data)
        return True
    except Exception:
        return False


def _structured(suffix: str, data: bytes, kind: str, where: float, pick: int) -> bytes:
    try:
        if suffix == ".json":
            return _dump_json(_tree(json.loads(data), kind, where, pick))
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in data.splitlines() if line.strip()]
            return b"".join(_dump_json(r) + b"\n" for r in _tree(rows, kind, where, pick))
        if suffix == ".p":
            return pickle.dumps(_tree(loads_plain(data, "latin-1"), kind, where, pick), protocol=2)
        if suffix == ".parquet":
            return _parquet(data, kind, where, pick)
        if suffix == ".xml":
            return _xml(data, kind, where, pick)
        if suffix == ".tar":
            return _tar(data, kind, where, pick)
        return _lines(data, kind, where, pick)
    except (ValueError, UnicodeDecodeError, pickle.UnpicklingError, ET.ParseError, tarfile.TarError, EOFError):
        return data[: int(where * len(data))]  # unparseable to start with: fall back to truncation


def _dump_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()  # NaN/Infinity tokens kept: real files have them


def _nodes(root: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value below ``root``, depth first, capped."""
    out: list[tuple[Any, Any]] = []
    stack = [root]
    while stack and len(out) < 5000:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            out.append((node, key))
            if isinstance(value, dict | list):
                stack.append(value)
    return out


def _tree(root: Any, kind: str, where: float, pick: int) -> Any:
    """Apply a key/type/id/text damage to one node of a JSON-like tree (a copy)."""
    root = copy.deepcopy(root)
    nodes = _nodes(root)
    if kind in ("unknown-id", "retext"):  # aim at the numbers / strings these damages make sense for
        want = (int, float) if kind == "unknown-id" else (str,)
        nodes = [(c, k) for c, k in nodes if isinstance(c[k], want) and not isinstance(c[k], bool)] or nodes
    if kind == "duplicate":
        nodes = [(c, k) for c, k in nodes if isinstance(c, list)] or nodes
    if not nodes:
        return root
    container, key = nodes[int(where * (len(nodes) - 1))]
    value = container[key]
    if kind == "delete":
        del container[key]
    elif kind == "swap":
        container[key] = copy.deepcopy(REPLACEMENTS[pick % len(REPLACEMENTS)])
    elif kind == "duplicate":
        if isinstance(container, list):
            container.insert(key, copy.deepcopy(value))
        else:
            container[key] = [value, value]
    elif kind == "unknown-id":
        container[key] = (value + 10**7 + pick) if isinstance(value, int | float) else f"{value}-nope"
    elif kind == "retext":
        text = value if isinstance(value, str) else str(value)
        container[key] = (text[::-1], text[: len(text) // 2], text + "  extra words", "")[pick % 4]
    return root


def _parquet(data: bytes, kind: str, where: float, pick: int) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    rows = _tree(table.to_pylist(), kind, where, pick)
    for attempt in (lambda: pa.Table.from_pylist(rows, schema=table.schema), lambda: pa.Table.from_pylist(rows)):
        try:
            new = attempt()
            break
        except Exception:  # Arrow refuses many damages (rows that are not dicts, mixed types)
            continue
    else:
        new = table.slice(0, max(0, table.num_rows - 1))  # Arrow refuses the damage: drop a row instead
    sink = io.BytesIO()
    pq.write_table(new, sink)
    return sink.getvalue()


def _xml(data: bytes, kind: str, where: float, pick: int) -> bytes:
    root = ET.fromstring(data)
    parents = [(p, c) for p in root.iter() for c in p]
    if not parents:
        return b""
    parent, child = parents[int(where * (len(parents) - 1))]
    if kind == "delete":
        parent.remove(child)
    elif kind == "duplicate":
        parent.insert(list(parent).index(child), copy.deepcopy(child))
    elif kind == "unknown-id":
        child.text = str(10**7 + pick)
    elif kind == "retext":
        child.text = ("", "abc", "1e999", "-1")[pick % 4]
    else:
        child.text = str(REPLACEMENTS[pick % len(REPLACEMENTS)])
    return ET.tostring(root)


def _lines(data: bytes, kind: str, where: float, pick: int) -> bytes:
    """Text files (Flickr30K sentences and split lists, GRIT captions)."""
    lines = data.decode("utf-8").split("\n")
    i = int(where * (len(lines) - 1))
    line = lines[i]
    if kind == "delete":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, line)
    elif kind == "unknown-id":
        lines[i] = re.sub(r"/EN#\d+", f"/EN#{10**7 + pick}", line) if "/EN#" in line else f"{line}{pick}"
    elif kind == "retext":  # break the bracket syntax a little
        lines[i] = line.replace(("[", "]", "/EN#", " ")[pick % 4], "", 1)
    else:
        words = line.split(" ")
        words[pick % len(words)] = str(REPLACEMENTS[pick % len(REPLACEMENTS)])
        lines[i] = " ".join(words)
    return "\n".join(lines).encode()


def _tar(data: bytes, kind: str, where: float, pick: int) -> bytes:
    """Damage one member of a webdataset tar (a .json/.txt gets a structured damage, others bytes)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    if not members:
        return data
    i = int(where * (len(members) - 1))
    info, content = members[i]
    if kind == "delete":
        del members[i]
    elif kind == "duplicate":
        members.insert(i, (info, content))
    else:
        suffix = Path(info.name).suffix
        fallback = (content[: len(content) // 2], b"", b"\xff\xfe" + content)[pick % 3]
        members[i] = (
            info,
            _structured(suffix, content, kind, where, pick) if suffix in (".json", ".txt") else fallback,
        )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for member, body in members:
            member = copy.copy(member)
            member.size = len(body)
            tar.addfile(member, io.BytesIO(body))
    return out.getvalue()


# ------------------------------------------------------------------------------------------ run + check

runner = CliRunner()
TRACEBACK = "Traceback (most recent call last)"


def cli(*args: str):
    """Run ``grounding-convert`` in-process; the result has exit_code and output (stdout + stderr)."""
    return runner.invoke(app, [str(a) for a in args])


def convert_args(name: str, root: Path, out: Path, *extra: str) -> list[str]:
    case = CASES[name]
    flags = [f.replace("{root}", str(root)) for f in case.flags]
    return [
        "convert",
        "--from",
        case.reader,
        "--to",
        "qwen-vl",
        "--input",
        str(root / case.input),
        "--output",
        str(out),
        "--overwrite",
        "--quiet",
        "--format",
        "jsonl",
        *flags,
        *extra,
    ]


def read_manifest(out: Path) -> dict[str, Any]:
    return orjson.loads((out / "manifest.json").read_bytes())


def reject_lines(out: Path) -> list[dict[str, Any]]:
    files = sorted((out / "rejects").glob("*.jsonl"))
    return [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]


def check_accounting(out: Path) -> dict[str, Any]:
    """read == written + rejected + filtered, one reject line per rejected record, each explained."""
    manifest = read_manifest(out)
    counts = manifest["counts"]
    assert counts["read"] == counts["written"] + counts["rejected"] + counts["filtered"], counts
    assert manifest["balanced"] is True
    lines = reject_lines(out)
    assert len(lines) == counts["rejected"], (len(lines), counts)
    for line in lines:
        assert isinstance(line["reason"], str) and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", line["reason"]), line
        assert isinstance(line["message"], str) and line["message"], line
        assert isinstance(line["source"], str) and line["source"], line
    assert sum(counts["reject_reasons"].values()) == counts["rejected"]
    records = sum(sum(t.values()) for t in counts["records"].values())
    written = sum(len(f.read_bytes().splitlines()) for f in (out / "data").glob("*.jsonl"))
    assert written == records, (written, records)
    assert not list(out.rglob(".*.tmp")), "temporary files left after a finished run"
    return manifest


def check_outcome(result, root: Path, out: Path, must_fail: bool = False) -> dict[str, Any] | None:
    """The documented contract for a run without --strict: exit 0 with balanced books, or exit 2 naming a file."""
    output = result.output
    assert TRACEBACK not in output, output
    assert "internal error" not in output, output
    assert result.exit_code in (0, 2), f"exit {result.exit_code}: {output}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    if result.exit_code == 2:
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, output
        assert str(root) in errors[0], f"message does not name a file of the input: {errors[0]}"
        assert not (out / "manifest.json").exists()
        return None
    assert not must_fail, f"a broken whole document was accepted: {output}"
    manifest = check_accounting(out)
    # a writer that cannot spell a sample means the reader let a bad value through
    assert "render-failed" not in manifest["counts"]["reject_reasons"], reject_lines(out)
    return manifest


class Kit:
    """What the tests use: fixtures, mutations, the CLI and the checks."""

    CASES = CASES
    apply = staticmethod(apply)
    mutable_files = staticmethod(mutable_files)
    is_lenient = staticmethod(is_lenient)
    mutation_strategy = staticmethod(mutation_strategy)
    cli = staticmethod(cli)
    convert_args = staticmethod(convert_args)
    check_outcome = staticmethod(check_outcome)
    check_accounting = staticmethod(check_accounting)
    read_manifest = staticmethod(read_manifest)
    reject_lines = staticmethod(reject_lines)
    TRACEBACK = TRACEBACK

    def __init__(self, pristine: Pristine):
        self.pristine = pristine
        self._manifests: dict[str, dict[str, Any]] = {}

    def read_manifest_of(self, name: str, scratch: Path) -> dict[str, Any]:
        """The manifest of the undamaged fixture (what a damage is compared with)."""
        if name not in self._manifests:
            root = self.pristine.copy(name, scratch / "in")
            result = cli(*convert_args(name, root, scratch / "out"))
            assert result.exit_code == 0, result.output
            self._manifests[name] = read_manifest(scratch / "out")
        return self._manifests[name]


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit(Pristine(tmp_path_factory.mktemp("pristine")))
