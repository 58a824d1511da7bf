"""The dataset card (``README.md``) of an output directory.

Its YAML header lets ``datasets.load_dataset(output_dir)`` load the shards unchanged (and the Hub
viewer show them); its body says where the data came from, with which options, how many records per
split and task, what was rejected and why, the box-size and text-length distributions, an example
record per task and how to load it.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from .. import __version__
from ..engine.tally import AREA_BUCKETS, REGION_BUCKETS, WORD_BUCKETS, Tally, bucket

LOADERS = {"parquet": "parquet", "jsonl": "json", "json": "json"}

# Where each source dataset comes from and under which terms (SOURCES.md); cite the originals.
SOURCES = {
    "flickr30k-entities": "Flickr30K Entities (Plummer et al., IJCV 2017; github.com/BryanPlummer/flickr30k_entities); "
    "captions from Flickr30K (Young et al., TACL 2014); images under Flickr terms, research use.",
    "visual-genome": "Visual Genome (Krishna et al., IJCV 2017; visualgenome.org), CC BY 4.0.",
    "refcoco": "RefCOCO (Yu et al., ECCV 2016) via the refer toolkit (github.com/lichengunc/refer); COCO "
    "annotations CC BY 4.0.",
    "refcoco+": "RefCOCO+ (Yu et al., ECCV 2016) via the refer toolkit; COCO annotations CC BY 4.0.",
    "refcocog": "RefCOCOg (Mao et al., CVPR 2016; umd split Nagaraja et al., ECCV 2016) via the refer toolkit.",
    "visual7w": "Visual7W (Zhu et al., CVPR 2016; github.com/yukezhu/visual7w-toolkit), part of Visual Genome.",
    "grit": "GRIT / GrIT-20M (Peng et al., KOSMOS-2, 2023; huggingface.co/datasets/zzliang/GRIT), MS-PL.",
}


LAYOUT_NAMES = {"llamafactory": "LLaMA-Factory's sharegpt layout", "ms-swift": "ms-swift's layout"}


def _spelled(identity: dict[str, Any]) -> str:
    """How the boxes reached the records: the writer's spelling, in the trainer layout the options name."""
    writer = identity["writer"]
    layout = (identity.get("writer_options") or {}).get("layout", "native")
    if layout == "ms-swift-objects":
        return (
            "written unrounded into ms-swift's `objects` column (`bbox_type: real`), with `<ref-object>`/`<bbox>` "
            f"placeholders in the text, for ms-swift to spell as `{writer}` at training time"
        )
    spelled = f"spelled as `{writer}` does"
    if layout == "native":
        return spelled
    return f"{spelled}, in {LAYOUT_NAMES.get(layout, layout)} (`messages` + `images`)"


def render_card(job: dict[str, Any], tally: Tally, shards: list[dict[str, Any]]) -> str:
    identity = job["identity"]
    fmt = identity["format"]
    splits = sorted({s["split"] for s in shards})
    header: dict[str, Any] = {
        "pretty_name": f"{identity['reader']} → {identity['writer']} ({', '.join(identity['tasks'])})",
        "tags": ["visual-grounding", "grounding-convert", identity["writer"]],
    }
    if fmt in LOADERS and splits:
        header["configs"] = [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits],
            }
        ]
    parts = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(), "---", ""]
    parts += [
        f"# {identity['reader']} → {identity['writer']}",
        "",
        f"Made by `grounding-convert` {__version__} from `{identity['input']}` with reader "
        f"`{identity['reader']}` and writer `{identity['writer']}`, tasks {', '.join(identity['tasks'])}, "
        f"format {fmt}. Every input record is accounted for: read = written + rejected + filtered "
        f"({tally.read:,} = {tally.written:,} + {tally.rejected:,} + {tally.filtered:,}).",
        "",
        "## Source",
        "",
        SOURCES.get(identity["reader"], f"Read with the `{identity['reader']}` reader plugin."),
        "Boxes were converted to the canonical convention (absolute pixels of the original image, 0-based "
        f"`[x1, y1, x2, y2]`) and then {_spelled(identity)}; "
        "`grounding-convert validate --source` re-checks that every decoded box is within one quantization step.",
        "",
        "## Options",
        "",
        "```yaml",
        yaml.safe_dump(identity, sort_keys=True, allow_unicode=True).strip(),
        "```",
        "",
        "## Counts per split",
        "",
        *_split_table(tally),
        "",
        *_reason_tables(tally),
        "## Distributions",
        "",
        *_histogram("Words per text", tally.text_words, WORD_BUCKETS),
        *_histogram("Box area / image area", tally.box_area, AREA_BUCKETS),
        *_histogram("Regions per sample", tally.regions_per_sample, REGION_BUCKETS),
        "## Example record per task",
        "",
    ]
    for task in sorted(tally.examples):
        parts += [f"### {task}", "", "```json", _example_json(tally.examples[task]), "```", ""]
    parts += ["## How to load", "", *_how_to_load(fmt, splits), ""]
    parts += ["## Files", "", "| split | shard | records | bytes |", "|---|---|---:|---:|"]
    parts += [f"| {s['split']} | `{s['file']}` | {s['records']:,} | {s['bytes']:,} |" for s in shards]
    return "\n".join(parts) + "\n"


def _split_table(tally: Tally) -> list[str]:
    tasks = sorted({t for c in tally.records.values() for t in c})
    head = "| split | read | written | rejected | filtered | " + " | ".join(f"{t} records" for t in tasks) + " |"
    rows = [head, "|---" * (5 + len(tasks)) + "|"]
    for split in sorted(tally.splits):
        c = tally.splits[split]
        recs = tally.records.get(split, {})
        rows.append(
            f"| {split} | {c['read']:,} | {c['written']:,} | {c['rejected']:,} | {c['filtered']:,} | "
            + " | ".join(f"{recs.get(t, 0):,}" for t in tasks)
            + " |"
        )
    return rows


def _reason_tables(tally: Tally) -> list[str]:
    out: list[str] = []
    for title, counter in (
        ("Rejected (see `rejects/`)", tally.reject_reasons),
        ("Filtered", tally.filter_reasons),
        ("Notes: repairs and observations", tally.notes),
    ):
        if counter:
            out += [f"## {title}", "", "| reason | count |", "|---|---:|"]
            out += [f"| {k} | {v:,} |" for k, v in sorted(counter.items())]
            out.append("")
    return out


def _histogram(title: str, counter: dict[str, int], edges: tuple[float, ...]) -> list[str]:
    labels = [bucket(e, edges) for e in edges] + [f">{edges[-1]:g}"]
    total = sum(counter.values()) or 1
    rows = [f"**{title}**", "", "| bucket | count | share |", "|---|---:|---:|"]
    rows += [f"| {lab} | {counter.get(lab, 0):,} | {counter.get(lab, 0) / total:.1%} |" for lab in labels]
    return rows + [""]


def _example_json(record: dict[str, Any], limit: int = 300) -> str:
    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            return value[:limit] + f"… ({len(value)} chars)"
        if isinstance(value, list):
            return [shorten(v) for v in value]
        if isinstance(value, dict):
            return {k: shorten(v) for k, v in value.items()}
        return value

    return orjson.dumps(shorten(record), option=orjson.OPT_INDENT_2).decode()


def _how_to_load(fmt: str, splits: list[str]) -> list[str]:
    if fmt in LOADERS:
        first = splits[0] if splits else "train"
        lines = [
            "```python",
            "from datasets import load_dataset",
            "",
            "ds = load_dataset('path/to/this/folder')  # reads the YAML header above",
            f"print(ds['{first}'][0])",
            "```",
        ]
        if fmt == "json":
            lines += [
                "",
                "Each shard is one JSON array, as trainers that `json.load` their data file expect (Qwen-VL "
                f"`finetune.py --data_path data/{first}-00000-of-00001.json`).",
            ]
        return lines
    return [
        "OFA's own TSV, one file set per task (`data/rec-<split>-…tsv`, `data/reg-…`, `data/grounded-caption-…`), "
        "no header. REC and REG rows: uniq_id, image_id, text, region_coord, base64 image (OFA "
        "`run_scripts/refcoco/train_refcoco.sh` reads them with `selected_cols=0,4,2,3`); grounded-caption rows: "
        "uniq_id, image_id, caption, (unused), base64 image (`run_scripts/caption/*.sh`: `selected_cols=0,4,2`).",
        "",
        "```bash",
        "data=out/data/rec-train-00000-of-00001.tsv,out/data/rec-validation-00000-of-00001.tsv",
        "```",
    ]
