"""The command line, through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.plugins import writer_names

runner = CliRunner()
BIN = str(Path(sys.executable).with_name("grounding-convert"))


def test_list_shows_every_plugin():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in (
        "visual-genome",
        "refcoco",
        "refcoco+",
        "refcocog",
        "visual7w",
        "flickr30k-entities",
        "grit",
        "canonical",
        "ofa",
        "kosmos-2",
        "qwen-vl",
        "cogvlm",
        "grounded-caption",
        "pointing",
    ):
        assert name in result.output


def test_help_names_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("convert", "validate", "finalize", "synth", "demo", "list"):
        assert command in result.output


def test_convert_and_validate(flickr_excerpt, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "convert",
            "--from",
            "flickr30k-entities",
            "--to",
            "qwen-vl",
            "--input",
            str(flickr_excerpt),
            "--output",
            str(out),
            "--tasks",
            "rec,grounded-caption",
            "--format",
            "jsonl",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "total" in result.output and "1,000" in result.output and "2,999" in result.output
    result = runner.invoke(app, ["validate", str(out), "--source", str(flickr_excerpt)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "quantization steps" in result.output


def test_validate_fails_on_a_corrupted_record(flickr_excerpt, tmp_path):
    out = tmp_path / "out"
    assert (
        runner.invoke(
            app,
            [
                "convert",
                "-f",
                "flickr30k-entities",
                "-t",
                "qwen-vl",
                "-i",
                str(flickr_excerpt),
                "-o",
                str(out),
                "--format",
                "jsonl",
                "--quiet",
                "--tasks",
                "rec",
            ],
        ).exit_code
        == 0
    )
    shard = next((out / "data").iterdir())
    lines = shard.read_bytes().splitlines()
    record = orjson.loads(lines[0])
    record["conversations"][1]["value"] = record["conversations"][1]["value"].replace("<box>(", "<box>(1234")
    shard.write_bytes(b"\n".join([orjson.dumps(record)] + lines[1:]) + b"\n")
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 1
    assert "INVALID: 1 problem" in result.output


def test_missing_input_is_one_clear_line(tmp_path):
    result = runner.invoke(
        app,
        [
            "convert",
            "-f",
            "flickr30k-entities",
            "-t",
            "qwen-vl",
            "-i",
            str(tmp_path / "nope"),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


def test_unknown_writer_and_inapplicable_flag(flickr_excerpt, tmp_path):
    result = runner.invoke(app, ["convert", "-t", "llava", "-i", str(flickr_excerpt), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown writer 'llava'" in result.output
    result = runner.invoke(
        app, ["convert", "-t", "qwen-vl", "-i", str(flickr_excerpt), "-o", str(tmp_path / "o"), "--split-by", "unc"]
    )
    assert result.exit_code == 2 and "--split-by does not apply" in result.output


def test_detects_the_reader(flickr_excerpt, tmp_path):
    result = runner.invoke(
        app,
        ["convert", "-t", "canonical", "-i", str(flickr_excerpt), "-o", str(tmp_path / "o"), "--limit", "3", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "flickr30k-entities → canonical" in result.output


def test_subprocess_demo(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [BIN, "demo", "--output", str(tmp_path / "demo")], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    writers = writer_names()  # every installed writer, the new ones included
    for writer in ("qwen-vl", "ofa", "kosmos-2", "cogvlm", "canonical", "qwen2.5-vl", "paligemma", "odvg"):
        assert writer in writers
    for writer in writers:
        assert f"== {writer}" in proc.stdout
        assert (tmp_path / "demo" / writer / "manifest.json").is_file()
    assert proc.stdout.count(": valid") == len(writers)
    assert "INVALID" not in proc.stdout


def test_subprocess_bad_input_exit_code(tmp_path):
    bad = tmp_path / "bad"
    (bad / "Sentences").mkdir(parents=True)
    (bad / "Annotations").mkdir()
    (bad / "Sentences" / "1.txt").write_text("[/EN#1/people A man] walks .\n")
    (bad / "Annotations" / "1.xml").write_text("<annotation><size><width>10")
    proc = subprocess.run(
        [
            BIN,
            "convert",
            "-f",
            "flickr30k-entities",
            "-t",
            "qwen-vl",
            "-i",
            str(bad),
            "-o",
            str(tmp_path / "out"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rejected" in proc.stdout and "Traceback" not in proc.stderr
    rejects = list((tmp_path / "out" / "rejects").glob("*.jsonl"))
    reject = orjson.loads(rejects[0].read_bytes().splitlines()[0])
    assert reject["reason"] == "bad-record" and "1.xml" in reject["message"]
    proc = subprocess.run(
        [
            BIN,
            "convert",
            "-f",
            "flickr30k-entities",
            "-t",
            "qwen-vl",
            "-i",
            str(bad),
            "-o",
            str(tmp_path / "out2"),
            "--quiet",
            "--strict",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "--strict" in proc.stderr and "Traceback" not in proc.stderr
