"""Prompt phrasings per writer and task, loaded from ``configs/templates/<writer>.yaml``.

File shape::

    rec:
      en: ["Generate the bounding box of {phrase}", ...]
      zh: ["框出图中的{phrase}", ...]
    reg:
      en: [...]

Which phrasing a record gets is drawn from a generator seeded by (seed, record id) — see
:func:`grounding_convert.writers.base.record_rng` — so output never depends on worker count.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from .errors import InputFileError, UsageError


def templates_dir() -> Path:
    """``configs/templates`` inside an installed wheel, or at the repository root in a checkout."""
    packaged = resources.files("grounding_convert").joinpath("configs", "templates")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "configs" / "templates"


class Templates:
    """The phrasings of one writer: task → language → list of format strings."""

    def __init__(self, table: dict[str, dict[str, list[str]]], source: str):
        self.table = table
        self.source = source

    @classmethod
    def load(cls, name: str, override: str | None = None) -> Templates:
        path = Path(override) if override else templates_dir() / f"{name}.yaml"
        return _load_cached(str(path))

    def pool(self, task: str, language: str) -> list[str]:
        """The phrasings a record of ``task`` draws from (``mixed``: every language, sorted by name)."""
        by_language = self.table.get(task)
        if not by_language:
            raise UsageError(f"{self.source}: no templates for task {task!r}")
        if language == "mixed":
            pool = [t for lang in sorted(by_language) for t in by_language[lang]]
        else:
            pool = by_language.get(language) or by_language.get("en") or []
        if not pool:
            raise UsageError(f"{self.source}: no {language!r} templates for task {task!r}")
        return pool


@lru_cache(maxsize=32)
def _load_cached(path: str) -> Templates:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise InputFileError(path, "template file not found") from exc
    except yaml.YAMLError as exc:
        raise InputFileError(path, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputFileError(path, "not a mapping", "task: {language: [phrasings]}")
    table: dict[str, dict[str, list[str]]] = {}
    for task, by_language in data.items():
        if isinstance(by_language, list):
            by_language = {"en": by_language}
        if not isinstance(by_language, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in by_language.values()
        ):
            raise InputFileError(path, f"task {task!r} is not a mapping of language to a list of strings")
        table[str(task)] = {str(k): list(v) for k, v in by_language.items()}
    return Templates(table, path)
