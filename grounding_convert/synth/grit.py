"""Synthetic GRIT in its three native layouts (SOURCES §5), since no real shard is at hand.

* ``parquet``: ``coyo_<i>_snappy.parquet`` shards, offsets as float64 inside ``list<list<float64>>``;
* ``jsonl``: one ``grit_coyo.jsonl`` with int offsets, as the README prints them;
* ``img2dataset``: webdataset ``00000.tar`` (``<key>.jpg/.txt/.json``, tiny real JPEGs at the resized size)
  plus ``00000.parquet`` holding every row with ``status`` (some failed) and ``00000_stats.json``.

Captions are noun phrases joined by connectors; some spans get two boxes (same ``(start, end)``), a few
boxes poke slightly outside [0, 1] (``clipped``), and confidences spread over [0.25, 1) so that
``--min-score`` has something to drop.  The returned counts are what a reader should report by default.
"""

from __future__ import annotations

import io
import math
import random
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .images import jpeg_bytes

PHRASES = [
    "a wire hanger", "a paper cover", "the red car", "two dogs", "a wooden table", "an old man",
    "the blue sky", "a small cat", "the kitchen counter", "a tall building", "a plate of food",
    "the green field",
]  # fmt: skip
CONNECTORS = ["with", "next to", "on", "under", "that reads", "beside", "near"]
FAILED = {
    "status": "failed_to_download", "error_message": "HTTP Error 404: Not Found", "width": None,
    "height": None, "original_width": None, "original_height": None, "exif": None, "sha256": None,
}  # fmt: skip
CHUNKS = pa.list_(pa.list_(pa.float64()))
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("clip_similarity_vitb32", pa.float64()),
        ("clip_similarity_vitl14", pa.float64()),
        ("id", pa.int64()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("noun_chunks", CHUNKS),
        ("ref_exps", CHUNKS),
    ]
)
DOWNLOAD_COLUMNS = [
    ("url", pa.string()), ("caption", pa.string()), ("id", pa.int64()), ("noun_chunks", CHUNKS),
    ("ref_exps", CHUNKS), ("clip_similarity_vitb32", pa.float64()), ("clip_similarity_vitl14", pa.float64()),
    ("key", pa.string()), ("status", pa.string()), ("error_message", pa.string()), ("width", pa.int64()),
    ("height", pa.int64()), ("original_width", pa.int64()), ("original_height", pa.int64()),
    ("exif", pa.string()), ("sha256", pa.string()),
]  # fmt: skip


def make_record(rng: random.Random, index: int, record_id: int) -> dict[str, Any]:
    """One GRIT record with int offsets (the README spelling)."""
    phrases = rng.sample(PHRASES, rng.randrange(2, 4))
    caption, starts = "", []
    for i, phrase in enumerate(phrases):
        if i:
            caption += f" {rng.choice(CONNECTORS)} "
        starts.append(len(caption))
        caption += phrase
    noun_chunks, ref_exps = [], []
    for start, phrase in zip(starts, phrases, strict=True):
        end = start + len(phrase)
        ref_end = len(caption) if rng.random() < 0.7 else end  # "no expansion: we just copy it"
        for _ in range(2 if rng.random() < 0.15 else 1):  # same span, several boxes
            box = _box(rng)
            score = round(rng.uniform(0.25, 0.99), 6)
            noun_chunks.append([start, end, *box, score])
            ref_exps.append([start, ref_end, *box, score])
    return {
        "key": f"{index:09d}",
        "clip_similarity_vitb32": round(rng.uniform(0.25, 0.4), 6),
        "clip_similarity_vitl14": round(rng.uniform(0.2, 0.35), 6),
        "id": record_id,
        "url": f"https://images.example.com/{record_id}/photo.jpg",
        "caption": caption,
        "width": rng.randrange(200, 1200),
        "height": rng.randrange(200, 1200),
        "noun_chunks": noun_chunks,
        "ref_exps": ref_exps,
    }


def _box(rng: random.Random) -> list[float]:
    x1, y1 = rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.6)
    x2, y2 = rng.uniform(x1 + 0.1, 1.0), rng.uniform(y1 + 0.1, 1.0)
    if rng.random() < 0.04:
        x1, y2 = -rng.uniform(0.0005, 0.004), 1.0 + rng.uniform(0.0005, 0.004)  # slightly outside [0, 1]
    return [x1, y1, x2, y2]


def record_counts(record: dict[str, Any]) -> dict[str, int]:
    """What a reader yields for one record under default options, per span kind."""
    counts = {}
    for name, field in (("noun_chunks", "noun_chunks"), ("ref_exps", "ref_exps")):
        chunks = record[field]
        counts[f"regions_{name}"] = len({(c[0], c[1]) for c in chunks})
        counts[f"boxes_{name}"] = len(chunks)
        counts[f"clipped_{name}"] = sum(any(not 0.0 <= v <= 1.0 for v in c[2:6]) for c in chunks)
    return counts


def generate(
    output: Path,
    images: int,
    seed: int,
    layout: str = "parquet",
    shards: int | None = None,
    row_group_size: int = 1000,
    samples_per_shard: int = 200,
    image_size: int = 32,
    fail_rate: float = 0.1,
    **_: Any,
) -> dict[str, int]:
    """Write ``images`` GRIT records in ``layout``; return records/samples/regions/boxes/... counts."""
    rng = random.Random(seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    records = [make_record(rng, i, 1_000_000_000_000 + i * 7919 + rng.randrange(7919)) for i in range(images)]
    if layout == "parquet":
        count = max(1, shards or math.ceil(images / 5000))
        per = math.ceil(images / count) if images else 0
        for shard in range(count):
            rows = [_float_offsets(r) for r in records[shard * per : (shard + 1) * per]]
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            path = output / f"coyo_{shard}_snappy.parquet"
            pq.write_table(table, path, compression="snappy", row_group_size=max(1, row_group_size))
        return _totals(records, records)
    if layout == "jsonl":
        with open(output / "grit_coyo.jsonl", "wb") as f:
            for record in records:
                f.write(orjson.dumps(record) + b"\n")
        return _totals(records, records)
    if layout == "img2dataset":
        kept = _write_img2dataset(output, records, rng, samples_per_shard, image_size, fail_rate)
        return _totals(records, kept)
    raise ValueError(f"unknown GRIT layout {layout!r} (parquet, jsonl, img2dataset)")


def _float_offsets(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for field in ("noun_chunks", "ref_exps"):
        out[field] = [[float(v) for v in chunk] for chunk in record[field]]
    return out


def _totals(records: list[dict[str, Any]], kept: list[dict[str, Any]]) -> dict[str, int]:
    totals = {"records": len(records), "samples": len(kept), "failed": len(records) - len(kept)}
    for record in kept:
        for name, value in record_counts(record).items():
            totals[name] = totals.get(name, 0) + value
    for name in ("regions", "boxes", "clipped"):
        totals[name] = totals.get(f"{name}_noun_chunks", 0)
    totals["images"] = len(kept)
    return totals


def _resized(width: int, height: int, size: int) -> tuple[int, int]:
    """img2dataset ``keep_ratio`` + ``resize_only_if_bigger``: the smaller side becomes ``size``."""
    small = min(width, height)
    if small <= size:
        return width, height
    scale = size / small
    return max(1, round(width * scale)), max(1, round(height * scale))


def _write_img2dataset(output, records, rng, per_shard, image_size, fail_rate) -> list[dict[str, Any]]:
    kept = []
    per_shard = max(1, per_shard)
    for shard in range(math.ceil(len(records) / per_shard)):
        rows, stats = [], {"count": 0, "successes": 0, "failed_to_download": 0, "failed_to_resize": 0}
        with tarfile.open(output / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for index, record in enumerate(records[shard * per_shard : (shard + 1) * per_shard]):
                key = f"{shard:05d}{index:04d}"
                source = _float_offsets(record)
                row = {
                    "url": record["url"], "caption": record["caption"], "id": record["id"],
                    "noun_chunks": source["noun_chunks"], "ref_exps": source["ref_exps"],
                    "clip_similarity_vitb32": record["clip_similarity_vitb32"],
                    "clip_similarity_vitl14": record["clip_similarity_vitl14"], "key": key,
                }  # fmt: skip
                stats["count"] += 1
                if rng.random() < fail_rate:
                    row.update(FAILED)
                    stats["failed_to_download"] += 1
                    rows.append(row)
                    continue
                width, height = _resized(record["width"], record["height"], image_size)
                row.update(status="success", error_message=None, width=width, height=height, exif="{}")
                row.update(original_width=record["width"], original_height=record["height"])
                chunks = record["noun_chunks"]
                pixel = [[c[2] * width, c[3] * height, c[4] * width, c[5] * height] for c in chunks]
                image = jpeg_bytes(width, height, pixel, seed=record["id"] % 1000)
                row["sha256"] = f"{record['id']:064x}"[-64:]
                _add(tar, f"{key}.jpg", image)
                _add(tar, f"{key}.json", orjson.dumps(row))
                _add(tar, f"{key}.txt", record["caption"].encode())
                stats["successes"] += 1
                rows.append(row)
                kept.append({**record, "width": width, "height": height})
        table = pa.Table.from_pylist(rows, schema=pa.schema(DOWNLOAD_COLUMNS))
        pq.write_table(table, output / f"{shard:05d}.parquet", compression="snappy")
        (output / f"{shard:05d}_stats.json").write_bytes(orjson.dumps(stats, option=orjson.OPT_INDENT_2))
    return kept


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))
