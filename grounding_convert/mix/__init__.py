"""Training mixtures from a recipe (DESIGN §7): many sources, weights, evaluation-image decontamination,
deduplication and a global shuffle, run as two stages on the ordinary engines.

- ``recipe.py``: the YAML recipe, checked, with line numbers in every error;
- ``keys.py``: the hashes (weights, buckets, order, dedup) and the evaluation-set image keys;
- ``stage.py``: stage 1, one source partition → spill file of records in hash buckets;
- ``shuffle.py``: stage 2, one bucket → shards (cap, dedup, order);
- ``runner.py`` / ``finalize.py`` / ``card.py`` / ``plan.py``: driving, naming, reporting, dry run.
"""
