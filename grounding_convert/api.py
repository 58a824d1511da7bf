"""The Python API for notebooks and pipelines: ``convert``, ``read``, ``render``, ``to_dataset``.

These names are exported from ``grounding_convert`` and kept stable (README "Library use").  ``convert``
is the CLI's ``convert`` command: the command parses its flags and calls :func:`prepare` and
:meth:`Conversion.execute`, exactly what :func:`convert` does, so defaults, checks and error messages
cannot drift apart.  Errors are the CLI's: :class:`~grounding_convert.errors.UsageError` (bad options,
exit 2 on the command line), :class:`~grounding_convert.errors.InputFileError`,
:class:`~grounding_convert.errors.StrictStop`, each carrying the line the CLI prints after ``error:``.

Heavy modules (pyarrow, the engine, the plugins, ``datasets``) are imported inside the functions, so
``import grounding_convert`` stays light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StrictStop, UsageError
from .option_types import LIMIT, MIB, MIN_SCORE, SEED, Choice, check

if TYPE_CHECKING:
    from datasets import DatasetDict

    from .engine.job import Job
    from .engine.runner import RunOptions, RunResult
    from .engine.tally import Tally
    from .schema import Sample

#: the named dataset flags: reader option names (``--split-by`` → ``split_by``)
READER_FLAGS = ("split", "split_by", "annotations", "text", "spans", "min_score", "image_root", "vg_image_data")
#: the named model flags: writer option names
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
#: flags the pipeline takes whatever the reader and writer (the --image-root size check)
PIPELINE_FLAGS = ("image_root",)


@dataclass
class ConvertOptions:
    """Every option of ``convert`` with its default; the CLI's flags take their defaults from here."""

    format: str = "parquet"
    tasks: str | Sequence[str] | None = None  # "rec,reg" or ["rec", "reg"]; None: all the writer has
    split: str | None = None
    limit: int | None = None  # 0: plan only
    seed: int = 0
    workers: int | str = 1  # or "auto" (the CPUs available)
    overwrite: bool = False
    resume: bool = False
    strict: bool = False
    max_rejects: int | str | None = None  # 100 or "5%"
    engine: str = "local"
    num_workers: int = 1
    worker_index: int = 0
    max_records_per_shard: int = 100_000
    max_shard_bytes: int | str = 512 * MIB  # or "512MiB"
    split_by: str | None = None
    annotations: str | None = None
    text: str | None = None
    spans: str | None = None
    min_score: float | None = None
    image_root: str | None = None
    vg_image_data: str | None = None
    image_prefix: str | None = None
    template_file: str | None = None
    language: str | None = None
    embed_images: bool = False
    turns: int = 1  # qwen-vl, cogvlm: up to N records of one image and task packed into one conversation
    layout: str | None = None  # conversation writers: native, llamafactory, ms-swift or ms-swift-objects
    resize_profile: str | None = None  # qwen2.5-vl: named trainer resize defaults
    min_pixels: int | None = None  # qwen2.5-vl: explicit smart_resize settings
    max_pixels: int | None = None
    factor: int | None = None
    box_format: str | None = None  # qwen2.5-vl / qwen3-vl: json or tokens
    max_coord: str | None = None  # qwen3-vl: 1000 or 999
    odvg_dialect: str | None = None  # odvg: mmdet or open-groundingdino
    label_map: str | None = None  # odvg detection: label map JSON
    size_mismatch: str = "reject"  # with image_root: an image whose real size differs — reject, rescale or trust
    reader_options: dict[str, Any] = field(default_factory=dict)  # any reader option (-O KEY=VALUE)
    writer_options: dict[str, Any] = field(default_factory=dict)  # any writer option (-W KEY=VALUE)
    progress: bool = False  # a tqdm bar (the CLI shows one unless --quiet)


@dataclass
class Result:
    """What a conversion did: counts, shards and where, or only the plan (``limit=0``)."""

    input: str
    output: str
    reader: str
    writer: str
    tasks: tuple[str, ...]
    format: str
    partitions: int  # planned
    run: RunResult | None  # None when only planned

    @property
    def planned_only(self) -> bool:
        return self.run is None

    @property
    def tally(self) -> Tally:
        from .engine.tally import Tally

        return self.run.tally if self.run is not None else Tally()

    @property
    def read(self) -> int:
        return self.tally.read

    @property
    def written(self) -> int:
        return self.tally.written

    @property
    def rejected(self) -> int:
        return self.tally.rejected

    @property
    def filtered(self) -> int:
        return self.tally.filtered

    @property
    def records(self) -> dict[str, int]:
        """Records written per task."""
        out: dict[str, int] = {}
        for per_split in self.tally.records.values():
            for task, count in per_split.items():
                out[task] = out.get(task, 0) + count
        return out

    @property
    def shards(self) -> list[str]:
        """Shard files, relative to ``output`` (empty for a cluster slice or a plan)."""
        if self.run is None or self.run.finalized is None:
            return []
        return [shard["file"] for shard in self.run.finalized.shards]


@dataclass
class Conversion:
    """A checked conversion, not yet run: nothing has been written when this exists."""

    job: Job
    run_options: RunOptions

    @property
    def planned_only(self) -> bool:
        return self.job.limit == 0

    def execute(self) -> Result:
        from .engine.runner import convert as run_job
        from .engine.runner import localize_input

        job = self.job
        if self.planned_only:  # --limit 0: the plan, and the output folder left alone
            reader, _writer = job.build()
            partitions = len(reader.plan(localize_input(job.input)))
            run = None
        else:
            run = run_job(job, self.run_options)
            partitions = run.partitions_total
        return Result(job.input, job.output, job.reader, job.writer, job.tasks, job.format, partitions, run)


def prepare(
    input: str, output: str, reader: str | None = None, writer: str | None = None, **options: Any
) -> Conversion:
    """Check every option of a conversion (raising the CLI's messages) without writing anything."""
    from .engine.checks import checked_run_options
    from .engine.runner import RunOptions, localize_input, make_job
    from .output.shards import FORMATS
    from .plugins import detect_reader

    opts = _options(ConvertOptions, options, "convert")
    if writer is None:
        raise UsageError("Missing option '--to' (writer=): the model to write records for")
    opts.format = check("--format", Choice(FORMATS), opts.format)
    if opts.min_score is not None:
        opts.min_score = check("--min-score", MIN_SCORE, opts.min_score)
    run = checked_run_options(
        RunOptions(
            workers=opts.workers,
            engine=opts.engine,
            overwrite=opts.overwrite,
            resume=opts.resume,
            num_workers=opts.num_workers,
            worker_index=opts.worker_index,
            progress=opts.progress,
        )
    )
    name = reader or detect_reader(localize_input(str(input)))
    flags = {key: getattr(opts, key) for key in dict.fromkeys(READER_FLAGS + WRITER_FLAGS)}
    reader_opts, writer_opts = route_options(name, writer, flags, opts.reader_options, opts.writer_options)
    job = make_job(
        input=str(input),
        output=str(output),
        writer=writer,
        reader=name,
        tasks=_tasks(opts.tasks),
        format=opts.format,
        seed=opts.seed,
        reader_options=reader_opts,
        writer_options=writer_opts,
        max_records_per_shard=opts.max_records_per_shard,
        max_shard_bytes=opts.max_shard_bytes,
        strict=opts.strict,
        max_rejects=None if opts.max_rejects is None else str(opts.max_rejects),
        limit=opts.limit,
        turns=opts.turns,
        image_root=opts.image_root,  # TSV embeds from it; every format checks image sizes against it
        size_mismatch=opts.size_mismatch,
    )
    return Conversion(job, run)


def convert(input: str, output: str, reader: str | None = None, writer: str | None = None, **options: Any) -> Result:
    """Convert ``input`` (read by ``reader``, detected when None) into ``writer``'s records under ``output``.

    The same job as ``grounding-convert convert``; ``options`` are its flags as keywords (see
    :class:`ConvertOptions`).  ``limit=0`` only plans: nothing is written.
    """
    return prepare(input, output, reader, writer, **options).execute()


def read(
    input: str, reader: str | None = None, *, limit: int | None = None, strict: bool = False, **options: Any
) -> Iterator[Sample]:
    """The canonical samples of ``input``, streamed partition by partition in plan order.

    ``options`` are reader options (``split``, ``min_score``, ``images_per_partition`` …).  Records the
    reader rejects are skipped (``strict=True`` raises :class:`StrictStop` at the first instead).  Options
    are checked when ``read`` is called, not when the first sample is drawn.
    """
    from .engine.runner import localize_input
    from .plugins import detect_reader, get_reader

    if limit is not None:
        limit = check("--limit", LIMIT, limit)
    local = localize_input(str(input))
    name = reader or detect_reader(local)
    plugin = get_reader(name).from_mapping(dict(options))
    partitions = plugin.plan(local)
    return _samples(plugin, partitions, limit, strict)


def _samples(plugin: Any, partitions: list, limit: int | None, strict: bool) -> Iterator[Sample]:
    from .errors import Reject
    from .schema import Sample

    count = 0
    for partition in partitions:
        for item in plugin.read(partition):
            if isinstance(item, Sample):
                if limit is not None and count >= limit:
                    return
                count += 1
                yield item
            elif strict and isinstance(item, Reject):
                where = item.source + (f" [{item.position}]" if item.position is not None else "")
                raise StrictStop(f"--strict: {where}: {item.reason}: {item.message}")


def render(
    samples: Iterable[Sample],
    writer: str,
    tasks: str | Sequence[str] | None = None,
    seed: int = 0,
    *,
    strict: bool = False,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """``writer``'s training records for ``samples``, as ``convert`` writes them (same ids, same templates).

    ``tasks`` defaults to all the writer has; ``options`` are writer options (``language``, ``image_prefix`` …).
    A sample the writer cannot spell is skipped (``strict=True`` raises :class:`StrictStop`).
    """
    from .plugins import get_writer
    from .writers.base import check_tasks

    writer_cls = get_writer(writer)
    chosen = tuple(_tasks(tasks) or writer_cls.tasks)
    check_tasks(writer_cls, chosen)
    seed = check("--seed", SEED, seed)
    return _records(writer_cls.from_mapping(dict(options)), samples, chosen, seed, strict)


def _records(plugin: Any, samples: Iterable[Sample], tasks: tuple[str, ...], seed: int, strict: bool) -> Iterator[dict]:
    from .errors import RecordError

    for sample in samples:
        try:
            per_task = plugin.render_tasks(sample, tasks, seed)
        except RecordError as exc:
            if strict:
                raise StrictStop(f"--strict: {sample.id}: {exc.reason}: {exc.message}") from None
            continue
        for _task, records in per_task:
            yield from records


def to_dataset(output: str, **load_options: Any) -> DatasetDict:
    """A finished output folder as a ``datasets.DatasetDict`` (one split per split written).

    The same as ``datasets.load_dataset(output, **load_options)`` (e.g. ``cache_dir=``), which reads the
    dataset card's YAML header; refused for a folder that is not a finished output (no ``manifest.json``).
    """
    from datasets import load_dataset

    from .output.finalize import MANIFEST
    from .output.storage import Store

    if not Store(str(output)).exists(MANIFEST):
        raise UsageError(f"{output} has no {MANIFEST}: not a finished grounding-convert output")
    return load_dataset(str(output), **load_options)


def route_options(
    reader: str, writer: str, flags: dict[str, Any], extra_reader: dict, extra_writer: dict
) -> tuple[dict, dict]:
    """Send each named flag to the plugin(s) whose Options have that field; refuse flags nobody takes."""
    from .plugins import get_reader, get_writer

    reader_fields = {f.name for f in dataclasses.fields(get_reader(reader).Options)}
    writer_fields = {f.name for f in dataclasses.fields(get_writer(writer).Options)}
    reader_opts, writer_opts = dict(extra_reader or {}), dict(extra_writer or {})
    for name, value in flags.items():
        if value is None or value is False:
            continue
        taken = False
        if name in reader_fields and name in READER_FLAGS:
            reader_opts[name] = value
            taken = True
        if name in writer_fields and name in WRITER_FLAGS:
            writer_opts[name] = value
            taken = True
        if not taken and name not in PIPELINE_FLAGS:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to reader {reader!r} or writer {writer!r}")
    return reader_opts, writer_opts


def _options(cls: type, values: dict[str, Any], command: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{command} has no option {unknown[0]!r} (its options: {', '.join(sorted(known))})")
    return cls(**values)


def _tasks(tasks: str | Sequence[str] | None) -> list[str] | None:
    if tasks is None:
        return None
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    return [t.strip() for t in items if t.strip()] or None
