"""scripts/bench.py runs end to end at a tiny scale and reports what the README quotes (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


@pytest.mark.parametrize("baselines", ["around", "ends"])
def test_bench_reports_the_baselines_and_the_conversions(tmp_path, baselines):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.001", "--datasets", "grit", "--workers", "1",
         "--writers", "qwen-vl,ofa", "--formats", "jsonl", "--baselines", baselines,
         "--workdir", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = orjson.loads(out.read_bytes())
    runs = [row["run"] for row in report["rows"]]
    between = ["baseline between"] if baselines == "around" else []
    assert runs == ["baseline", "convert qwen-vl jsonl -w1", *between, "convert ofa jsonl -w1", "baseline again"]
    rows = report["rows"]
    assert {row["read"] for row in rows} == {1000}  # every run read the same GRIT rows
    convert = rows[1]
    assert convert["written"] == 1000 and convert["records"] >= 3 * convert["written"]  # rec + reg + caption
    # each conversion against the baselines beside it (around) or the first and the last (ends)
    for i, row in enumerate(rows):
        if row["run"].startswith("convert"):
            before, after = rows[i - 1], rows[i + 1] if baselines == "around" else rows[-1]
            if baselines == "ends":
                before = rows[0]
            mean = (before["records_per_s"] + after["records_per_s"]) / 2
            assert abs(row["vs_baseline"] - row["records_per_s"] / mean) < 1e-9
    assert not (tmp_path / "work").exists()  # without --keep nothing is left behind
