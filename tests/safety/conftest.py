"""Shared by the safety tests: a synthetic Flickr30K input, a clean reference output, and process checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.synth import generate

BIN = str(Path(sys.executable).with_name("grounding-convert"))
FAULTY = str(Path(__file__).with_name("faulty_cli.py"))
OPTIONS = ["-O", "images_per_partition=15", "--format", "jsonl", "--max-records-per-shard", "700"]


@pytest.fixture(scope="session")
def flickr(tmp_path_factory) -> Path:
    """240 images in 17 partitions (a second or two for a whole run)."""
    root = tmp_path_factory.mktemp("flickr")
    generate("flickr30k-entities", root, images=240, seed=3, write_images=False)
    return root


@pytest.fixture(scope="session")
def reference(flickr, tmp_path_factory) -> dict[str, bytes]:
    """Every file of an uninterrupted run (hidden ones too): what each resumed run must equal."""
    out = tmp_path_factory.mktemp("reference") / "out"
    convert(job_for(flickr, out), RunOptions(progress=False))
    return tree(out)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def command(input: Path | str, output: Path | str, *extra: str, faulty: bool = False) -> list[str]:
    head = [sys.executable, FAULTY] if faulty else [BIN]
    return [*head, "convert", "-f", "flickr30k-entities", "-t", "qwen-vl", "-i", str(input), "-o", str(output),
            *OPTIONS, *extra]  # fmt: skip


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=180, env={**os.environ, **env})


def start(args: list[str], **env: str) -> subprocess.Popen:
    """A run in its own session, so its process group holds exactly the run's processes."""
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **env},
    )


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def markers(out: Path) -> int:
    progress = out / "_progress"
    return len(list(progress.glob("part-*.json"))) if progress.is_dir() else 0


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def children_of(pid: int) -> list[int]:
    return [p for p in group_members(os.getpgid(pid)) if p != pid]


def none_left(pgid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def visible_data(out: Path) -> list[str]:
    """Files a reader of the output would take for finished shards (nothing under hidden names)."""
    data = out / "data"
    return sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) if data.is_dir() else []


def job_for(input: Path | str, output: Path | str, **kw):
    """The job of :func:`command` (for setting up outputs in-process, which is quicker)."""
    return make_job(
        input=str(input),
        output=str(output),
        writer="qwen-vl",
        reader="flickr30k-entities",
        format="jsonl",
        reader_options={"images_per_partition": 15},
        max_records_per_shard=700,
        **kw,
    )


@pytest.fixture
def gate(tmp_path) -> dict[str, str]:
    """Env for faulty_cli.py: partitions 2+ wait while ``tmp_path/gate`` exists (remove it to go on)."""
    path = tmp_path / "gate"
    path.touch()
    return {"GC_GATE": str(path)}
