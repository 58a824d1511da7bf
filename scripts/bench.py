#!/usr/bin/env python
"""Benchmark ``grounding-convert convert`` against a bare read-and-write baseline on large synthetic inputs.

For each dataset shape it writes the *native* layout the reader reads (GRIT parquet shards, Visual Genome
``region_descriptions.json`` + ``image_data.json``, Flickr30K Entities ``Sentences/`` + ``Annotations/``),
then runs, each as a subprocess measured the same way:

* ``baseline``: one process reads the same records from the same files with the same parsers the reader
  uses (pyarrow, ijson, ElementTree) and writes them, unconverted, as zstd Parquet in 2000-row groups;
* ``convert -w1`` and ``convert -w2``: ``grounding-convert convert`` with 1 and 2 workers;
* ``baseline between`` (``--baselines around``, the default) and ``baseline again``: the baseline between
  every two conversions and after the last, so that each conversion's "vs baseline" (relative to the mean
  of the baselines just before and just after it) does not hang on the machine's speed minutes away: on
  this shared machine kind one baseline ran 7.4 s and another 14.4 s in the same run.

**records/s** = input records read (GRIT rows, VG regions, Flickr captions: the manifest's ``read``
count, i.e. the reader's samples + rejects + filtered) ÷ wall seconds of the whole command, from process
start to exit (interpreter start, planning, finalize and manifest included).  Baseline and convert use
this same unit.  Peak RSS is the largest sum of VmRSS over the process tree (polled every 50 ms;
forked workers' shared pages count twice, so it is an upper bound) and, separately, the largest single
process (``ru_maxrss`` of the tree from ``wait4``).

Usage::

    python scripts/bench.py                       # full size, all three datasets (~10-15 min on 2 cores)
    python scripts/bench.py --scale 0.5 --datasets grit,visual-genome --out bench.md --keep
    python scripts/bench.py --scale 0.1 --writers qwen-vl --formats jsonl --workers 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

FULL_SIZE = {"grit": 1_000_000, "visual-genome": 1_000_000, "flickr30k-entities": 30_000}  # 30k images = 150k captions
UNITS = {"grit": "records", "visual-genome": "regions", "flickr30k-entities": "images"}
READERS = {"grit": "grit", "visual-genome": "visual-genome", "flickr30k-entities": "flickr30k-entities"}
GRIT_SHARD_ROWS = 250_000  # the real shards hold ~1M rows each; 4 shards keep both workers busy at 1M
GRIT_ROW_GROUP = 10_000
VG_MEAN_REGIONS = 50  # synth visual_genome draws 1..99 regions per image
ROW_GROUP = 2000
SEED = 7
INPUT_VERSION = 2  # bump when the generated inputs change shape


# --- input generation --------------------------------------------------------------------------------


def generate_input(dataset: str, root: Path, scale: float) -> dict[str, Any]:
    """Write (or reuse, when a previous ``--keep`` run left the same one) the native-layout input."""
    target = max(1, round(FULL_SIZE[dataset] * scale))
    folder = root / "inputs" / f"{dataset}-{target}"
    marker = folder / "bench-input.json"
    wanted = {"dataset": dataset, "target": target, "seed": SEED, "version": INPUT_VERSION}
    if marker.is_file():
        info = orjson.loads(marker.read_bytes())
        if info.get("params") == wanted:
            info["reused"] = True
            return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    if dataset == "grit":
        counts = _grit(folder, target)
    elif dataset == "visual-genome":
        from grounding_convert.synth import visual_genome

        images = math.ceil(target / VG_MEAN_REGIONS * 1.02)  # a little over, so regions >= target
        counts = visual_genome.generate(folder, images=images, seed=SEED, write_images=False)
    else:
        from grounding_convert.synth import flickr30k_entities

        counts = flickr30k_entities.generate(folder, images=target, seed=SEED, write_images=False)
    info = {
        "params": wanted,
        "path": str(folder),
        "counts": counts,
        "bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
        "files": sum(1 for p in folder.rglob("*") if p.is_file()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    marker.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    info["reused"] = False
    return info


def _grit(folder: Path, total: int) -> dict[str, int]:
    """GRIT parquet shards (``coyo_<i>_snappy.parquet``), written shard-parallel with the synth records.

    ``synth.grit.generate`` keeps every record in memory before writing; at 1M records that is slow and
    several GB, so the same ``make_record`` rows are streamed here one row group at a time.
    """
    shards = max(1, math.ceil(total / GRIT_SHARD_ROWS))
    per = math.ceil(total / shards)
    jobs = [(folder, s, s * per, min(per, total - s * per)) for s in range(shards) if total > s * per]
    workers = min(len(jobs), os.cpu_count() or 1)
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = list(pool.map(_grit_shard, jobs))
    counts: dict[str, int] = {"records": 0, "regions": 0, "boxes": 0}
    for result in results:
        for key, value in result.items():
            counts[key] += value
    counts["shards"] = len(jobs)
    return counts


def _grit_shard(job: tuple[Path, int, int, int]) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from grounding_convert.synth import grit

    folder, shard, first, count = job
    rng = random.Random(SEED * 1000 + shard)
    counts = {"records": 0, "regions": 0, "boxes": 0}
    with pq.ParquetWriter(folder / f"coyo_{shard}_snappy.parquet", grit.SCHEMA, compression="snappy") as out:
        for start in range(first, first + count, GRIT_ROW_GROUP):
            rows = []
            for i in range(start, min(start + GRIT_ROW_GROUP, first + count)):
                record = grit.make_record(rng, i, 1_000_000_000_000 + i * 7919 + rng.randrange(7919))
                for field in ("noun_chunks", "ref_exps"):  # the HF parquet spelling: float offsets
                    record[field] = [[float(v) for v in chunk] for chunk in record[field]]
                counts["records"] += 1
                counts["regions"] += len({(c[0], c[1]) for c in record["noun_chunks"]})
                counts["boxes"] += len(record["noun_chunks"])
                rows.append(record)
            out.write_table(pa.Table.from_pylist(rows, schema=grit.SCHEMA), row_group_size=GRIT_ROW_GROUP)
    return counts


# --- the bare baseline (runs in its own process, like convert) ---------------------------------------


class _ParquetOut:
    """Rows → zstd Parquet in fixed 2000-row groups (what the converter's shard sink does)."""

    def __init__(self, path: Path):
        self.path, self.rows, self.count, self._writer = path, [], 0, None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema), row_group_size=ROW_GROUP)
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()


def baseline(dataset: str, input_path: Path, output: Path) -> int:
    """Read every input record with the reader's own parser and write it out unconverted; return the count."""
    output.mkdir(parents=True, exist_ok=True)
    out = _ParquetOut(output / "baseline.parquet")
    if dataset == "grit":
        import pyarrow.parquet as pq

        from grounding_convert.readers.grit import COLUMNS

        for path in sorted(input_path.glob("*.parquet")):
            pfile = pq.ParquetFile(path)
            columns = [c for c in [*COLUMNS, "noun_chunks"] if c in pfile.schema_arrow.names]
            for batch in pfile.iter_batches(batch_size=2048, columns=columns):
                for row in batch.to_pylist():
                    out.add(row)
    elif dataset == "visual-genome":
        import ijson

        sizes = {
            e["image_id"]: (e["width"], e["height"])
            for e in orjson.loads((input_path / "image_data.json").read_bytes())
        }
        with open(input_path / "region_descriptions.json", "rb") as fh:
            for element in ijson.items(fh, "item", use_float=True):
                for region in element["regions"]:
                    width, height = sizes.get(region["image_id"], (None, None))
                    out.add({**region, "image_width": width, "image_height": height})
    else:
        for split in ("train", "val", "test"):
            for image_id in (input_path / f"{split}.txt").read_text().split():
                xml = ET.fromstring((input_path / "Annotations" / f"{image_id}.xml").read_bytes())
                objects = [
                    {
                        "names": [n.text for n in obj.findall("name")],
                        "box": [int(v.text) for v in obj.find("bndbox")] if obj.find("bndbox") is not None else None,
                    }
                    for obj in xml.iter("object")
                ]
                boxes = orjson.dumps(objects).decode()
                lines = (input_path / "Sentences" / f"{image_id}.txt").read_text(encoding="utf-8").splitlines()
                for n, line in enumerate(lines):
                    out.add({"image": image_id, "split": split, "caption": n, "text": line, "objects": boxes})
    out.close()
    return out.count


# --- measuring a subprocess ----------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) of ``pid`` and all its descendants right now."""
    tree, todo, total = _children(), [pid], 0
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, []))
        try:
            with open(f"/proc/{current}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def measure(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, CPU seconds and peak RSS of its whole process tree."""
    started = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": seconds,
        "returncode": proc.returncode,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_tree": peak,
        "peak_rss_process": usage.ru_maxrss * 1024,
    }


def _convert_cmd() -> list[str]:
    script = Path(sys.executable).with_name("grounding-convert")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from grounding_convert.cli.app import main; main()"]


def run_dataset(dataset: str, info: dict[str, Any], work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    src = Path(info["path"])
    out = work / "outputs" / dataset
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    baseline_cmd = [
        sys.executable,
        __file__,
        "--baseline-of",
        dataset,
        "--input",
        str(src),
        "--baseline-out",
        str(out / "baseline"),
    ]

    def run_baseline(run: str) -> None:
        shutil.rmtree(out / "baseline", ignore_errors=True)
        result = measure(baseline_cmd, out / f"{run.replace(' ', '-')}.log")
        _check(result, out / f"{run.replace(' ', '-')}.log")
        result.update(run=run, workers=1, read=int((out / "baseline" / "count").read_text()), records=None)
        rows.append(result)
        if not args.keep:
            shutil.rmtree(out / "baseline")

    _warm(src)  # every run finds the input in the page cache (else the first one pays for the disk)
    # before and after the conversions (and, with --baselines around, between every two): this machine's
    # speed drifts within minutes, so each conversion is compared with the baselines run right beside it
    run_baseline("baseline")
    writers = args.writers if dataset == "grit" else args.writers[:1]  # VG and Flickr: one writer
    formats = args.formats if dataset == "grit" else args.formats[:1]
    top = max(args.workers)
    runs = [(w, f, top) for w in writers for f in formats]  # the matrix at the most workers ...
    runs[1:1] = [(writers[0], formats[0], n) for n in sorted(args.workers) if n != top]  # ... scaling on one
    for writer, fmt, workers in runs:
        label = f"{writer} {fmt} -w{workers}"
        target = out / f"convert-{writer}-{fmt}-w{workers}"
        log = out / f"convert-{writer}-{fmt}-w{workers}.log"
        cmd = _convert_cmd() + [
            "convert",
            "--to",
            writer,
            "--from",
            READERS[dataset],
            "-i",
            str(src),
            "-o",
            str(target),
            "--format",
            fmt,
            "--workers",
            str(workers),
            "--quiet",
            "--overwrite",
        ]
        if args.tasks:
            cmd += ["--tasks", args.tasks]
        result = measure(cmd, log)
        _check(result, log)
        counts = orjson.loads((target / "manifest.json").read_bytes())["counts"]
        records = sum(sum(per_task.values()) for per_task in counts["records"].values())
        result.update(
            run=f"convert {label}",
            writer=writer,
            format=fmt,
            workers=workers,
            read=counts["read"],
            records=records,
            written=counts["written"],
            rejected=counts["rejected"],
            filtered=counts["filtered"],
        )
        result["command"] = " ".join(cmd)
        rows.append(result)
        if not args.keep:
            shutil.rmtree(target)
        if args.baselines == "around" and (writer, fmt, workers) != runs[-1]:
            run_baseline("baseline between")
    run_baseline("baseline again")
    for row in rows:
        row["dataset"] = dataset
        row["records_per_s"] = row["read"] / row["seconds"]
    baselines = [r for r in rows if r["run"].startswith("baseline")]
    overall = sum(r["records_per_s"] for r in baselines) / len(baselines)  # their mean records/s
    for i, row in enumerate(rows):
        if row["run"].startswith("baseline"):
            row["vs_baseline"] = row["records_per_s"] / overall
            continue
        # the baselines just before and just after this run (with --baselines ends: the first and the last)
        before = next(r for r in reversed(rows[:i]) if r["run"].startswith("baseline"))
        after = next(r for r in rows[i + 1 :] if r["run"].startswith("baseline"))
        row["vs_baseline"] = row["records_per_s"] / ((before["records_per_s"] + after["records_per_s"]) / 2)
    return rows


def _warm(folder: Path) -> None:
    """Read every input file once."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def _check(result: dict[str, Any], log: Path) -> None:
    if result["returncode"] != 0:
        sys.exit(f"command failed ({result['returncode']}); see {log}:\n{log.read_text()[-3000:]}")


# --- machine and report --------------------------------------------------------------------------------


def _spin(n: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - started


def parallel_capacity() -> float:
    """How many cores' worth of pure-Python work two processes get right now (2.0 on an idle 2-core box)."""
    n = 4_000_000
    one = min(_spin(n) for _ in range(2))
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(2) as pool:
        started = time.perf_counter()
        pool.map(_spin, [n, n])
        both = time.perf_counter() - started
    return 2 * one / both


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    import pyarrow

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "os": platform.platform(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()],
        "parallel_capacity_start": round(parallel_capacity(), 2),
    }


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f}"


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gb']} GB RAM, "
        f"Python {m['python']}, pyarrow {m['pyarrow']}, {m['os']}.  ",
        f"Load average at start {m['load_avg_start']}, end {m.get('load_avg_end')}; two processes got "
        f"{m['parallel_capacity_start']}× one core's pure-Python speed at start, "
        f"{m.get('parallel_capacity_end')}× at end (2.0 = two free cores).  ",
        f"Writers `{', '.join(report['writers'])}` × formats `{', '.join(report['formats'])}` on GRIT, the first of "
        f"each on VG and Flickr; tasks `{report['tasks'] or 'writer default'}`; scale {report['scale']}.",
        "",
        "records/s = input records read (GRIT rows, VG regions, Flickr captions) ÷ wall seconds of the "
        "whole command; the baseline reads the same files with the same parsers and writes the records "
        "unconverted as zstd Parquet, "
        + (
            'before, between and after the conversions; a conversion\'s "vs baseline" is relative to the mean of '
            "the baselines run just before and just after it (a baseline's, to the mean of all baselines)."
            if report.get("baselines", "ends") == "around"
            else 'once before and once after the conversions; "vs baseline" is relative to the mean of the two.'
        ),
        "",
        "| dataset | input | run | input records | output records | wall s | records/s | vs baseline "
        "| CPU s | peak RSS tree MB | peak RSS process MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        info = report["inputs"][row["dataset"]]
        size = f"{info['bytes'] / 2**20:,.0f} MB, {info['files']:,} files"
        lines.append(
            f"| {row['dataset']} | {size} | {row['run']} | {row['read']:,} | "
            f"{'' if row['records'] is None else format(row['records'], ',')} | {row['seconds']:.1f} | "
            f"{row['records_per_s']:,.0f} | {row['vs_baseline']:.0%} | {row['cpu_seconds']:.1f} | "
            f"{_mb(row['peak_rss_tree'])} | {_mb(row['peak_rss_process'])} |"
        )
    if report.get("targets"):
        lines += ["", "Targets:", ""]
        lines += [f"- {'PASS' if ok else 'MISS'}: {text}" for text, ok in report["targets"]]
    lines += [
        "",
        "Input generation: "
        + "; ".join(
            f"{name} {info['seconds']}s{' (reused)' if info.get('reused') else ''}"
            for name, info in report["inputs"].items()
        )
        + f".  Total wall time {report['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


FLOORS = {"grit": 0.5, "visual-genome": 0.4, "flickr30k-entities": 0.6}  # issue 13: ratio to the bare baseline


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """Issue 13's floors: every conversion at the most workers against its dataset's floor; the first
    writer/format's scaling from one worker to two; peak RSS under 1 GB everywhere."""
    found = []
    converts = [r for r in rows if r["run"].startswith("convert")]
    top = max((r["workers"] for r in converts), default=0)
    for row in converts:
        if row["workers"] == top:
            floor = FLOORS[row["dataset"]]
            found.append(
                (f"{row['dataset']} {row['run']} at {row['vs_baseline']:.2f} of the baseline (≥ {floor})",
                 row["vs_baseline"] >= floor)
            )  # fmt: skip
    for dataset in dict.fromkeys(r["dataset"] for r in converts):
        mine = [r for r in converts if r["dataset"] == dataset]
        one = next((r for r in mine if r["workers"] == 1), None)
        two = next((r for r in mine if r["workers"] == 2 and (one is None or r["writer"] == one["writer"]
                                                              and r["format"] == one["format"])), None)  # fmt: skip
        if one and two:
            ratio = two["records_per_s"] / one["records_per_s"]
            found.append((f"{dataset} {two['run']} is {ratio:.2f}× -w1 (≥ 1.7×)", ratio >= 1.7))
        peak = max(r["peak_rss_tree"] for r in mine)
        found.append((f"{dataset} convert peak RSS (tree) {peak / 2**20:,.0f} MB (< 1024 MB)", peak < 2**30))
    return found


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", "--sizes", type=float, default=1.0, help="size factor (1.0 = 1M/1M/30k)")
    parser.add_argument(
        "--datasets",
        default="grit,visual-genome,flickr30k-entities",
        help="comma list of grit, visual-genome, flickr30k-entities",
    )
    parser.add_argument("--workdir", default=os.environ.get("GROUNDING_BENCH_DIR", "/tmp/grounding-convert-bench"))
    parser.add_argument("--out", help="write the table here (.json → JSON, anything else → markdown)")
    parser.add_argument("--keep", action="store_true", help="keep inputs (reused next time) and outputs")
    parser.add_argument(
        "--writers", "--writer", default="qwen-vl,ofa,kosmos-2,cogvlm", help="GRIT runs each; VG/Flickr the first"
    )
    parser.add_argument("--formats", default="parquet,jsonl", help="GRIT runs each; VG/Flickr the first")
    parser.add_argument("--tasks", default=None, help="comma list (default: the writer's own tasks)")
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts to run")
    parser.add_argument(
        "--baselines",
        choices=("around", "ends"),
        default="around",
        help="a baseline between every two conversions, each compared with its neighbours (around), or only "
        "before the first and after the last, each compared with their mean (ends)",
    )
    parser.add_argument("--baseline-of", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_of:
        count = baseline(args.baseline_of, Path(args.input), Path(args.baseline_out))
        (Path(args.baseline_out) / "count").write_text(str(count))
        return
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(datasets) - set(FULL_SIZE)
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(sorted(unknown))} (have {', '.join(FULL_SIZE)})")
    args.workers = [int(w) for w in args.workers.split(",")]
    args.writers = [w.strip() for w in args.writers.split(",") if w.strip()]
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "writers": args.writers,
        "formats": args.formats,
        "tasks": args.tasks,
        "scale": args.scale,
        "baselines": args.baselines,
        "inputs": {},
        "rows": [],
    }
    try:
        for dataset in datasets:
            print(f"[bench] {dataset}: generating input ...", file=sys.stderr, flush=True)
            info = generate_input(dataset, work, args.scale)
            report["inputs"][dataset] = info
            print(
                f"[bench] {dataset}: {info['counts']} in {info['seconds']}s; running ...",
                file=sys.stderr,
                flush=True,
            )
            rows = run_dataset(dataset, info, work, args)
            report["rows"] += rows
            for row in rows:
                print(
                    f"[bench]   {row['run']}: {row['read']:,} in {row['seconds']:.1f}s = "
                    f"{row['records_per_s']:,.0f}/s, RSS {_mb(row['peak_rss_tree'])} MB",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["machine"]["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["machine"]["parallel_capacity_end"] = round(parallel_capacity(), 2)
    report["targets"] = targets(report["rows"])
    report["seconds"] = time.perf_counter() - started
    text = render_markdown(report)
    print(text)
    if args.out:
        out = Path(args.out)
        if out.suffix == ".json":
            out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        else:
            out.write_text(text)


if __name__ == "__main__":
    main()
