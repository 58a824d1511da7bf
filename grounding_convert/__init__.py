"""grounding_convert: visual-grounding datasets → grounding-model training records.

Readers (one per dataset) produce canonical :class:`~grounding_convert.schema.Sample` objects; writers
(one per model) render them as training records; the engine shards, accounts and resumes.
"""

__version__ = "0.1.0"
