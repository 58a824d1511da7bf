"""``grounding-convert convert``: the main job."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from ..engine.runner import RunOptions, convert, localize_input, make_job
from ..errors import UsageError
from ..output.shards import FORMATS
from ..plugins import detect_reader, get_reader, get_writer
from .common import parse_pairs, reported_errors
from .options import (
    AnnotationsKind,
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
from .summary import print_summary

READER_FLAGS = ("split_by", "annotations", "text", "spans", "min_score", "image_root", "vg_image_data")
WRITER_FLAGS = ("image_prefix", "template_file", "language", "embed_images", "image_root") + (
    "layout",
    "resize_profile",
    "min_pixels",
    "max_pixels",
    "factor",
    "box_format",
    "max_coord",
    "odvg_dialect",
    "label_map",
)

Opt = typer.Option


def route_options(
    reader: str, writer: str, flags: dict[str, object], extra_reader: dict, extra_writer: dict
) -> tuple[dict, dict]:
    """Send each named flag to the plugin(s) whose Options have that field; refuse flags nobody takes."""
    reader_fields = {f.name for f in dataclasses.fields(get_reader(reader).Options)}
    writer_fields = {f.name for f in dataclasses.fields(get_writer(writer).Options)}
    reader_opts, writer_opts = dict(extra_reader), dict(extra_writer)
    for name, value in flags.items():
        if value is None or value is False:
            continue
        taken = False
        if name in reader_fields and name in READER_FLAGS + ("split",):
            reader_opts[name] = value
            taken = True
        if name in writer_fields and name in WRITER_FLAGS:
            writer_opts[name] = value
            taken = True
        if not taken:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to reader {reader!r} or writer {writer!r}")
    return reader_opts, writer_opts


def convert_command(
    to: Annotated[str, Opt("--to", "-t", help="Writer: qwen-vl, ofa, kosmos-2, cogvlm, canonical.")],
    input: Annotated[str, Opt("--input", "-i", help="Dataset folder or file as published (or an fsspec URL).")],
    output: Annotated[str, Opt("--output", "-o", help="Output directory (or fsspec URL).")],
    from_: FromReader = None,
    format: Annotated[
        str, Opt("--format", help=f"Shard format: {', '.join(FORMATS)} (json: one array per shard; tsv: ofa only).")
    ] = "parquet",
    tasks: Annotated[
        str | None, Opt(help="Comma list of rec, reg, grounded-caption, pointing (default: all the writer has).")
    ] = None,
    split: Split = None,
    limit: Limit = None,
    seed: Annotated[int, Opt(help="Seed of the template choice (per record id).")] = 0,
    workers: Annotated[int, Opt(help="Processes (local engine) or CPUs (ray).")] = 1,
    overwrite: Annotated[bool, Opt(help="Replace a non-empty output directory.")] = False,
    resume: Annotated[
        bool, Opt(help="Skip partitions already committed by an earlier run with the same options.")
    ] = False,
    strict: Annotated[bool, Opt(help="Stop at the first bad record (exit 1).")] = False,
    max_rejects: Annotated[str | None, Opt(help="Stop when more than N records (or P%) are rejected.")] = None,
    engine: Annotated[str, Opt(help="local (process pool) or ray.")] = "local",
    num_workers: Annotated[int, Opt(help="Cluster slicing: total number of array tasks.")] = 1,
    worker_index: Annotated[int, Opt(help="Cluster slicing: this task's index (e.g. $SLURM_ARRAY_TASK_ID).")] = 0,
    max_records_per_shard: Annotated[int, Opt(help="Rotate shards after this many records.")] = 100_000,
    max_shard_bytes: Annotated[int, Opt(help="Rotate shards after about this many bytes.")] = 512 * 1024 * 1024,
    split_by: SplitBy = None,
    annotations: AnnotationsKind = None,
    text: TextKind = None,
    spans: Spans = None,
    min_score: MinScore = None,
    image_root: ImageRoot = None,
    vg_image_data: VgImageData = None,
    image_prefix: Annotated[str | None, Opt(help="Root or URL written in front of image paths in records.")] = None,
    template_file: Annotated[str | None, Opt(help="Your own template YAML for the writer.")] = None,
    language: Annotated[str | None, Opt(help="Template language: en, zh or mixed.")] = None,
    embed_images: Annotated[bool, Opt(help="Kept for old scripts: --format tsv always embeds the images.")] = False,
    turns: Annotated[
        int, Opt(help="qwen-vl, cogvlm: pack up to N records of one image and task into one conversation.")
    ] = 1,
    layout: Annotated[
        str | None, Opt(help="Conversation writers: native, llamafactory (+ dataset_info.json) or ms-swift records.")
    ] = None,
    resize_profile: Annotated[
        str | None,
        Opt(help="qwen2.5-vl: trainer resize defaults: hf, qwen-finetune, qwen-sft-script, ms-swift, llamafactory."),
    ] = None,
    min_pixels: Annotated[int | None, Opt(help="qwen2.5-vl: smart_resize min_pixels (with --max-pixels).")] = None,
    max_pixels: Annotated[int | None, Opt(help="qwen2.5-vl: smart_resize max_pixels (with --min-pixels).")] = None,
    factor: Annotated[int | None, Opt(help="qwen2.5-vl: smart_resize factor (default 28).")] = None,
    box_format: Annotated[str | None, Opt(help="qwen2.5-vl / qwen3-vl: json (default) or tokens.")] = None,
    max_coord: Annotated[str | None, Opt(help="qwen3-vl: 1000 (default) or 999.")] = None,
    odvg_dialect: Annotated[str | None, Opt(help="odvg: mmdet (default) or open-groundingdino.")] = None,
    label_map: Annotated[str | None, Opt(help='odvg detection: label map JSON {"0": "name", ...}.')] = None,
    reader_option: ReaderOption = None,
    writer_option: Annotated[
        list[str] | None, Opt("--writer-option", "-W", help="Any writer option KEY=VALUE.")
    ] = None,
    quiet: Annotated[bool, Opt(help="No progress bar.")] = False,
) -> None:
    """Convert a dataset into a model's training records, as sharded Parquet/JSONL, with a summary."""
    with reported_errors():
        reader = from_ or detect_reader(localize_input(input))
        flags = reader_flags(split, split_by, annotations, text, spans, min_score, image_root, vg_image_data)
        flags |= {
            "image_prefix": image_prefix,
            "template_file": template_file,
            "language": language,
            "embed_images": embed_images,
            "layout": layout,
            "resize_profile": resize_profile,
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "factor": factor,
            "box_format": box_format,
            "max_coord": max_coord,
            "odvg_dialect": odvg_dialect,
            "label_map": label_map,
        }
        reader_opts, writer_opts = route_options(
            reader, to, flags, parse_pairs(reader_option, "-O"), parse_pairs(writer_option, "-W")
        )
        job = make_job(
            input=input,
            output=output,
            writer=to,
            reader=reader,
            tasks=[t.strip() for t in tasks.split(",") if t.strip()] if tasks else None,
            format=format,
            seed=seed,
            reader_options=reader_opts,
            writer_options=writer_opts,
            max_records_per_shard=max_records_per_shard,
            max_shard_bytes=max_shard_bytes,
            strict=strict,
            max_rejects=max_rejects,
            limit=limit,
            turns=turns,
            image_root=image_root if format == "tsv" else None,
        )
        typer.echo(
            f"{job.reader} → {job.writer} [{', '.join(job.tasks)}] as {job.format}: {input} → {output}", err=True
        )
        result = convert(
            job,
            RunOptions(
                workers=workers,
                engine=engine,
                overwrite=overwrite,
                resume=resume,
                num_workers=num_workers,
                worker_index=worker_index,
                progress=not quiet,
            ),
        )
        print_summary(result, output)
