"""``grounding-convert inspect``: describe a dataset through its reader, without converting it."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from ..tools.inspect import PROBLEMS, InspectReport, inspect
from .common import parse_pairs, reported_errors
from .options import (
    AnnotationsKind,
    Examples,
    FromReader,
    ImageRoot,
    Limit,
    MinScore,
    ReaderOption,
    Spans,
    Split,
    SplitBy,
    TextKind,
    VgImageData,
    reader_flags,
)

Opt = typer.Option


def inspect_command(
    input: Annotated[str, typer.Argument(help="Dataset folder or file as published.")],
    from_: FromReader = None,
    split: Split = None,
    split_by: SplitBy = None,
    annotations: AnnotationsKind = None,
    text: TextKind = None,
    spans: Spans = None,
    min_score: MinScore = None,
    image_root: ImageRoot = None,
    vg_image_data: VgImageData = None,
    reader_option: ReaderOption = None,
    limit: Limit = None,
    examples: Examples = 3,
    json: Annotated[bool, Opt("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Samples per split, box and phrase statistics, rejects, repairs and problems of a dataset."""
    with reported_errors():
        options: dict[str, Any] = parse_pairs(reader_option, "-O")
        flags = reader_flags(split, split_by, annotations, text, spans, min_score, image_root, vg_image_data)
        options.update({k: v for k, v in flags.items() if v is not None})
        report = inspect(input, from_, options, limit=limit, examples=examples)
        if json:
            typer.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
        else:
            print_report(report)


def _counts(values: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in values.items()) or "none"


def _share(part: int, whole: int) -> str:
    return f" ({part / whole:.1%})" if whole else ""


def print_report(r: InspectReport) -> None:
    echo = typer.echo
    echo(
        f"{r.input} read with {r.reader} ({r.partitions} partition(s))"
        + (" — plan only (--limit 0): nothing read" if r.limited and not r.samples and not r.rejected else "")
        + (" — stopped at --limit" if r.limited and (r.samples or r.rejected) else "")
    )
    echo(f"samples   {r.samples:,}  by split: {_counts(r.samples_per_split)}")
    echo(
        f"regions   {r.regions:,}  ({r.regions / r.samples:.2f} per sample)"
        if r.samples
        else f"regions   {r.regions:,}"
    )
    if set(r.regions_by_role) - {"region"}:
        echo(f"          by role: {_counts(r.regions_by_role)}")
    echo(f"boxes     {r.boxes:,}")
    echo(f"boxes per region:     {_counts(r.boxes_per_region)}")
    echo(f"phrase length, words: {_counts(r.phrase_words)}")
    echo(f"rejected  {r.rejected:,}{_share(r.rejected, r.rejected + r.samples)}  {_counts(r.rejects)}")
    for message in r.reject_examples[:5]:
        typer.secho(f"    {message}", fg=typer.colors.RED)
    echo(f"filtered  {r.filtered:,}  {_counts(r.filters)}")
    echo(f"repairs   {_counts(r.repairs)}")
    if not r.problems:
        typer.secho("problems  none", fg=typer.colors.GREEN)
    else:
        echo("problems")
        for kind, count in r.problems.items():
            echo(f"  {kind:<22} {count:>9,}  {PROBLEMS[kind]}")
            for example in r.problem_examples.get(kind, []):
                echo(f"      e.g. {example}")
    for sample in r.examples:
        image = sample["image"]
        echo(f"\nexample {sample['id']} [{sample['split']}] {image['file']} {image['width']}x{image['height']}")
        echo(f"  text: {sample['text']}" + (f"  answer: {sample['answer']}" if sample.get("answer") else ""))
        for region in sample["regions"][:8]:
            boxes = " ".join("[" + ", ".join(f"{v:g}" for v in b) + "]" for b in region["boxes"][:4])
            more = f" +{len(region['boxes']) - 4}" if len(region["boxes"]) > 4 else ""
            role = f" ({region['role']})" if region.get("role") else ""
            echo(f"  - {region['phrase']!r}{role} span {region['span']}: {boxes or 'no box'}{more}")
        if len(sample["regions"]) > 8:
            echo(f"  … {len(sample['regions']) - 8} more region(s)")
