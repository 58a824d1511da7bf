"""scripts/bench.py runs end to end at a tiny scale and reports what the README quotes (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def test_bench_reports_both_baselines_and_the_conversion(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.001", "--datasets", "grit", "--workers", "1",
         "--writers", "qwen-vl,ofa", "--formats", "jsonl",
         "--workdir", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = orjson.loads(out.read_bytes())
    rows = {row["run"]: row for row in report["rows"]}
    assert list(rows) == ["baseline", "convert qwen-vl jsonl -w1", "convert ofa jsonl -w1", "baseline again"]
    assert {row["read"] for row in rows.values()} == {1000}  # every run read the same GRIT rows
    convert = rows["convert qwen-vl jsonl -w1"]
    assert convert["written"] == 1000 and convert["records"] >= 3 * convert["written"]  # rec + reg + caption
    mean = (rows["baseline"]["records_per_s"] + rows["baseline again"]["records_per_s"]) / 2
    assert abs(convert["vs_baseline"] - convert["records_per_s"] / mean) < 1e-9
    assert not (tmp_path / "work").exists()  # without --keep nothing is left behind
