"""One writer per output folder: a second run is refused naming the lock and its holder; array slices share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import orjson
import pytest
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.lock import OutputLock, OutputLocked
from grounding_convert.engine.runner import RunOptions, convert
from grounding_convert.output.storage import Store

from .conftest import BIN, command, job_for, markers, run, start, tree, wait_for

LOCK = ".grounding-convert.lock"


def test_second_run_is_refused_while_the_first_completes(flickr, reference, tmp_path, gate):
    out = tmp_path / "out"
    first = start(command(flickr, out, "--workers", "2", "--quiet", faulty=True), **gate)
    wait_for(lambda: markers(out) >= 1)
    holder = f"pid {first.pid} on host {socket.gethostname()}"
    for extra in ([], ["--resume"]):
        second = run(command(flickr, out, "--quiet", *extra))
        assert second.returncode == 2, (extra, second.stderr)
        error = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1, second.stderr
        assert holder in error[0] and f"{out}/{LOCK}" in error[0]
    for flags in ({"overwrite": True}, {"resume": True, "workers": 2}, {"num_workers": 2}):
        with pytest.raises(OutputLocked, match=holder):
            convert(job_for(flickr, out), RunOptions(progress=False, **flags))
    finalize = CliRunner().invoke(app, ["finalize", str(out)])
    assert finalize.exit_code == 2 and holder in finalize.output
    (tmp_path / "gate").unlink()
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert tree(out) == reference  # the refused runs changed nothing; the lock is gone


def test_array_slices_run_together_and_finalize_waits_for_them(flickr, reference, tmp_path, gate):
    out = tmp_path / "out"
    slices = [
        start(command(flickr, out, "--num-workers", "2", "--worker-index", str(i), "--quiet", faulty=True), **gate)
        for i in (0, 1)
    ]
    wait_for(lambda: markers(out) >= 2)  # partitions 0 and 1, one per slice; both slices now wait
    plain = run(command(flickr, out, "--resume", "--quiet"))
    assert plain.returncode == 2 and "is in use by another run" in plain.stderr
    with pytest.raises(OutputLocked, match=r"\.grounding-convert\.slice-00001-of-00002\.lock"):
        convert(job_for(flickr, out), RunOptions(num_workers=2, worker_index=1, progress=False))
    with pytest.raises(OutputLocked, match="is in use by another run"):  # another slicing of the same output
        convert(job_for(flickr, out), RunOptions(num_workers=3, worker_index=2, progress=False))
    assert CliRunner().invoke(app, ["finalize", str(out)]).exit_code == 2
    assert len(list(out.glob(".grounding-convert.slice-*.lock"))) == 2
    (tmp_path / "gate").unlink()
    for proc in slices:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    done = run([BIN, "finalize", str(out)])
    assert done.returncode == 0, done.stderr
    assert tree(out) == reference


def test_stale_lock_of_a_dead_process_is_taken_over(flickr, reference, tmp_path):
    out = tmp_path / "out"
    convert(job_for(flickr, out), RunOptions(progress=False))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"pid": int(gone.stdout), "host": socket.gethostname(), "started": 1.0, "heartbeat": 1.0, "token": "x"}
    (out / LOCK).write_bytes(orjson.dumps(stale))
    convert(job_for(flickr, out), RunOptions(resume=True, progress=False))
    assert tree(out) == reference


def test_lock_of_another_host_is_live_until_its_heartbeat_is_old(tmp_path):
    import time

    store = Store(str(tmp_path))
    holder = {"pid": 1, "host": "node-elsewhere", "started": time.time(), "token": "x"}
    (tmp_path / LOCK).write_bytes(orjson.dumps({**holder, "heartbeat": time.time()}))
    with pytest.raises(OutputLocked, match="pid 1 on host node-elsewhere"):
        OutputLock(store).acquire()
    (tmp_path / LOCK).write_bytes(orjson.dumps({**holder, "heartbeat": time.time() - 3600}))
    with OutputLock(store) as lock:
        assert orjson.loads((tmp_path / LOCK).read_bytes())["token"] == lock.token
    assert not (tmp_path / LOCK).exists()


def test_unreadable_fresh_lock_is_not_taken_over(tmp_path):
    (tmp_path / LOCK).write_bytes(b"{half")
    with pytest.raises(OutputLocked, match="unreadable"):
        OutputLock(Store(str(tmp_path))).acquire()
    assert (tmp_path / LOCK).read_bytes() == b"{half"


def test_export_and_finalize_refuse_an_output_in_use(flickr, tmp_path):
    from grounding_convert.engine.runner import make_job
    from grounding_convert.tools.export import export

    out = tmp_path / "out"
    job = make_job(input=str(flickr), output=str(out), writer="cogvlm", reader="flickr30k-entities", format="jsonl")
    convert(job, RunOptions(progress=False))
    with OutputLock(Store(str(out))):  # this process holds it, as a running convert would
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()} on host"):
            export(str(out), "cogvlm2", str(tmp_path / "cogvlm2"))
        assert CliRunner().invoke(app, ["finalize", str(out)]).exit_code == 2
    assert not (tmp_path / "cogvlm2").exists()
    assert CliRunner().invoke(app, ["finalize", str(out)]).exit_code == 0
