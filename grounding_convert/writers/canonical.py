"""The canonical writer: samples as they are (DESIGN §1 field names), one per row or line.

Lets a cluster job normalize once and render several models later from the same shards
(``--from canonical``).  Its one "task" is ``sample``: one record per canonical sample.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from ..schema import SAMPLE_SCHEMA, Sample
from .base import Decoded, Writer


class CanonicalWriter(Writer):
    """Canonical samples, exactly the DESIGN §1 schema (boxes in original-image pixels)."""

    name = "canonical"
    description = "canonical samples (DESIGN §1), for --from canonical"
    tasks: ClassVar[tuple[str, ...]] = ("sample",)

    def schema(self) -> pa.Schema:
        return SAMPLE_SCHEMA

    def model_fields(self) -> list[tuple[str, pa.DataType]]:
        return []

    def render_seeded(self, sample: Sample, task: str, state: int) -> list[dict[str, Any]]:
        record = sample.to_record()
        if self.options.image_prefix:
            record["image"]["file"] = self.image_path(sample)
        return [record]

    def parse(self, record: dict[str, Any]) -> list[Decoded]:
        return [
            Decoded(r["phrase"], [list(b) for b in r.get("boxes") or []], r.get("role"))
            for r in record.get("regions") or []
        ]

    def tolerance(self, width: int, height: int) -> tuple[float, float]:
        return 1e-9, 1e-9
