"""Hostile annotations (issue 18): no file outside the image root ever reaches an output.

Every feature that turns an annotation string into a path is run on names that climb (``../`` chains,
``a/../../x``, Windows ``..\\``), are absolute, hold a NUL, or pass through a symlink inside the image root
that points outside it.  A secret marker file sits outside the root (valid JPEG bytes followed by the
marker, so a reader that reached it would happily embed or draw it); every output file is then searched
for the marker, raw and in base64 at every alignment.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.images import SizeCheck
from grounding_convert.readers.grit import GritReader
from grounding_convert.readers.visual7w import Visual7wReader
from grounding_convert.safe_paths import UnsafePath
from grounding_convert.synth import generate
from grounding_convert.synth.images import jpeg_bytes
from grounding_convert.tools.preview import render_preview

BIN = str(Path(sys.executable).with_name("grounding-convert"))
MARKER = b"GC-SECRET-MARKER-5be1c0de"
SECRET = jpeg_bytes(16, 16, [[2, 2, 9, 9]], seed=99) + MARKER * 3  # a real JPEG with the marker after its end
ROOT = Path("images/mscoco/images/train2014")  # RefCOCO's image root inside the synth fixture
runner = CliRunner()


def hostile_names(tmp_path: Path) -> dict[str, str]:
    """kind → file_name; the image root is 5 levels below ``tmp_path`` (work/images/mscoco/images/train2014)."""
    return {
        "dotdot-chain": "../../../../../secret.jpg",
        "dotdot-deep": "../../../../../../../../../../../../etc/hostname",
        "absolute": str(tmp_path / "secret.jpg"),
        "a-dotdot": "a/../../secret.jpg",
        "nul": "secret.jpg\x00.jpg",
        "windows": "..\\..\\..\\..\\..\\secret.jpg",
        "symlink-file": "link.jpg",
        "symlink-folder": "up/secret.jpg",
    }


def encodings(secret: bytes) -> list[bytes]:
    """The secret as it could show up in an output: raw, base64 whole, the marker's base64 at any offset."""
    found = [MARKER, base64.b64encode(secret), base64.urlsafe_b64encode(secret)]
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + MARKER)
        found.append(text[4:-4])  # the middle is the same wherever the marker starts in a longer stream
    return found


def assert_no_secret(*folders: Path) -> None:
    needles = encodings(SECRET)
    checked = 0
    for folder in folders:
        for file in folder.rglob("*"):
            if file.is_file() and not file.is_symlink():
                data = file.read_bytes()
                checked += 1
                for needle in needles:
                    assert needle not in data, f"{file} holds bytes of a file outside the image root"
    assert checked


@pytest.fixture(scope="module")
def plain_refcoco(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    """A clean RefCOCO synth and, per image file, the sample ids that use it."""
    base = tmp_path_factory.mktemp("plain")
    generate("refcoco", base, images=16, seed=3)
    out = base.parent / (base.name + "-out")
    convert(
        make_job(input=str(base / "refcoco"), output=str(out), writer="canonical", reader="refcoco", format="jsonl"),
        RunOptions(progress=False),
    )
    by_file: dict[str, set[str]] = {}
    for shard in (out / "data").glob("*.jsonl"):
        for line in shard.read_bytes().splitlines():
            record = orjson.loads(line)
            by_file.setdefault(record["image"]["file"], set()).add(record["id"])
    return base, by_file


@pytest.fixture
def hostile(tmp_path, plain_refcoco) -> tuple[Path, dict[str, set[str]], set[str]]:
    """RefCOCO whose instances.json names hostile files: (fixture, kind → sample ids, all sample ids)."""
    base, by_file = plain_refcoco
    work = tmp_path / "work"
    shutil.copytree(base, work)
    root = work / ROOT
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    (root.parent / "secret.jpg").write_bytes(SECRET)  # just above the root, where a/../../ lands
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    os.symlink(tmp_path, root / "up")
    names = hostile_names(tmp_path)
    chosen = dict(zip(names, sorted(by_file), strict=False))
    assert len(chosen) == len(names)
    path = work / "refcoco" / "instances.json"
    instances = orjson.loads(path.read_bytes())
    for image in instances["images"]:
        for kind, file in chosen.items():
            if image["file_name"] == file:
                image["file_name"] = names[kind]
    path.write_bytes(orjson.dumps(instances))
    expected = {kind: by_file[file] for kind, file in chosen.items()}
    return work, expected, set().union(*by_file.values())


def written_ids(output: Path, fmt: str) -> set[str]:
    ids = set()
    for shard in (output / "data").glob(f"*.{fmt}"):
        if fmt == "tsv":
            ids |= {sample_of(row[0]) for row in tsv_rows(shard)}
        else:
            ids |= {orjson.loads(line)["sample_id"] for line in shard.read_bytes().splitlines()}
    return ids


def sample_of(record_id: str) -> str:
    """``refcoco/unc/1/1/rec/0`` or ``refcoco/unc/1/1/grounded-caption`` → ``refcoco/unc/1/1``."""
    return re.sub(r"/(rec|reg|pointing)/\d+$|/grounded-caption$", "", record_id)


def tsv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text()), delimiter="\t", quoting=csv.QUOTE_NONE))


def rejects(output: Path) -> list[dict]:
    return [orjson.loads(x) for f in sorted((output / "rejects").glob("*.jsonl")) for x in f.read_bytes().splitlines()]


def check_refused(output: Path, expected: dict[str, set[str]], names: dict[str, str]) -> None:
    """Every sample of a hostile image is an unsafe-path reject naming the sample and the string."""
    refused = [r for r in rejects(output) if r["reason"] == "unsafe-path"]
    by_id = {r["position"]: r for r in refused}
    for kind, ids in expected.items():
        for sample_id in ids:
            assert sample_id in by_id, f"{kind}: {sample_id} not refused"
            message = by_id[sample_id]["message"]
            assert repr(sample_id) in message and repr(names[kind]) in message
    assert len(refused) == sum(len(ids) for ids in expected.values())
    card = (output / "README.md").read_text()
    assert f"| unsafe-path | {len(refused)} |" in card


def pass_through(self, sample):
    """The size check switched off, so the TSV container's own reads are the only guard left."""
    return sample, None


@pytest.mark.parametrize("layout", ["size-check-and-embed", "embed-only"])
def test_ofa_tsv_images_never_come_from_outside_the_root(hostile, tmp_path, layout, monkeypatch):
    work, expected, everything = hostile
    names = hostile_names(tmp_path)
    out = tmp_path / "out"
    if layout == "embed-only":
        monkeypatch.setattr(SizeCheck, "__call__", pass_through)
    args = ["convert", "-f", "refcoco", "-t", "ofa", "--format", "tsv", "--embed-images", "--quiet"]
    args += ["--image-root", str(work / ROOT), "-i", str(work / "refcoco"), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    check_refused(out, expected, names)
    bad = set().union(*expected.values())
    assert written_ids(out, "tsv") == everything - bad  # the rest converts
    for shard in (out / "data").glob("*.tsv"):
        for row in tsv_rows(shard):
            assert base64.b64decode(row[4])[:2] == b"\xff\xd8"  # every image column is a JPEG from the root
    assert_no_secret(out)


def test_size_check_refuses_hostile_names_for_any_writer(hostile, tmp_path):
    work, expected, everything = hostile
    out = tmp_path / "out"
    args = ["convert", "-f", "refcoco", "-t", "qwen-vl", "--format", "jsonl", "--quiet"]
    result = runner.invoke(app, [*args, "--image-root", str(work / ROOT), "-i", str(work / "refcoco"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "unsafe-path" in result.output  # counted in the summary
    check_refused(out, expected, hostile_names(tmp_path))
    assert written_ids(out, "jsonl") == everything - set().union(*expected.values())
    assert_no_secret(out)


def test_preview_draws_no_file_outside_the_root(hostile, tmp_path):
    work, expected, _ = hostile
    out = tmp_path / "out"  # written without --image-root: the hostile names are in the records
    convert(
        make_job(input=str(work / "refcoco"), output=str(out), writer="qwen-vl", reader="refcoco", format="jsonl"),
        RunOptions(progress=False),
    )
    bad = set().union(*expected.values())
    result = render_preview(str(out), str(work / ROOT), tmp_path / "sheet.png", n=500, task="rec", labels=False)
    tiles = {sample_of(t.record_id): t for t in result.tiles}
    assert bad <= set(tiles)
    for sample_id, tile in tiles.items():
        assert tile.unsafe == (sample_id in bad) and not tile.missing, sample_id
    assert len(result.unsafe_paths) == sum(1 for t in result.tiles if sample_of(t.record_id) in bad)
    args = ["preview", str(out), "--image-root", str(work / ROOT), "--task", "rec", "--n", "12", "--no-labels"]
    cli = runner.invoke(app, [*args, "-o", str(tmp_path / "cards.html")])
    assert cli.exit_code == 0 and "unsafe image path(s) refused" in cli.output
    assert "unsafe-path" in (tmp_path / "cards.html").read_text()
    _no_secret_files(tmp_path / "sheet.png", tmp_path / "cards.html")


def _no_secret_files(*files: Path) -> None:
    for file in files:
        data = file.read_bytes()
        assert not any(needle in data for needle in encodings(SECRET))


def test_visual7w_size_reads_stay_under_the_root(tmp_path):
    base = tmp_path / "v7w"
    generate("visual7w", base, images=9, seed=2)
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.jpg", base / "images" / "link.jpg")
    os.symlink(tmp_path, base / "images" / "up")
    names = list(hostile_names(tmp_path).values())
    names[0] = "../../secret.jpg"  # the images folder is two levels below tmp_path here
    path = base / "dataset_v7w_telling.json"
    data = orjson.loads(path.read_bytes())
    for image, name in zip(data["images"], names, strict=False):
        image["filename"] = name
    path.write_bytes(orjson.dumps(data))
    reader = Visual7wReader.from_mapping({"image_root": str(base / "images"), "mode": "telling"})
    items = [item for part in reader.plan(str(base)) for item in reader.read(part)]
    refused = [i for i in items if getattr(i, "reason", None) == "unsafe-path"]
    hostile_qas = sum(len(image["qa_pairs"]) for image in data["images"][: len(names)])
    assert len(refused) == hostile_qas and hostile_qas >= len(names)
    every_qa = sum(len(image["qa_pairs"]) for image in data["images"])
    assert sum(1 for i in items if type(i).__name__ == "Sample") == every_qa - hostile_qas
    out = tmp_path / "out"
    args = ["convert", "-f", "visual7w", "-t", "cogvlm", "--format", "jsonl", "--quiet", "-O", "mode=telling"]
    result = runner.invoke(app, [*args, "--image-root", str(base / "images"), "-i", str(base), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sum(1 for r in rejects(out) if r["reason"] == "unsafe-path") == hostile_qas
    assert_no_secret(out)


def test_grit_tar_member_names_are_checked(tmp_path):
    base = tmp_path / "grit"
    counts = generate("grit", base, images=3, seed=4, layout="img2dataset")
    shard = base / "00000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    record = next(data for m, data in members if m.name.endswith(".json"))
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
        for name in ("../../evil.json", "/abs/evil.json", "a/../../evil.json"):
            info = tarfile.TarInfo(name)
            info.size = len(record)
            tar.addfile(info, io.BytesIO(record))
    reader = GritReader()
    items = [item for part in reader.plan(str(base)) for item in reader.read(part)]
    refused = [i for i in items if getattr(i, "reason", None) == "unsafe-path"]
    assert sorted(r.position for r in refused) == ["../../evil.json", "/abs/evil.json", "a/../../evil.json"]
    assert all(repr(r.position) in r.message for r in refused)
    assert sum(1 for i in items if type(i).__name__ == "Sample") == counts["samples"] >= 1  # the rest converts


def test_validate_and_preview_refuse_manifest_shards_outside_the_output(tmp_path, plain_refcoco):
    base, _ = plain_refcoco
    out = tmp_path / "out"
    convert(
        make_job(input=str(base / "refcoco"), output=str(out), writer="qwen-vl", reader="refcoco", format="jsonl"),
        RunOptions(progress=False),
    )
    (tmp_path / "secret.jsonl").write_bytes(b'{"id": "' + MARKER + b'"}\n')
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    manifest["shards"][0]["file"] = "../secret.jsonl"
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 2 and "'../secret.jsonl'" in result.output and MARKER.decode() not in result.output
    result = runner.invoke(app, ["preview", str(out), "--image-root", str(base / ROOT), "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "'../secret.jsonl'" in result.output
    assert not (tmp_path / "p.png").exists()


def test_issue_refcoco_command_exactly(tmp_path):
    """The issue's report, as a new user runs it: a file_name climbing to /etc/hostname."""
    synth = [BIN, "synth", "--dataset", "refcoco", "--output", str(tmp_path), "--images", "6"]
    assert subprocess.run(synth, capture_output=True).returncode == 0
    path = tmp_path / "refcoco" / "instances.json"
    instances = orjson.loads(path.read_bytes())
    hostile = "../../../../../../../../../../../../etc/hostname"
    instances["images"][0]["file_name"] = hostile
    path.write_bytes(orjson.dumps(instances))
    command = shlex.split(
        "grounding-convert convert --from refcoco --to ofa --format tsv --embed-images "
        "--image-root images/mscoco/images/train2014 --input refcoco/ --output out"
    )
    proc = subprocess.run([BIN, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "unsafe-path" in proc.stdout
    refused = [r for r in rejects(tmp_path / "out") if r["reason"] == "unsafe-path"]
    assert refused and all(repr(hostile) in r["message"] for r in refused)
    hostname = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else None
    rows = [row for shard in (tmp_path / "out" / "data").glob("*.tsv") for row in tsv_rows(shard)]
    assert rows
    for row in rows:
        image = base64.b64decode(row[4])
        assert image != hostname and image[:2] == b"\xff\xd8"


@pytest.mark.parametrize("size_check", [True, False])
def test_missing_image_while_embedding_is_a_reject_and_the_run_goes_on(
    plain_refcoco, tmp_path, size_check, monkeypatch
):
    base, by_file = plain_refcoco
    work = tmp_path / "work"
    shutil.copytree(base, work)
    gone = sorted(by_file)[0]
    (work / ROOT / gone).unlink()
    out = tmp_path / "out"
    args = ["convert", "-f", "refcoco", "-t", "ofa", "--format", "tsv", "--embed-images", "--quiet"]
    args += ["--image-root", str(work / ROOT), "-i", str(work / "refcoco")]
    if size_check:  # a real process, as a user runs it: the size check finds the image missing first
        proc = subprocess.run([BIN, *args, "-o", str(out)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert f"missing-image {len(by_file[gone])}" in proc.stdout
    else:  # the TSV container's own read finds it missing (it raised out of the shard sink before)
        monkeypatch.setattr(SizeCheck, "__call__", pass_through)
        result = runner.invoke(app, [*args, "-o", str(out)])
        assert result.exit_code == 0, result.output
    strict = runner.invoke(app, [*args, "-o", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 1 and "missing-image" in strict.output
    missing = [r for r in rejects(out) if r["reason"] == "missing-image"]
    assert {r["position"] for r in missing} == by_file[gone]
    assert all(gone in r["message"] and repr(r["position"]) in r["message"] for r in missing)
    everything = set().union(*by_file.values())
    assert written_ids(out, "tsv") == everything - by_file[gone]
    assert f"| missing-image | {len(by_file[gone])} |" in (out / "README.md").read_text()


@pytest.mark.parametrize("kind", list(hostile_names(Path("/tmp/x"))))
def test_ofa_writer_tsv_row_refuses_hostile_names(tmp_path, kind):
    """The writer's own ``tsv_row`` (library use, ``embed_images``) goes through the same resolver."""
    from grounding_convert.schema import ImageRef, Region, Sample
    from grounding_convert.writers.ofa import OfaWriter

    root = tmp_path / "a" / "b" / "c" / "d" / "root"
    root.mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    os.symlink(tmp_path, root / "up")
    name = hostile_names(tmp_path)[kind]
    writer = OfaWriter.from_mapping({"embed_images": True, "image_root": str(root)})
    sample = Sample(
        "s/1",
        "refcoco",
        "train",
        ImageRef(name, "1", 16, 16),
        "a cat",
        regions=[Region("a cat", (0, 5), [[2, 2, 9, 9]])],
    )
    [record] = writer.render(sample, "rec", seed=0)
    with pytest.raises(UnsafePath) as info:
        writer.tsv_row(record)
    assert repr(name) in info.value.message and MARKER.decode() not in info.value.message
