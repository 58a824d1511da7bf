"""Every reader × every writer on synthetic native data: detect, convert all tasks, validate --source."""

from __future__ import annotations

from pathlib import Path

import pytest

from grounding_convert.engine.runner import RunOptions, convert, make_job
from grounding_convert.plugins import detect_reader
from grounding_convert.synth import generate
from grounding_convert.tools.validate import validate

# dataset → (generator options, where the reader's input is, reader options)
DATASETS = {
    "flickr30k-entities": ({}, ".", {}),
    "visual-genome": ({}, ".", {}),
    "refcoco": ({}, "refcoco", {}),
    "refcoco+": ({}, "refcoco+", {}),
    "refcocog": ({}, "refcocog", {}),
    "visual7w": ({}, ".", {"image_root": "images"}),
    "grit": ({"layout": "parquet"}, ".", {}),
    "grit-img2dataset": ({"layout": "img2dataset"}, ".", {}),
}
# writer → the options it cannot run without (qwen2.5-vl needs the trainer's resize setting)
WRITERS = {
    "qwen-vl": {},
    "ofa": {},
    "kosmos-2": {},
    "cogvlm": {},
    "canonical": {},
    "qwen2-vl": {},
    "qwen2.5-vl": {"resize_profile": "hf"},
    "qwen3-vl": {},
    "internvl": {},
    "florence-2": {},
    "paligemma": {},
    "odvg": {},
}


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    out = {}
    for name, (gen_options, inner, reader_options) in DATASETS.items():
        root = tmp_path_factory.mktemp(name)
        generate(name.split("-img2dataset")[0], root, images=6, seed=11, **gen_options)
        options = {k: str(root / v) if k == "image_root" else v for k, v in reader_options.items()}
        out[name] = (root / inner, options)
    return out


@pytest.mark.parametrize("dataset", DATASETS)
def test_detect(native, dataset):
    path, _ = native[dataset]
    assert detect_reader(str(path)) == dataset.split("-img2dataset")[0]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_convert_and_validate(native, tmp_path, dataset, writer):
    path, reader_options = native[dataset]
    reader = dataset.split("-img2dataset")[0]
    job = make_job(
        input=str(path),
        output=str(tmp_path / "out"),
        writer=writer,
        reader=reader,
        reader_options=reader_options,
        writer_options=WRITERS[writer],
        format="jsonl",
    )
    result = convert(job, RunOptions(progress=False))
    tally = result.tally
    assert tally.balanced
    assert tally.written > 0 and tally.total_records() > 0
    if reader == "visual7w" and "pointing" in job.tasks:
        assert sum(c.get("pointing", 0) for c in tally.records.values()) > 0
    report = validate(str(tmp_path / "out"), str(path), reader, reader_options)
    assert report.ok, report.messages
    assert report.records == tally.total_records()
    assert report.boxes_checked > 0
    assert report.worst_steps <= 1.0 + 1e-9  # validate's bound: a far-edge clamp (Qwen2.5-VL W'-1) is exactly one step
