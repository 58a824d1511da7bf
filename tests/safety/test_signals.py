"""SIGTERM / SIGINT during a 2-worker run: every process of the run ends, one line, 130/143, resume exact.

Real subprocesses and real signals.  The run is held at the storage layer (faulty_cli.py, ``GC_GATE``)
once partitions 0 and 1 are committed, both workers waiting with a shard of partition 2/3 open, so the
signal always lands in the middle of the run; the resumed run is the plain command.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from grounding_convert.engine.runner import RunOptions, convert

from .conftest import children_of, command, job_for, markers, none_left, run, start, tree, visible_data, wait_for

LINE = re.compile(r"^interrupted: (\d+) of 17 partitions committed; rerun with --resume to finish$", re.M)


@pytest.mark.parametrize(
    ("signum", "to_group", "exit_code"),
    [
        (signal.SIGTERM, False, 143),  # `kill PID` / SLURM's time limit on the parent
        (signal.SIGTERM, True, 143),  # SLURM signals every process of the step
        (signal.SIGINT, True, 130),  # Ctrl-C in a terminal reaches the whole process group
        (signal.SIGINT, False, 130),
    ],
)
def test_signal_stops_every_worker_then_resume_is_exact(flickr, reference, tmp_path, gate, signum, to_group, exit_code):
    out = tmp_path / "out"
    proc = start(command(flickr, out, "--workers", "2", faulty=True), **gate)
    wait_for(lambda: markers(out) >= 2)
    workers = children_of(proc.pid)
    assert len(workers) >= 2, "a 2-worker pool runs in the parent's process group"
    sent = time.monotonic()
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=30)
    stopped = time.monotonic() - sent
    assert proc.returncode == exit_code, stderr
    assert stopped < 10, f"took {stopped:.1f}s to stop"
    assert none_left(proc.pid, within=10), "a process of the run outlived it"
    assert not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers)
    match = LINE.search(stderr)
    assert match, stderr
    assert int(match.group(1)) == markers(out) == 2
    assert not list(out.rglob("*.tmp")), stderr  # the unfinished partitions' temporaries are gone
    assert "Traceback" not in stderr
    assert visible_data(out) == [".parts"] or visible_data(out) == []  # unfinished shards stay hidden
    assert not (out / "manifest.json").exists()
    assert not list(out.glob(".grounding-convert*")), "the lock is released"
    if signum == signal.SIGTERM and not to_group:  # the command as a user reruns it
        done = run(command(flickr, out, "--workers", "2", "--resume", "--quiet"))
        assert done.returncode == 0, done.stderr
    else:  # the same, in-process (quicker)
        convert(job_for(flickr, out), RunOptions(workers=2, resume=True, progress=False))
    assert tree(out) == reference


def test_second_ctrl_c_kills_at_once_and_resume_still_finishes(flickr, reference, tmp_path, gate):
    out = tmp_path / "out"
    proc = start(command(flickr, out, "--workers", "2", faulty=True), **gate)
    wait_for(lambda: markers(out) >= 2)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode in (130, -signal.SIGINT)
    assert none_left(proc.pid, within=10)
    done = run(command(flickr, out, "--workers", "2", "--resume", "--quiet"))
    assert done.returncode == 0, done.stderr
    assert tree(out) == reference


def test_sigkill_of_the_parent_leaves_no_orphan_and_a_stale_lock_does_not_block_resume(
    flickr, reference, tmp_path, gate
):
    out = tmp_path / "out"
    proc = start(command(flickr, out, "--workers", "2", faulty=True), **gate)
    wait_for(lambda: markers(out) >= 2)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: the kernel's parent-death signal ends the workers
    proc.communicate(timeout=30)
    assert none_left(proc.pid, within=10)
    assert (out / ".grounding-convert.lock").is_file()  # left by the killed run
    done = run(command(flickr, out, "--workers", "2", "--resume", "--quiet"))
    assert done.returncode == 0, done.stderr
    assert tree(out) == reference


def _alive(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
