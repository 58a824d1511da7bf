"""Every numeric option of every command refused up front when it cannot work (issue 17).

The options are walked from the typer/click command objects themselves, so a command or numeric option
added later without a checked type, or without a row in ``REFUSED``, fails these tests.  Each refusal is
exit 2, one line naming the option, the value and what is accepted, and nothing written.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.option_types import OptionType, Text
from grounding_convert.plugins import get_reader, get_writer, reader_names, writer_names
from grounding_convert.readers.base import option_type

runner = CliRunner()
BIN = str(Path(sys.executable).with_name("grounding-convert"))
FLICKR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "flickr30k_entities"
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "kosmos2-grit.yaml"

# (command, option) → (a value that cannot work, the exact line printed)
REFUSED: dict[tuple[str, str], tuple[str, str]] = {
    ("convert", "--max-records-per-shard"): (
        "0",
        "error: Invalid value for '--max-records-per-shard': 0 (accepted: a whole number ≥ 1)",
    ),
    ("convert", "--limit"): (
        "-1",
        "error: Invalid value for '--limit': -1 (accepted: a whole number ≥ 0; 0 only plans, nothing is read or "
        "written)",
    ),
    ("convert", "--max-rejects"): (
        "150%",
        "error: Invalid value for '--max-rejects': 150% (accepted: a count ≥ 0 like 100, or a percentage from 0% "
        "to 100% like 5%)",
    ),
    ("convert", "--workers"): (
        "0",
        "error: Invalid value for '--workers': 0 (accepted: a whole number ≥ 1, or auto (= the CPUs available))",
    ),
    ("convert", "--seed"): ("1.5", "error: Invalid value for '--seed': 1.5 (accepted: a whole number)"),
    ("convert", "--max-shard-bytes"): (
        "100",
        "error: Invalid value for '--max-shard-bytes': 100 (accepted: a byte count ≥ 65,536 (64 KiB), e.g. 65536, "
        "64KiB, 512MiB, 1GiB)",
    ),
    ("convert", "--num-workers"): ("0", "error: Invalid value for '--num-workers': 0 (accepted: a whole number ≥ 1)"),
    ("convert", "--worker-index"): (
        "-1",
        "error: Invalid value for '--worker-index': -1 (accepted: a whole number ≥ 0)",
    ),
    ("convert", "--min-score"): ("1.5", "error: Invalid value for '--min-score': 1.5 (accepted: a number from 0 to 1)"),
    ("convert", "--format"): (
        "csv",
        "error: Invalid value for '--format': csv (accepted: one of parquet, jsonl, json, tsv)",
    ),
    ("convert", "--engine"): ("spark", "error: Invalid value for '--engine': spark (accepted: one of local, ray)"),
    ("convert", "--turns"): ("0", "error: Invalid value for '--turns': 0 (accepted: a whole number ≥ 1)"),
    ("convert", "--min-pixels"): ("0", "error: Invalid value for '--min-pixels': 0 (accepted: a whole number ≥ 1)"),
    ("convert", "--max-pixels"): ("-3", "error: Invalid value for '--max-pixels': -3 (accepted: a whole number ≥ 1)"),
    ("convert", "--factor"): ("x", "error: Invalid value for '--factor': x (accepted: a whole number ≥ 1)"),
    ("inspect", "--limit"): (
        "-5",
        "error: Invalid value for '--limit': -5 (accepted: a whole number ≥ 0; 0 only plans, nothing is read or "
        "written)",
    ),
    ("inspect", "--examples"): ("-1", "error: Invalid value for '--examples': -1 (accepted: a whole number ≥ 0)"),
    ("inspect", "--min-score"): ("nan", "error: Invalid value for '--min-score': nan (accepted: a number from 0 to 1)"),
    ("preview", "--n"): ("0", "error: Invalid value for '--n' / '-n': 0 (accepted: a whole number ≥ 1)"),
    ("preview", "--seed"): ("x", "error: Invalid value for '--seed': x (accepted: a whole number)"),
    ("preview", "--tile"): ("8", "error: Invalid value for '--tile': 8 (accepted: a whole number from 16 to 4096)"),
    ("preview", "--scale"): ("0", "error: Invalid value for '--scale': 0 (accepted: a number > 0 and ≤ 16)"),
    ("preview", "--columns"): ("0", "error: Invalid value for '--columns': 0 (accepted: a whole number ≥ 1)"),
    ("synth", "--images"): ("0", "error: Invalid value for '--images': 0 (accepted: a whole number ≥ 1)"),
    ("synth", "--seed"): ("s", "error: Invalid value for '--seed': s (accepted: a whole number)"),
    ("demo", "--format"): ("tsv", "error: Invalid value for '--format': tsv (accepted: one of parquet, jsonl, json)"),
    ("mix", "--workers"): (
        "0",
        "error: Invalid value for '--workers': 0 (accepted: a whole number ≥ 1, or auto (= the CPUs available))",
    ),
    ("mix", "--engine"): ("spark", "error: Invalid value for '--engine': spark (accepted: one of local, ray)"),
    ("mix", "--num-workers"): ("0", "error: Invalid value for '--num-workers': 0 (accepted: a whole number ≥ 1)"),
    ("mix", "--worker-index"): ("-1", "error: Invalid value for '--worker-index': -1 (accepted: a whole number ≥ 0)"),
}


def base_args(command: str, tmp: Path) -> list[str]:
    """A command line that would run (and write under ``tmp``) but for the bad option added to it."""
    return {
        "convert": ["convert", "-t", "qwen-vl", "-i", str(FLICKR), "-o", str(tmp / "out"), "--quiet"],
        "inspect": ["inspect", str(FLICKR)],
        "preview": ["preview", str(tmp / "out"), "--image-root", str(tmp / "img"), "--out", str(tmp / "p.png")],
        "synth": ["synth", "--dataset", "flickr30k-entities", "--output", str(tmp / "synth")],
        "demo": ["demo", "--output", str(tmp / "demo")],
        "mix": ["mix", str(RECIPE), "-o", str(tmp / "out"), "--quiet"],
    }[command]


def _base(hint: object) -> object:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return hint


def cli_options() -> list[tuple[str, str, str, object, OptionType | None]]:
    """(command, first flag, click's hint, value type, checked type) of every option of every command."""
    group = get_command(app)
    out = []
    for info in app.registered_commands:
        name = info.name or info.callback.__name__
        hints = typing.get_type_hints(info.callback, include_extras=True)
        for param in group.commands[name].params:
            if not param.opts[0].startswith("-"):
                continue  # arguments are paths
            hint = hints[param.name]
            meta = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
            kinds = [getattr(getattr(m, "parser", None), "kind", None) for m in meta]
            kind = next((k for k in kinds if k is not None), None)
            base = _base(typing.get_args(hint)[0] if meta else hint)
            out.append((name, param.opts[0], " / ".join(f"'{o}'" for o in param.opts), base, kind))
    return out


CHECKED = [(c, flag, hint, kind) for c, flag, hint, _base_type, kind in cli_options() if kind is not None]


def test_every_numeric_option_has_a_checked_type_and_a_row_in_the_table():
    options = cli_options()
    numeric = {(c, f) for c, f, _h, base, _k in options if base in (int, float)}
    unchecked = sorted((c, f) for c, f, _h, base, kind in options if base in (int, float) and kind is None)
    assert unchecked == [], f"numeric options without a checked type: {unchecked}"
    checked = {(c, f) for c, f, _h, kind in CHECKED}
    assert numeric <= checked
    assert checked == set(REFUSED), f"table rows missing {checked - set(REFUSED)}, stale {set(REFUSED) - checked}"
    assert {c for c, _f in checked} <= {"convert", "inspect", "preview", "synth", "demo", "mix"}  # base_args knows


@pytest.mark.parametrize(("command", "flag"), sorted(REFUSED))
def test_refused_with_one_line_and_nothing_written(tmp_path, command, flag):
    value, line = REFUSED[(command, flag)]
    result = runner.invoke(app, [*base_args(command, tmp_path), flag, value])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []  # no output folder, no shard, no preview file


@pytest.mark.parametrize(("command", "flag", "hint", "kind"), CHECKED, ids=[f"{c}{f}" for c, f, _h, _k in CHECKED])
def test_every_bad_example_of_every_checked_option_is_refused(tmp_path, command, flag, hint, kind):
    for value in kind.bad_examples():
        result = runner.invoke(app, [*base_args(command, tmp_path), flag, value])
        assert result.exit_code == 2, (value, result.output)
        assert result.output.splitlines() == [f"error: Invalid value for {hint}: {value} (accepted: {kind.accepted()})"]
    assert list(tmp_path.iterdir()) == []


def test_workers_auto_and_unit_sizes_are_accepted(tmp_path):
    out = tmp_path / "out"
    args = ["--workers", "auto", "--max-shard-bytes", "64KiB", "--limit", "3", "--format", "jsonl"]
    result = runner.invoke(app, [*base_args("convert", tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert "wrote 1 shard(s)" in result.output and (out / "manifest.json").is_file()


def test_limit_zero_plans_only_and_says_so(tmp_path):
    result = runner.invoke(app, [*base_args("convert", tmp_path), "--limit", "0"])
    assert result.exit_code == 0, result.output
    assert (
        f"plan only (--limit 0): 1 partition(s) planned from {FLICKR}; nothing converted, nothing written to "
        f"{tmp_path / 'out'}" in result.output
    )
    assert list(tmp_path.iterdir()) == []
    result = runner.invoke(app, ["inspect", str(FLICKR), "--limit", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"{FLICKR} read with flickr30k-entities (1 partition(s)) — plan only (--limit 0): nothing read"
    )


def test_worker_index_must_be_below_num_workers(tmp_path):
    result = runner.invoke(app, [*base_args("convert", tmp_path), "--num-workers", "2", "--worker-index", "2"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: Invalid value for '--worker-index': 2 (accepted: a whole number from 0 to 1, one less than "
        "--num-workers 2)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_other_usage_errors_are_one_line_too(tmp_path):
    result = runner.invoke(app, [*base_args("convert", tmp_path), "--max-record-per-shard", "5"])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith("error: No such option: --max-record-per-shard")
    assert "--max-records-per-shard" in line  # click's suggestion
    assert line.endswith("(see 'grounding-convert convert --help')")


# --- -O / -W KEY=VALUE: every field of every installed reader and writer -----------------------------------


def plugin_fields() -> list[tuple[str, str, str, str, OptionType]]:
    """(kind, plugin, flag, key, checked type) for every option field of every installed plugin."""
    out = []
    for kind, names, get, flag in (
        ("reader", reader_names(), get_reader, "-O"),
        ("writer", writer_names(), get_writer, "-W"),
    ):
        for name in names:
            options_cls = get(name).Options
            for f in dataclasses.fields(options_cls):
                checked = option_type(options_cls, f.name)
                if checked is not None:
                    out.append((kind, name, flag, f.name, checked))
    return out


FIELDS = plugin_fields()


def plugin_args(kind: str, name: str, tmp: Path) -> list[str]:
    if kind == "reader":
        return ["convert", "--from", name, "-t", "canonical", "-i", str(tmp / "in"), "-o", str(tmp / "out")]
    return ["convert", "--from", "flickr30k-entities", "-t", name, "-i", str(tmp / "in"), "-o", str(tmp / "out")]


def test_every_numeric_plugin_option_declares_its_range():
    """A reader or writer option that is a number says which numbers work (``option_types.bounded``)."""
    for kind, names, get in (("reader", reader_names(), get_reader), ("writer", writer_names(), get_writer)):
        for name in names:
            options_cls = get(name).Options
            hints = typing.get_type_hints(options_cls)
            for f in dataclasses.fields(options_cls):
                if _base(hints[f.name]) in (int, float):
                    assert "accepts" in f.metadata, f"{kind} {name}: option {f.name} has no bounded(...) range"


@pytest.mark.parametrize(
    ("kind", "name", "flag", "key", "checked"), FIELDS, ids=[f"{k}:{n}:{key}" for k, n, _f, key, _c in FIELDS]
)
def test_plugin_options_of_the_wrong_type_or_range_are_refused(tmp_path, kind, name, flag, key, checked):
    if isinstance(checked, Text):
        assert checked.bad_examples() == []  # any text is a valid path or name
    for value in checked.bad_examples():
        result = runner.invoke(app, [*plugin_args(kind, name, tmp_path), flag, f"{key}={value}"])
        assert result.exit_code == 2, (value, result.output)
        assert result.output.splitlines() == [
            f"error: Invalid value for option {key!r} of {kind} {name!r}: {value} (accepted: {checked.accepted()})"
        ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", reader_names())
def test_unknown_reader_option_is_refused_with_the_known_ones(tmp_path, name):
    result = runner.invoke(app, [*plugin_args("reader", name, tmp_path), "-O", "no_such=1"])
    assert result.exit_code == 2
    known = sorted(f.name.replace("_", "-") for f in dataclasses.fields(get_reader(name).Options))
    assert result.output.splitlines() == [
        f"error: reader {name!r} has no option 'no_such' (its options: {', '.join(known)})"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", writer_names())
def test_unknown_writer_option_is_refused_with_the_known_ones(tmp_path, name):
    result = runner.invoke(app, [*plugin_args("writer", name, tmp_path), "-W", "no_such=1"])
    assert result.exit_code == 2
    assert result.output.splitlines()[0].startswith(f"error: writer {name!r} has no option 'no_such' (its options: ")
    assert list(tmp_path.iterdir()) == []


def test_examples_of_plugin_option_messages(tmp_path):
    cases = {
        ("reader", "flickr30k-entities", "-O", "images_per_partition=0"): (
            "error: Invalid value for option 'images_per_partition' of reader 'flickr30k-entities': 0 "
            "(accepted: a whole number ≥ 1)"
        ),
        ("reader", "grit", "-O", "min_score=2"): (
            "error: Invalid value for option 'min_score' of reader 'grit': 2 (accepted: a number from 0 to 1)"
        ),
        ("writer", "ofa", "-W", "embed_images=maybe"): (
            "error: Invalid value for option 'embed_images' of writer 'ofa': maybe "
            "(accepted: true or false (also yes/no, on/off, 1/0))"
        ),
        ("writer", "qwen-vl", "-W", "language=fr"): (
            "error: Invalid value for option 'language' of writer 'qwen-vl': fr (accepted: one of en, zh, mixed)"
        ),
    }
    for (kind, name, flag, pair), line in cases.items():
        result = runner.invoke(app, [*plugin_args(kind, name, tmp_path), flag, pair])
        assert (result.exit_code, result.output.splitlines()) == (2, [line])
    assert list(tmp_path.iterdir()) == []


def test_synth_generator_options_are_checked(tmp_path):
    base = ["synth", "--dataset", "grit", "--output", str(tmp_path / "s")]
    result = runner.invoke(app, [*base, "-O", "fail_rate=2"])
    assert (result.exit_code, result.output.splitlines()) == (
        2,
        ["error: Invalid value for option 'fail_rate' of synth 'grit': 2 (accepted: a number from 0 to 1)"],
    )
    result = runner.invoke(app, [*base, "-O", "layuot=img2dataset"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: synth 'grit' has no option 'layuot' (its options: layout, shards, row_group_size, "
        "samples_per_shard, image_size, fail_rate)"
    ]
    assert list(tmp_path.iterdir()) == []


# --- the cases of the issue, as a user runs them ------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--max-records-per-shard", "--limit", "--max-rejects", "--workers"])
def test_issue_cases_as_real_subprocesses(tmp_path, flag):
    value, line = REFUSED[("convert", flag)]
    out = tmp_path / "out"
    proc = subprocess.run(
        [BIN, "convert", "-f", "flickr30k-entities", "-t", "qwen-vl", "-i", str(FLICKR), "-o", str(out), flag, value],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (2, "", [line])
    assert not out.exists()
