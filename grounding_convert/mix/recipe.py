"""A mixture recipe (DESIGN §7 "Mixtures are a stage above conversion"): YAML in, checked values out.

Every recipe error names the recipe file and line (PyYAML nodes carry marks; the loader below keeps them
on every mapping), so a typo in a 40-line recipe points at its line instead of at a traceback.

```yaml
writer: qwen-vl
format: parquet          # or jsonl (tsv for ofa)
seed: 0
language: en             # template language of the writer
sources:
  - name: vg              # optional; default: the reader name (must be unique)
    reader: visual-genome
    input: ${DATA}/visual_genome     # $VARS expand; relative paths are relative to the recipe file
    options: {annotations: regions}  # reader options, as -O would give them
    tasks: [rec, reg]                # default: every task the writer has
    weight: 0.5                      # deterministic by sample-id hash; 2.0 = every sample twice
    max_samples: 100000              # upper bound after weighting (see README "Mixtures")
exclude:
  - name: refcoco-eval
    reader: refcoco
    input: ${DATA}/refcoco
    splits: [val, testA, testB]
dedup: off                # or image-text-task
```
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import GroundingConvertError, UsageError
from ..plugins import get_reader, get_writer
from ..readers.base import build_options
from ..writers.base import check_tasks

DEDUP = ("off", "image-text-task")
# A mixture is one shuffled file set: containers that split a split into per-task files (OFA's TSV) are not mixed.
MIX_FORMATS = ("parquet", "jsonl", "json")
TOP_KEYS = {
    "writer",
    "format",
    "seed",
    "language",
    "writer_options",
    "tasks",
    "sources",
    "exclude",
    "dedup",
    "shuffle",
    "max_records_per_shard",
    "max_shard_bytes",
}
SOURCE_KEYS = {"name", "reader", "input", "options", "tasks", "weight", "max_samples"}
EXCLUDE_KEYS = {"name", "reader", "input", "options", "splits"}
SHUFFLE_KEYS = {"buckets"}
MAX_BUCKETS = 4096


class RecipeError(UsageError):
    """A recipe that cannot run: names the file and line (exit code 2)."""


class _Map(dict):
    """A mapping that remembers where it and each of its keys stand in the recipe file."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


@dataclass(frozen=True)
class SourceSpec:
    name: str
    reader: str
    input: str
    options: dict[str, Any]
    tasks: tuple[str, ...]
    weight: float = 1.0
    max_samples: int | None = None
    line: int = 0


@dataclass(frozen=True)
class ExcludeSpec:
    name: str
    reader: str
    input: str
    options: dict[str, Any]
    splits: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Recipe:
    path: str
    writer: str
    format: str
    seed: int
    writer_options: dict[str, Any]
    sources: tuple[SourceSpec, ...]
    exclude: tuple[ExcludeSpec, ...] = ()
    dedup: str = "off"
    buckets: int | None = None
    max_records_per_shard: int = 100_000
    max_shard_bytes: int = 512 * 1024 * 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What shapes the output bytes (the recipe's path does not)."""
        return {
            "writer": self.writer,
            "format": self.format,
            "seed": self.seed,
            "writer_options": dict(sorted(self.writer_options.items())),
            "sources": [
                {
                    "name": s.name,
                    "reader": s.reader,
                    "input": s.input,
                    "options": dict(sorted(s.options.items())),
                    "tasks": list(s.tasks),
                    "weight": s.weight,
                    "max_samples": s.max_samples,
                }
                for s in self.sources
            ],
            "exclude": [
                {"name": e.name, "reader": e.reader, "input": e.input, "options": e.options, "splits": list(e.splits)}
                for e in self.exclude
            ],
            "dedup": self.dedup,
            "buckets": self.buckets,
            "max_records_per_shard": self.max_records_per_shard,
            "max_shard_bytes": self.max_shard_bytes,
        }


def load_recipe(path: str, check_inputs: bool = True) -> Recipe:
    """Parse and check a recipe file; every problem is a :class:`RecipeError` naming its line."""
    where = Path(path)
    if not where.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.load(where.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise RecipeError(f"{path}:{line}: not valid YAML ({exc.problem})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    return _Checker(path, check_inputs).recipe(data)


class _Checker:
    def __init__(self, path: str, check_inputs: bool):
        self.path, self.base, self.check_inputs = path, Path(path).resolve().parent, check_inputs

    def fail(self, line: int, message: str) -> RecipeError:
        return RecipeError(f"{self.path}:{line}: {message}")

    def mapping(self, value: Any, line: int, what: str, keys: set[str]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, f"{what} must be a mapping, not {type(value).__name__}")
        for key in value:
            if key not in keys:
                raise self.fail(
                    value.key_lines.get(str(key), value.line),
                    f"unknown key {key!r} in {what} (known: {', '.join(sorted(keys))})",
                )
        return value

    def line_of(self, m: _Map, key: str) -> int:
        return m.key_lines.get(key, m.line)

    def recipe(self, data: Any) -> Recipe:
        top = self.mapping(data, 1, "the recipe", TOP_KEYS)
        writer_name = self.text(top, "writer", required=True)
        try:
            writer_cls = get_writer(writer_name)
        except UsageError as exc:
            raise self.fail(self.line_of(top, "writer"), str(exc)) from None
        fmt = self.text(top, "format") or "parquet"
        if fmt not in MIX_FORMATS:
            raise self.fail(self.line_of(top, "format"), f"mix writes {', '.join(MIX_FORMATS)}, not {fmt!r}")
        seed = self.integer(top, "seed", 0, minimum=0)
        writer_options = dict(self.optional_mapping(top, "writer_options"))
        if top.get("language") is not None:
            writer_options["language"] = top["language"]
        try:
            build_options(writer_cls.Options, writer_options, owner=f"writer {writer_name!r}")
        except GroundingConvertError as exc:
            raise self.fail(
                self.line_of(top, "language" if "language" in top else "writer_options"), str(exc)
            ) from None
        default_tasks = self.tasks(top, "tasks", writer_cls, tuple(writer_cls.tasks))
        raw_sources = top.get("sources")
        if not isinstance(raw_sources, list) or not raw_sources:
            raise self.fail(self.line_of(top, "sources"), "sources must be a non-empty list")
        sources = tuple(self.source(s, top.key_lines.get("sources", 1), writer_cls, default_tasks) for s in raw_sources)
        self.unique([(s.name, s.line) for s in sources], "source")
        raw_exclude = top.get("exclude") or []
        if not isinstance(raw_exclude, list):
            raise self.fail(self.line_of(top, "exclude"), "exclude must be a list")
        exclude = tuple(self.exclusion(e, self.line_of(top, "exclude")) for e in raw_exclude)
        self.unique([(e.name, e.line) for e in exclude], "exclusion set")
        dedup = top.get("dedup", "off")
        if dedup is False:  # YAML 1.1 reads a bare `off` as false
            dedup = "off"
        if dedup not in DEDUP:
            raise self.fail(self.line_of(top, "dedup"), f"dedup must be one of {', '.join(DEDUP)}, not {dedup!r}")
        shuffle = self.optional_mapping(top, "shuffle", SHUFFLE_KEYS)
        buckets = None
        if "buckets" in shuffle:
            buckets = self.integer(shuffle, "buckets", 1, minimum=1)
            if buckets > MAX_BUCKETS:
                raise self.fail(self.line_of(shuffle, "buckets"), f"buckets must be at most {MAX_BUCKETS}")
        return Recipe(
            path=self.path,
            writer=writer_name,
            format=fmt,
            seed=seed,
            writer_options=writer_options,
            sources=sources,
            exclude=exclude,
            dedup=dedup,
            buckets=buckets,
            max_records_per_shard=self.integer(top, "max_records_per_shard", 100_000, minimum=1),
            max_shard_bytes=self.integer(top, "max_shard_bytes", 512 * 1024 * 1024, minimum=1),
        )

    def source(self, value: Any, line: int, writer_cls: type, default_tasks: tuple[str, ...]) -> SourceSpec:
        m = self.mapping(value, line, "a source", SOURCE_KEYS)
        reader, options = self.reader_and_options(m)
        weight = m.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise self.fail(self.line_of(m, "weight"), f"weight must be a finite number >= 0, not {weight!r}")
        max_samples = None
        if m.get("max_samples") is not None:
            max_samples = self.integer(m, "max_samples", 0, minimum=1)
        return SourceSpec(
            name=self.text(m, "name") or reader,
            reader=reader,
            input=self.input(m),
            options=options,
            tasks=self.tasks(m, "tasks", writer_cls, default_tasks),
            weight=float(weight),
            max_samples=max_samples,
            line=m.line,
        )

    def exclusion(self, value: Any, line: int) -> ExcludeSpec:
        m = self.mapping(value, line, "an exclusion set", EXCLUDE_KEYS)
        reader, options = self.reader_and_options(m)
        splits = m.get("splits")
        if splits is not None and (not isinstance(splits, list) or not all(isinstance(s, str) for s in splits)):
            raise self.fail(self.line_of(m, "splits"), "splits must be a list of split names")
        if "split" in options:
            raise self.fail(self.line_of(m, "options"), "give evaluation splits as `splits: [...]`, not options.split")
        return ExcludeSpec(
            name=self.text(m, "name") or reader,
            reader=reader,
            input=self.input(m),
            options=options,
            splits=tuple(splits or ()),
            line=m.line,
        )

    def reader_and_options(self, m: _Map) -> tuple[str, dict[str, Any]]:
        reader = self.text(m, "reader", required=True)
        try:
            reader_cls = get_reader(reader)
        except UsageError as exc:
            raise self.fail(self.line_of(m, "reader"), str(exc)) from None
        options = {str(k).replace("-", "_"): v for k, v in self.optional_mapping(m, "options").items()}
        for key, value in options.items():
            if isinstance(value, str):
                options[key] = self.expand(value, self.line_of(m, "options"))
        try:
            build_options(reader_cls.Options, options, owner=f"reader {reader!r}")
        except GroundingConvertError as exc:
            raise self.fail(self.line_of(m, "options"), str(exc)) from None
        return reader, options

    def input(self, m: _Map) -> str:
        raw = self.text(m, "input", required=True)
        line = self.line_of(m, "input")
        text = self.expand(raw, line)
        if "://" in text:
            return text
        path = Path(text)
        if not path.is_absolute():
            path = self.base / path
        if self.check_inputs and not path.exists():
            raise self.fail(line, f"input {str(path)!r} does not exist")
        return str(path)

    def expand(self, text: str, line: int) -> str:
        expanded = os.path.expandvars(text)
        left = re.search(r"\$\{?\w+\}?", expanded)
        if left:
            raise self.fail(line, f"environment variable {left.group(0)} is not set (in {text!r})")
        return expanded

    def tasks(self, m: _Map, key: str, writer_cls: type, default: tuple[str, ...]) -> tuple[str, ...]:
        value = m.get(key)
        if value is None:
            return default
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
            raise self.fail(self.line_of(m, key), "tasks must be a non-empty list of task names")
        try:
            check_tasks(writer_cls, value)
        except UsageError as exc:
            raise self.fail(self.line_of(m, key), str(exc)) from None
        return tuple(value)

    def text(self, m: _Map, key: str, required: bool = False) -> str | None:
        value = m.get(key)
        if value is None:
            if required:
                raise self.fail(m.line, f"missing key {key!r}")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(self.line_of(m, key), f"{key} must be a non-empty string, not {value!r}")
        return value.strip()

    def integer(self, m: _Map, key: str, default: int, minimum: int) -> int:
        value = m.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(self.line_of(m, key), f"{key} must be an integer >= {minimum}, not {value!r}")
        return value

    def optional_mapping(self, m: _Map, key: str, keys: set[str] | None = None) -> dict[str, Any]:
        value = m.get(key)
        if value is None:
            return {}
        if keys is not None:
            return self.mapping(value, self.line_of(m, key), key, keys)
        if not isinstance(value, dict):
            raise self.fail(self.line_of(m, key), f"{key} must be a mapping")
        return dict(value)

    def unique(self, names: list[tuple[str, int]], what: str) -> None:
        seen: set[str] = set()
        for name, line in names:
            if name in seen:
                raise self.fail(line, f"two {what}s are named {name!r}: give each a distinct `name`")
            seen.add(name)
