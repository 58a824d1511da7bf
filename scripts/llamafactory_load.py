"""Load a ``--layout llamafactory`` output with LLaMA-Factory's own dataset loader (CPU, no network at run time).

LLaMA-Factory cannot be a test dependency (it pins its own torch/transformers/peft/trl stack); this script
runs its real code instead:

    pip install --no-deps --target /tmp/lf llamafactory peft accelerate   # once, from PyPI
    grounding-convert convert --to qwen2-vl --layout llamafactory --format jsonl -i DATA -o OUT
    PYTHONPATH=/tmp/lf python scripts/llamafactory_load.py OUT

It reads ``OUT/dataset_info.json`` with ``llamafactory.data.parser.get_dataset_list`` and loads every entry
with ``llamafactory.data.loader._load_single_dataset`` (file loading + ``align_dataset``, the sharegpt
converter that checks roles and turns the ``messages``/``images`` columns into its ``_prompt``/``_response``/
``_images``), then checks the ``<image>`` count per row as the mm_plugin does before tokenizing.
``torchaudio`` (imported by ``mm_plugin`` for audio only) has no build for the CPU torch here: a stub stands in.
"""

from __future__ import annotations

import sys
import types


def main(output: str) -> int:
    import importlib.machinery

    stub = types.ModuleType("torchaudio")
    stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    sys.modules.setdefault("torchaudio", stub)
    import orjson
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list

    with open(f"{output}/dataset_info.json", "rb") as fh:
        names = list(orjson.loads(fh.read()))
    # the fields of DataArguments / ModelArguments / TrainingArguments the file path reads (llamafactory.hparams
    # itself imports omegaconf and the trainer stack, which a data check does not need)
    data_args = types.SimpleNamespace(
        dataset_dir=output, media_dir=output, streaming=False, preprocessing_num_workers=None,
        overwrite_cache=True, max_samples=None,
    )  # fmt: skip
    model_args = types.SimpleNamespace(cache_dir=None, hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
    training_args = types.SimpleNamespace(local_process_index=0, dataloader_num_workers=0)
    total = 0
    for attr in get_dataset_list(names, output):
        dataset = _load_single_dataset(attr, model_args, data_args, training_args)
        for row in dataset:
            images = row["_images"] or []
            placeholders = sum(m["content"].count("<image>") for m in row["_prompt"] + row["_response"])
            assert placeholders == len(images) == 1, row
            assert row["_prompt"][0]["role"] == "user" and row["_response"][0]["role"] == "assistant", row
        total += len(dataset)
        print(f"{attr.dataset_name}: {len(dataset)} rows, columns {dataset.column_names}")
        print(f"  first: {dataset[0]}")
    print(f"loaded {total} rows with LLaMA-Factory's loader")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
