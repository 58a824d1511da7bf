"""What a user sees: a description per reader in ``list``, plain progress lines off a terminal."""

from __future__ import annotations

import re
import subprocess

from grounding_convert.plugins import get_reader, reader_names

from .conftest import BIN, command, run


def test_list_describes_every_reader():
    proc = subprocess.run([BIN, "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("writers:")[0].splitlines()[1:]
    assert len(lines) == len(reader_names()) >= 8
    for name, line in zip(reader_names(), lines, strict=True):
        cls = get_reader(name)
        assert line.split()[:2] == [name, cls.dataset]
        assert cls.description and line.endswith(cls.description), line
    for name in ("grit", "refcoco", "refcoco+", "refcocog", "visual7w"):
        line = next(line for line in lines if line.split()[0] == name)
        assert len(line.split()) > 4, line


def test_progress_off_a_terminal_is_plain_lines(flickr, tmp_path):
    proc = run(command(flickr, tmp_path / "out"))  # no --quiet; stderr is a pipe
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("convert:")]
    assert progress[0] == "convert: 0/17 partitions [00:00<?]"
    assert re.fullmatch(
        r"convert: 17/17 partitions \[\d\d:\d\d<00:00, samples=1087, records=5001, rejected=0\]", progress[-1]
    )
