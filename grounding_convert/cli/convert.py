"""``grounding-convert convert``: the main job.

The flags are parsed and range-checked here (:mod:`.options`); the job itself is
:func:`grounding_convert.api.prepare` + :meth:`~grounding_convert.api.Conversion.execute`, the very calls
``grounding_convert.convert()`` makes, so the CLI and the Python API share defaults, checks and messages.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..api import ConvertOptions, prepare
from ..engine.checks import ENGINES
from ..option_types import (
    MAX_REJECTS,
    NUM_WORKERS,
    PIXELS,
    SHARD_BYTES,
    SHARD_RECORDS,
    TURNS,
    WORKER_INDEX,
    WORKERS,
    Choice,
)
from ..output.shards import FORMATS
from .common import parse_pairs, reported_errors
from .options import (
    AnnotationsKind,
    FromReader,
    ImageRoot,
    Limit,
    MinScore,
    ReaderOption,
    Seed,
    Spans,
    Split,
    SplitBy,
    TextKind,
    VgImageData,
    checked,
)
from .summary import print_summary

Opt = typer.Option
D = ConvertOptions  # the defaults, shared with grounding_convert.convert()


def convert_command(
    to: Annotated[str, Opt("--to", "-t", help="Writer: qwen-vl, ofa, kosmos-2, cogvlm, canonical.")],
    input: Annotated[str, Opt("--input", "-i", help="Dataset folder or file as published (or an fsspec URL).")],
    output: Annotated[str, Opt("--output", "-o", help="Output directory (or fsspec URL).")],
    from_: FromReader = None,
    format: Annotated[
        str,
        checked(Choice(FORMATS), help="Shard format (json: one array per shard; tsv: ofa only).", metavar="FORMAT"),
    ] = D.format,
    tasks: Annotated[
        str | None, Opt(help="Comma list of rec, reg, grounded-caption, pointing (default: all the writer has).")
    ] = None,
    split: Split = None,
    limit: Limit = None,
    seed: Seed = D.seed,
    workers: Annotated[
        int, checked(WORKERS, help="Processes (local engine) or CPUs (ray); auto = os CPUs available.", metavar="N")
    ] = D.workers,
    overwrite: Annotated[bool, Opt(help="Replace a non-empty output directory.")] = D.overwrite,
    resume: Annotated[
        bool, Opt(help="Skip partitions already committed by an earlier run with the same options.")
    ] = D.resume,
    strict: Annotated[bool, Opt(help="Stop at the first bad record (exit 1).")] = D.strict,
    max_rejects: Annotated[
        str | None, checked(MAX_REJECTS, help="Stop when more than N records (or P%) are rejected.", metavar="N|P%")
    ] = None,
    engine: Annotated[str, checked(Choice(ENGINES), help="local (process pool) or ray.", metavar="ENGINE")] = D.engine,
    num_workers: Annotated[
        int, checked(NUM_WORKERS, help="Cluster slicing: total number of array tasks.", metavar="N")
    ] = D.num_workers,
    worker_index: Annotated[
        int,
        checked(
            WORKER_INDEX,
            help="Cluster slicing: this task's index (e.g. $SLURM_ARRAY_TASK_ID), below --num-workers.",
            metavar="I",
        ),
    ] = D.worker_index,
    max_records_per_shard: Annotated[
        int, checked(SHARD_RECORDS, help="Rotate shards after this many records.", metavar="N")
    ] = D.max_records_per_shard,
    max_shard_bytes: Annotated[
        int, checked(SHARD_BYTES, help="Rotate shards after about this many bytes.", metavar="BYTES")
    ] = D.max_shard_bytes,
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
    embed_images: Annotated[
        bool, Opt(help="Kept for old scripts: --format tsv always embeds the images.")
    ] = D.embed_images,
    turns: Annotated[
        int,
        checked(
            TURNS,
            help="qwen-vl, cogvlm: pack up to N records of one image and task into one conversation.",
            metavar="N",
        ),
    ] = D.turns,
    size_mismatch: Annotated[
        str, Opt(help="With --image-root, an image whose real size differs: reject, rescale (the boxes) or trust.")
    ] = D.size_mismatch,
    layout: Annotated[
        str | None,
        Opt(
            help="Conversation writers: native, llamafactory (+ dataset_info.json), ms-swift records, or "
            "ms-swift-objects (<ref-object>/<bbox> + objects pixel boxes that ms-swift spells for the model)."
        ),
    ] = None,
    resize_profile: Annotated[
        str | None,
        Opt(help="qwen2.5-vl: trainer resize defaults: hf, qwen-finetune, qwen-sft-script, ms-swift, llamafactory."),
    ] = None,
    min_pixels: Annotated[
        int | None, checked(PIXELS, help="qwen2.5-vl: smart_resize min_pixels (with --max-pixels).", metavar="N")
    ] = None,
    max_pixels: Annotated[
        int | None, checked(PIXELS, help="qwen2.5-vl: smart_resize max_pixels (with --min-pixels).", metavar="N")
    ] = None,
    factor: Annotated[
        int | None, checked(PIXELS, help="qwen2.5-vl: smart_resize factor (default 28).", metavar="N")
    ] = None,
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
        conversion = prepare(
            input,
            output,
            reader=from_,
            writer=to,
            format=format,
            tasks=tasks,
            split=split,
            limit=limit,
            seed=seed,
            workers=workers,
            overwrite=overwrite,
            resume=resume,
            strict=strict,
            max_rejects=max_rejects,
            engine=engine,
            num_workers=num_workers,
            worker_index=worker_index,
            max_records_per_shard=max_records_per_shard,
            max_shard_bytes=max_shard_bytes,
            split_by=split_by,
            annotations=annotations,
            text=text,
            spans=spans,
            min_score=min_score,
            image_root=image_root,
            vg_image_data=vg_image_data,
            image_prefix=image_prefix,
            template_file=template_file,
            language=language,
            embed_images=embed_images,
            reader_options=parse_pairs(reader_option, "-O"),
            writer_options=parse_pairs(writer_option, "-W"),
            progress=not quiet,
            turns=turns,
            size_mismatch=size_mismatch,
            layout=layout,
            resize_profile=resize_profile,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            factor=factor,
            box_format=box_format,
            max_coord=max_coord,
            odvg_dialect=odvg_dialect,
            label_map=label_map,
        )
        job = conversion.job
        typer.echo(
            f"{job.reader} → {job.writer} [{', '.join(job.tasks)}] as {job.format}: {input} → {output}", err=True
        )
        result = conversion.execute()
        if result.run is None:
            typer.echo(
                f"plan only (--limit 0): {result.partitions} partition(s) planned from {input}; "
                f"nothing converted, nothing written to {output}"
            )
            return
        print_summary(result.run, output)
