#!/usr/bin/env python
"""Benchmark ``grounding-convert mix``: wall time and peak memory at two input sizes (memory must stay flat).

Writes synthetic GRIT parquet shards (the same generator as ``scripts/bench.py``) and mixes two sources
read from them, as the KOSMOS-2-style recipe does: grounded captions (noun chunks, weight 1) and
referring expressions (ref-exps spans, rec + reg, weight 0.5).  Each size runs once as a subprocess,
measured like ``bench.py`` (peak RSS of the process tree, polled every 50 ms; and the largest single
process).  The small size is a tenth of the large one, so a peak that grew with the input would show.

Usage::

    python scripts/bench_mix.py --rows 2000000 --workers 2 --out bench-mix.md   # ~5M+ records
    python scripts/bench_mix.py --rows 2000 --workers 1                          # smoke size
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench", HERE / "bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench"] = bench  # its process pool pickles bench._grit_shard by name
_spec.loader.exec_module(bench)  # type: ignore[union-attr]

RECIPE = """\
writer: qwen-vl
seed: 0
dedup: {dedup}
sources:
  - name: grit-captions
    reader: grit
    input: {input}
    options: {{spans: noun-chunks}}
    tasks: [grounded-caption]
  - name: grit-expressions
    reader: grit
    input: {input}
    options: {{spans: ref-exps}}
    tasks: [rec, reg]
    weight: 0.5
"""


def run_size(rows: int, work: Path, workers: int, dedup: str) -> dict[str, Any]:
    info = bench.generate_input("grit", work, rows / bench.FULL_SIZE["grit"])
    recipe = work / f"recipe-{rows}.yaml"
    recipe.write_text(RECIPE.format(input=info["path"], dedup=dedup))
    out = work / "outputs" / f"mix-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*bench._convert_cmd(), "mix", str(recipe), "--output", str(out), "--workers", str(workers), "--quiet"]
    log = work / f"mix-{rows}.log"
    bench._warm(Path(info["path"]))
    result = bench.measure(cmd, log)
    if result["returncode"] != 0:
        sys.exit(f"mix failed (exit {result['returncode']}); see {log}:\n{log.read_text()[-2000:]}")
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    return {
        "grit_rows": info["counts"]["records"],
        "input_bytes": info["bytes"],
        "records": manifest["totals"]["records_written"],
        "shards": len(manifest["shards"]),
        "buckets": manifest["recipe"]["buckets"],
        "seconds": round(result["seconds"], 1),
        "records_per_s": round(manifest["totals"]["records_written"] / result["seconds"]),
        "peak_rss_tree_mb": round(result["peak_rss_tree"] / 2**20),
        "peak_rss_process_mb": round(result["peak_rss_process"] / 2**20),
        "output_bytes": sum(s["bytes"] for s in manifest["shards"]),
    }


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        f"grounding-convert mix, 2 GRIT sources, writer qwen-vl, --workers {args.workers}, dedup {args.dedup}\n\n"
        "| GRIT rows | records written | buckets | shards | seconds | records/s | peak RSS tree (MB) "
        "| peak RSS one process (MB) |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r['grit_rows']:,} | {r['records']:,} | {r['buckets']} | {r['shards']} | {r['seconds']} "
        f"| {r['records_per_s']:,} | {r['peak_rss_tree_mb']:,} | {r['peak_rss_process_mb']:,} |"
        for r in rows
    ]
    return "\n".join([head, *lines]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="GRIT rows of the large size (small: a tenth)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dedup", default="off", choices=["off", "image-text-task"])
    parser.add_argument("--workdir", default=os.environ.get("GROUNDING_BENCH_DIR", "/tmp/grounding-convert-bench-mix"))
    parser.add_argument("--out", help="write the table here (.json → JSON, anything else → markdown)")
    parser.add_argument("--keep", action="store_true", help="keep inputs and outputs")
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = [run_size(max(1, args.rows // 10), work, args.workers, args.dedup)]
        rows.append(run_size(args.rows, work, args.workers, args.dedup))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = render(rows, args)
    print(text)
    if args.out:
        Path(args.out).write_text(orjson.dumps(rows).decode() if args.out.endswith(".json") else text)


if __name__ == "__main__":
    main()
