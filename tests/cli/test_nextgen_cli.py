"""The new writers' options on the command line: CliRunner and a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from grounding_convert.cli.app import app

runner = CliRunner()
BIN = str(Path(sys.executable).parent / "grounding-convert")
PROFILES = "hf,qwen-finetune,qwen-sft-script,ms-swift,llamafactory"


def test_qwen25_vl_without_resize_setting_exits_2(flickr_excerpt, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", "--to", "qwen2.5-vl", "-i", str(flickr_excerpt), "-o", str(out), "--quiet"])
    assert result.exit_code == 2
    assert PROFILES in result.output
    assert not (out / "data").exists()


def test_qwen25_vl_without_resize_setting_exits_2_as_a_process(flickr_excerpt, tmp_path):
    proc = subprocess.run(
        [BIN, "convert", "--to", "qwen2.5-vl",
         "-i", str(flickr_excerpt), "-o", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert PROFILES in proc.stderr and "Traceback" not in proc.stderr


def test_layout_and_profile_flags(flickr_excerpt, tmp_path):
    out = tmp_path / "out"
    args = ["convert", "--to", "qwen2.5-vl", "--resize-profile", "qwen-sft-script", "--layout", "llamafactory"]
    result = runner.invoke(app, [*args, "-i", str(flickr_excerpt), "-o", str(out), "--format", "jsonl", "--quiet"])
    assert result.exit_code == 0, result.output
    info = orjson.loads((out / "dataset_info.json").read_bytes())
    (entry,) = info.values()
    first = orjson.loads((out / entry["file_name"]).read_bytes().splitlines()[0])
    assert first["messages"][0]["content"].startswith("<image>") and len(first["images"]) == 1
    assert (first["resized_width"], first["resized_height"]) != (first["width"], first["height"])
    assert runner.invoke(app, ["validate", str(out), "--source", str(flickr_excerpt)]).exit_code == 0


def test_layout_refused_for_florence(flickr_excerpt, tmp_path):
    args = ["convert", "--to", "florence-2", "--layout", "ms-swift", "-i", str(flickr_excerpt), "-o", str(tmp_path)]
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 2
    assert "--layout does not apply" in result.output
