"""``--overwrite`` deletes only a previous run of this tool; the input and the user's files are never touched.

Every refusal is a real subprocess: exit 2, one ``error:`` line, and the input (or the user's folder) is
compared byte for byte before and after.
"""

from __future__ import annotations

import os
import shutil

import fsspec
import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.errors import UsageError
from grounding_convert.output.ownership import foreign_entry, is_own_file
from grounding_convert.output.storage import Store

from .conftest import command, job_for, run, tree


def refused(args: list[str], expected: str) -> None:
    proc = run(args)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def dataset(flickr, tmp_path):
    """A private copy of the input (the tests point outputs at it) and its bytes."""
    root = tmp_path / "w" / "in"
    shutil.copytree(flickr, root)
    return root


OVERLAPS = [
    ("{in}", "is the input"),
    ("{in}/", "is the input"),
    ("{in}/../in", "is the input"),
    ("{link}", "is the input"),  # a symlink to the input
    ("file://{in}", "is the input"),
    ("{w}", "contains the input"),  # the parent of the input
    ("{w}/..", "contains the input"),
    ("{in}/Sentences", "holds the input file"),  # inside the input, among its files
]


def _target(output: str, dataset, tmp_path) -> str:
    (tmp_path / "link").symlink_to(dataset)
    return output.format(**{"in": dataset, "w": dataset.parent, "link": tmp_path / "link"})


@pytest.mark.parametrize(("output", "expected"), [OVERLAPS[i] for i in (1, 3, 5, 7)])
def test_overwrite_of_the_input_is_refused_and_the_input_is_intact(dataset, tmp_path, output, expected):
    before = tree(tmp_path)
    refused(command(dataset, _target(output, dataset, tmp_path), "--overwrite", "--quiet"), expected)
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("output", "expected"), OVERLAPS)
@pytest.mark.parametrize("flags", [{"overwrite": True}, {}, {"resume": True}, {"num_workers": 2, "overwrite": True}])
def test_output_overlapping_the_input_is_refused_whatever_the_flags(dataset, tmp_path, output, expected, flags):
    target = _target(output, dataset, tmp_path)
    before = tree(tmp_path)
    with pytest.raises(UsageError, match=expected):
        convert(job_for(dataset, target), RunOptions(progress=False, **flags))
    assert tree(tmp_path) == before


def test_a_fresh_folder_inside_the_input_is_fine(dataset):
    before = tree(dataset)
    convert(job_for(dataset, dataset / "converted"), RunOptions(progress=False))
    assert {k: v for k, v in tree(dataset).items() if not k.startswith("converted/")} == before


def test_user_file_in_the_output_is_refused_and_kept(flickr, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_bytes(b"my notes\n")
    refused(command(flickr, mine, "--overwrite", "--quiet"), "notes.txt was not written by grounding-convert")
    assert tree(mine) == {"notes.txt": b"my notes\n"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("notes.txt", "notes.txt"),
        ("data/my-split.csv", "data/my-split.csv"),
        ("rejects/why.md", "rejects/why.md"),
        ("_progress/part-00001.json.bak", "_progress/part-00001.json.bak"),
        ("images/1.jpg", "images/"),
    ],
)
def test_previous_run_plus_a_user_file_is_refused_naming_it(flickr, tmp_path, extra, named):
    out = tmp_path / "out"
    convert(job_for(flickr, out), RunOptions(progress=False))
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_bytes(b"mine")
    before = tree(out)
    with pytest.raises(UsageError, match=f"{named} was not written by grounding-convert"):
        convert(job_for(flickr, out), RunOptions(overwrite=True, progress=False))
    assert tree(out) == before


def test_readme_alone_is_not_a_previous_run(flickr, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("# my project\n")
    refused(command(flickr, out, "--overwrite", "--quiet"), "README.md was not written by grounding-convert")
    assert (out / "README.md").read_text() == "# my project\n"


def test_a_symlink_in_the_output_is_foreign_and_not_followed(flickr, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    convert(job_for(flickr, out), RunOptions(progress=False))
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (out / "data" / "more").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="data/more was not written"):
        convert(job_for(flickr, out), RunOptions(overwrite=True, progress=False))
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_output_that_is_a_file_is_refused(flickr, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    refused(command(flickr, target, "--overwrite", "--quiet"), "is a file, not a folder")
    assert target.read_text() == "mine"


def test_overwrite_replaces_a_previous_run_even_an_interrupted_one(flickr, reference, tmp_path):
    out = tmp_path / "out"
    convert(job_for(flickr, out, seed=4), RunOptions(progress=False))
    (out / "manifest.json").unlink()  # as if killed before finalize: recognised by _progress/job.json
    (out / "data" / ".parts").mkdir()
    (out / "data" / ".parts" / ".train-p00003-0000.jsonl.tmp").write_bytes(b"half")
    convert(job_for(flickr, out), RunOptions(overwrite=True, progress=False))
    assert tree(out) == reference


def test_resume_deletes_nothing_of_the_user(flickr, reference, tmp_path):
    out = tmp_path / "out"
    convert(job_for(flickr, out), RunOptions(progress=False))
    (out / "notes.txt").write_text("mine")
    convert(job_for(flickr, out), RunOptions(resume=True, progress=False))
    assert tree(out) == {**reference, "notes.txt": b"mine"}


def test_fsspec_urls_of_one_file_system_are_compared_too(flickr, tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDING_CONVERT_CACHE", str(tmp_path / "cache"))
    memory = fsspec.filesystem("memory")
    memory.put(str(flickr), "/safety/w/in", recursive=True)
    try:
        before = {p: memory.cat_file(p) for p in memory.find("/safety")}
        for output, expected in [
            ("memory://safety/w/in/", "is the input"),
            ("memory:///safety/w/./in", "is the input"),
            ("memory://safety/w", "contains the input"),
            ("memory://safety/w/in/Sentences", "holds the input file"),
        ]:
            job = make_job(input="memory://safety/w/in", output=output, writer="qwen-vl", reader="flickr30k-entities")
            with pytest.raises(UsageError, match=expected):
                convert(job, RunOptions(overwrite=True, progress=False))
        assert {p: memory.cat_file(p) for p in memory.find("/safety")} == before
        job = make_job(input="memory://safety/w/in", output="memory://safety/out", writer="qwen-vl", format="jsonl")
        convert(job, RunOptions(progress=False))
        memory.pipe_file("/safety/out/notes.txt", b"mine")
        assert foreign_entry(Store("memory://safety/out")) == "notes.txt"
        with pytest.raises(UsageError, match="notes.txt was not written"):
            convert(job, RunOptions(overwrite=True, progress=False))
        memory.rm_file("/safety/out/notes.txt")
        convert(job, RunOptions(overwrite=True, progress=False))  # a previous run alone is replaced
        assert memory.exists("/safety/out/manifest.json")
    finally:
        memory.rm("/safety", recursive=True)


@pytest.mark.parametrize(
    ("name", "own"),
    [
        ("manifest.json", True),
        ("README.md", True),
        (".README.md.tmp", True),
        ("data/train-00000-of-00004.parquet", True),
        ("data/testA-00001-of-00002.jsonl", True),
        ("data/.parts/train-p00012-0003.tsv", True),
        ("data/.parts/.train-p00012-0003.tsv.tmp", True),
        ("rejects/part-00007.jsonl", True),
        ("_progress/part-00007.json", True),
        ("_progress/.plan.json.tmp", True),
        (".grounding-convert.lock", True),
        ("data/train.parquet", False),
        ("data/train-00000-of-00004.csv", False),
        ("notes.txt", False),
        ("_progress/notes.json", False),
        ("sub/manifest.json", False),
        (".hidden", False),
        (f"data{os.sep}x", False),
    ],
)
def test_own_file_names(name, own):
    assert is_own_file(name) is own


def test_input_file_paths_resolve_as_realpath_does(tmp_path):
    """check_separate resolves each folder once; symlinked folders and files must come out as realpath's."""
    from grounding_convert.output.ownership import _realpath

    real = tmp_path / "real"
    (real / "Sentences").mkdir(parents=True)
    (real / "Sentences" / "1.txt").write_text("x")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("y")
    (real / "Sentences" / "2.txt").symlink_to(elsewhere)  # a file symlink out of the folder
    (tmp_path / "alias").symlink_to(real)  # a folder symlink
    folders: dict[str, str] = {}
    for path in [
        tmp_path / "alias" / "Sentences" / "1.txt",
        tmp_path / "alias" / "Sentences" / "2.txt",
        real / "Sentences" / "1.txt",
        real / "Sentences" / ".." / "Sentences" / "1.txt",
        tmp_path / "alias" / "Sentences" / "missing.txt",
    ]:
        assert _realpath(str(path), folders) == os.path.realpath(path)
    assert _realpath(str(tmp_path / "alias" / "Sentences" / "2.txt"), folders) == str(elsewhere.resolve())
