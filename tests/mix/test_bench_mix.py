"""scripts/bench_mix.py runs end to end at a tiny scale (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench_mix.py"


def test_bench_mix_reports_both_sizes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "400", "--workers", "1", "--workdir", str(tmp_path / "w"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    small, large = orjson.loads(out.read_bytes())
    assert (small["grit_rows"], large["grit_rows"]) == (40, 400)
    assert large["records"] > 3 * large["grit_rows"] > 0  # captions + half the expressions as rec and reg
    assert small["peak_rss_tree_mb"] > 0 and large["shards"] >= 1
    assert not (tmp_path / "w").exists()
