#!/usr/bin/env python
"""Benchmark the ``coco`` reader on an Objects365-shaped file: millions of annotations, not grouped by image.

Writes ``instances_train2017.json`` with the synth generator (annotations shuffled across the whole file),
then runs ``grounding-convert convert --from coco`` with 1 and with 2 workers, each under
``/usr/bin/time -v`` and each with a fresh spill cache (so both runs include the plan-time streaming join),
and checks that both outputs hold byte-identical shards (manifest checksums).

Peak RSS is ``/usr/bin/time``'s "Maximum resident set size": the largest single process of the run (the
parent during the plan-time spill, or one worker), not a sum over workers.

Usage::

    python scripts/bench_coco.py --images 340000 --per-image 15 --work /tmp/bench-coco   # 5.1M annotations
    python scripts/bench_coco.py --images 2000 --per-image 5 --work /tmp/bench-small      # a quick check
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from grounding_convert.synth import generate

BIN = str(Path(sys.executable).with_name("grounding-convert"))


def timed(command: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KB, stderr) of one command under /usr/bin/time -v."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return seconds, peak, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=340_000)
    parser.add_argument("--per-image", type=int, default=15)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-coco"))
    parser.add_argument("--writer", default="qwen-vl")
    parser.add_argument("--tasks", default="rec")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and outputs")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    started = time.perf_counter()
    counts = generate(
        "coco",
        args.work / "in",
        images=args.images,
        seed=0,
        write_images=False,
        annotations_per_image=args.per_image,
        shuffle=True,
    )
    source = args.work / "in" / "annotations" / "instances_train2017.json"
    size = source.stat().st_size
    print(
        f"generated {counts['annotations']:,} annotations on {counts['images']:,} images, shuffled: "
        f"{size / 1e9:.2f} GB in {time.perf_counter() - started:.0f}s"
    )
    checksums = {}
    for workers in (1, 2):
        out = args.work / f"out-w{workers}"
        command = [
            BIN,
            "convert",
            "--from",
            "coco",
            "--to",
            args.writer,
            "--tasks",
            args.tasks,
            "-i",
            str(source),
            "-o",
            str(out),
            "--workers",
            str(workers),
            "--quiet",
            "-O",
            f"cache_dir={args.work / f'cache-w{workers}'}",
        ]
        seconds, peak, _ = timed(command)
        manifest = json.loads((out / "manifest.json").read_text())
        c = manifest["counts"]
        checksums[workers] = [(s["file"], s["sha256"]) for s in manifest["shards"]]
        print(
            f"workers={workers}: {seconds:.0f}s wall, peak RSS {peak / 1024:.0f} MB; read {c['read']:,}, "
            f"written {c['written']:,}, records {sum(sum(t.values()) for t in c['records'].values()):,}, "
            f"notes {c['notes']}; {len(checksums[workers])} shards"
        )
    same = checksums[1] == checksums[2]
    print(f"outputs of 1 and 2 workers identical: {same}")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
