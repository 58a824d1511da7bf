"""Disk full, quota, permission: one line naming the file, exit 2, committed partitions kept, resume exact.

The fault is injected at the storage layer (faulty_cli.py wraps ``Store._open_file``, the one place an
output file is opened) in a real subprocess with real worker processes; the resumed run is the plain
command, with the space "back".
"""

from __future__ import annotations

import re

import pytest

from grounding_convert.engine.runner import RunOptions, convert

from .conftest import command, job_for, run, tree, visible_data


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def committed(out) -> dict[str, bytes]:
    """The markers and the shards they list: what an interrupted run keeps."""
    return {k: v for k, v in tree(out).items() if k.startswith("_progress/part-") or k.startswith("data/.parts/")}


@pytest.mark.parametrize(
    ("errno_name", "words", "workers"),
    [
        ("ENOSPC", "No space left on device (ENOSPC)", "2"),
        ("EDQUOT", "Disk quota exceeded (EDQUOT)", "2"),
        ("EACCES", "Permission denied (EACCES)", "1"),
    ],
)
def test_write_error_mid_run_then_resume_is_exact(flickr, reference, tmp_path, errno_name, words, workers):
    out = tmp_path / "out"
    env = {"GC_FAULT_MATCH": "-p00003-", "GC_FAULT_ERRNO": errno_name}
    proc = run(command(flickr, out, "--workers", workers, "--quiet", faulty=True), **env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = error_lines(proc.stderr)
    assert re.fullmatch(
        rf"error: cannot write {re.escape(str(out))}/data/\.parts/\.\w+-p00003-0000\.jsonl\.tmp: {re.escape(words)}; "
        r"committed partitions are kept: fix the cause \(free space, quota, permissions\), then rerun with --resume",
        line,
    ), line
    assert visible_data(out) == []  # nothing that looks finished (data/.parts/ is hidden)
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob(".*.tmp")), "the failed partition dropped its half-written shard"
    kept = committed(out)
    if workers == "1":  # in order: partitions 0, 1, 2 were committed before 3 failed
        assert sorted(k for k in kept if k.startswith("_progress/")) == [
            f"_progress/part-0000{i}.json" for i in range(3)
        ]
    proc = run(command(flickr, out, "--workers", workers, "--resume", "--quiet"))  # the space is back
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == reference
    finished = set(reference.values())
    assert all(v in finished for k, v in kept.items() if k.startswith("data/")), "kept shards became final ones"


def test_disk_full_while_finalizing_keeps_every_partition(flickr, reference, tmp_path):
    out = tmp_path / "out"
    proc = run(command(flickr, out, "--quiet", faulty=True), GC_FAULT_MATCH="manifest.json")
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"error: cannot write {out}/.manifest.json.tmp: No space left on device (ENOSPC);")
    assert not (out / "manifest.json").exists() and not (out / ".manifest.json.tmp").exists()
    assert len(list((out / "_progress").glob("part-*.json"))) == 17
    convert(job_for(flickr, out), RunOptions(resume=True, progress=False))
    assert tree(out) == reference


def test_unwritable_output_is_one_line(flickr, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run(command(flickr, blocker / "out", "--quiet"))  # a folder under a file: ENOTDIR
    assert proc.returncode == 2, proc.stderr
    [line] = error_lines(proc.stderr)
    assert f"{blocker}/out" in line and "Traceback" not in proc.stderr
