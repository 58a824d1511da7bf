"""The Python API (issue 17): ``grounding_convert.convert / read / render / to_dataset``, public names only."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import orjson
import pytest
from typer.main import get_command
from typer.testing import CliRunner

import grounding_convert as gc
from grounding_convert.cli.app import app
from grounding_convert.errors import StrictStop, UsageError

README = Path(__file__).resolve().parent.parent / "README.md"
runner = CliRunner()


def jsonl_records(out: Path) -> dict[str, dict]:
    return {
        record["id"]: record
        for shard in sorted((out / "data").glob("*.jsonl"))
        for record in map(orjson.loads, shard.read_bytes().splitlines())
    }


def test_notebook_read_filter_render_with_two_writers_convert_and_load(flickr_excerpt, tmp_path):
    # read: canonical samples, streamed; filter them in Python
    samples = [s for s in gc.read(str(flickr_excerpt), split="test") if len(s.regions) >= 5 and "man" in s.text]
    assert 10 <= len(samples) < 1000
    assert all(s.split == "test" and len(s.regions) >= 5 for s in samples)

    # render with two writers
    qwen = list(gc.render(samples, "qwen-vl", tasks=["rec"], seed=3))
    kosmos = list(gc.render(samples, "kosmos-2", tasks="grounded-caption", seed=3))
    wanted = {s.id for s in samples}
    assert {r["sample_id"] for r in qwen} == wanted and {r["task"] for r in qwen} == {"rec"}
    assert len(kosmos) == len(samples) and all(r["completion"].count("<phrase>") >= 1 for r in kosmos)
    assert all(
        re.search(r"<box>\(\d{1,3},\d{1,3}\),\(\d{1,3},\d{1,3}\)</box>", r["conversations"][1]["value"]) for r in qwen
    )

    # convert: the same records as render gives, and a folder load_dataset opens
    for writer, tasks, rendered in (("qwen-vl", "rec", qwen), ("kosmos-2", "grounded-caption", kosmos)):
        out = tmp_path / writer
        result = gc.convert(str(flickr_excerpt), str(out), writer=writer, tasks=tasks, seed=3, format="jsonl")
        assert result.reader == "flickr30k-entities" and not result.planned_only
        assert result.read == 1000 and result.read == result.written + result.rejected + result.filtered
        written = jsonl_records(out)
        assert sum(result.records.values()) == len(written)
        assert [written[r["id"]] for r in rendered] == rendered  # render == what convert writes
        loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
        assert sum(split.num_rows for split in loaded.values()) == len(written)
        via_api = gc.to_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
        assert isinstance(via_api, datasets.DatasetDict) and via_api["test"].num_rows == loaded["test"].num_rows
        assert {r["id"] for r in via_api["test"]} >= {r["id"] for r in rendered}


@pytest.mark.parametrize(
    ("option", "value", "line"),
    [
        ("max_records_per_shard", 0, "Invalid value for '--max-records-per-shard': 0 (accepted: a whole number ≥ 1)"),
        (
            "limit",
            -1,
            "Invalid value for '--limit': -1 (accepted: a whole number ≥ 0; 0 only plans, nothing is read or written)",
        ),
        (
            "max_rejects",
            "150%",
            "Invalid value for '--max-rejects': 150% (accepted: a count ≥ 0 like 100, or a percentage from 0% to "
            "100% like 5%)",
        ),
        (
            "workers",
            0,
            "Invalid value for '--workers': 0 (accepted: a whole number ≥ 1, or auto (= the CPUs available))",
        ),
        ("seed", 1.5, "Invalid value for '--seed': 1.5 (accepted: a whole number)"),
        ("min_score", 2, "Invalid value for '--min-score': 2 (accepted: a number from 0 to 1)"),
    ],
)
def test_convert_raises_the_cli_message_and_writes_nothing(flickr_excerpt, tmp_path, option, value, line):
    out = tmp_path / "out"
    with pytest.raises(UsageError) as caught:
        gc.convert(str(flickr_excerpt), str(out), writer="qwen-vl", **{option: value})
    assert str(caught.value) == line
    assert not out.exists()
    cli = runner.invoke(
        app,
        ["convert", "-t", "qwen-vl", "-i", str(flickr_excerpt), "-o", str(out)]
        + [f"--{option.replace('_', '-')}", str(value)],
    )
    assert (cli.exit_code, cli.output.splitlines()) == (2, [f"error: {line}"])  # the same line on the CLI
    assert not out.exists()


def test_option_mistakes_are_usage_errors(flickr_excerpt, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(
        UsageError,
        match=r"^convert has no option 'max_record_per_shard' \(its options: .*"
        r"max_records_per_shard",
    ):
        gc.convert(str(flickr_excerpt), out, writer="qwen-vl", max_record_per_shard=5)
    with pytest.raises(UsageError, match=r"Missing option '--to'"):
        gc.convert(str(flickr_excerpt), out)
    with pytest.raises(UsageError, match=r"^writer 'qwen-vl' has no option 'colour'"):
        gc.convert(str(flickr_excerpt), out, writer="qwen-vl", writer_options={"colour": "red"})
    with pytest.raises(UsageError, match=r"^Invalid value for option 'images_per_partition' of reader "):
        gc.convert(str(flickr_excerpt), out, writer="qwen-vl", reader_options={"images_per_partition": "0"})
    with pytest.raises(UsageError, match=r"^--split-by does not apply to reader 'flickr30k-entities'"):
        gc.convert(str(flickr_excerpt), out, writer="qwen-vl", split_by="unc")
    assert list(tmp_path.iterdir()) == []


def test_limit_zero_only_plans(flickr_excerpt, tmp_path):
    result = gc.convert(str(flickr_excerpt), str(tmp_path / "out"), writer="ofa", limit=0)
    assert result.planned_only and result.partitions == 1 and result.read == 0 and result.shards == []
    assert list(tmp_path.iterdir()) == []


def test_convert_workers_auto_and_sizes_with_units(flickr_excerpt, tmp_path):
    result = gc.convert(
        str(flickr_excerpt),
        str(tmp_path / "out"),
        reader="flickr30k-entities",
        writer="canonical",
        limit=40,
        workers="auto",
        max_shard_bytes="64KiB",
        max_records_per_shard=15,
        format="parquet",
    )
    assert result.read == 40 and len(result.shards) == 3  # 40 samples → 15 + 15 + 10
    assert all((tmp_path / "out" / shard).is_file() for shard in result.shards)


def test_read_checks_options_when_called_and_streams(flickr_excerpt):
    with pytest.raises(UsageError, match=r"^Invalid value for '--limit': -1 "):
        gc.read(str(flickr_excerpt), limit=-1)
    with pytest.raises(UsageError, match=r"^reader 'flickr30k-entities' has no option 'min_score'"):
        gc.read(str(flickr_excerpt), min_score=0.5)
    with pytest.raises(UsageError, match=r"^unknown reader 'flickr'"):
        gc.read(str(flickr_excerpt), reader="flickr")
    stream = gc.read(str(flickr_excerpt), limit=7)
    first = next(stream)
    assert first.id == "flickr30k_entities/1016887272/0"
    assert len([first, *stream]) == 7
    assert list(gc.read(str(flickr_excerpt), limit=0)) == []


def test_read_strict_stops_at_a_rejected_record(tmp_path):
    bad = tmp_path / "bad"
    (bad / "Sentences").mkdir(parents=True)
    (bad / "Annotations").mkdir()
    (bad / "Sentences" / "1.txt").write_text("[/EN#1/people A man] walks .\n")
    (bad / "Annotations" / "1.xml").write_text("<annotation><size><width>10")
    assert list(gc.read(str(bad), reader="flickr30k-entities")) == []
    with pytest.raises(
        StrictStop, match=r"^--strict: .*1\.txt \[caption 0 \(line 1\)\]: bad-record: .*1\.xml: not well-formed"
    ):
        list(gc.read(str(bad), reader="flickr30k-entities", strict=True))


def test_render_skips_what_the_writer_cannot_spell_unless_strict(flickr_excerpt):
    good = next(gc.read(str(flickr_excerpt)))
    broken = dataclasses.replace(good, id="broken/0", image=dataclasses.replace(good.image, width=0))
    records = list(gc.render([broken, good], "qwen-vl", tasks="rec"))
    assert records and {r["sample_id"] for r in records} == {good.id}
    with pytest.raises(StrictStop, match=r"^--strict: broken/0: bad-size: "):
        list(gc.render([broken, good], "qwen-vl", tasks="rec", strict=True))
    with pytest.raises(UsageError, match=r"^writer 'ofa' has no task 'pointing'"):
        gc.render([good], "ofa", tasks=["pointing"])
    with pytest.raises(UsageError, match=r"^Invalid value for option 'language' of writer 'cogvlm': fr "):
        gc.render([good], "cogvlm", language="fr")


def test_to_dataset_refuses_a_folder_that_is_no_output(tmp_path):
    with pytest.raises(UsageError, match=r"has no manifest.json: not a finished grounding-convert output"):
        gc.to_dataset(str(tmp_path))


def test_cli_convert_goes_through_the_api(flickr_excerpt, tmp_path, monkeypatch):
    """One code path: the command calls the function ``grounding_convert.convert`` calls."""
    import grounding_convert.api as api_module
    import grounding_convert.cli.convert as cli_convert

    seen = []
    real = api_module.prepare

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_convert, "prepare", spy)
    result = runner.invoke(
        app, ["convert", "-t", "canonical", "-i", str(flickr_excerpt), "-o", str(tmp_path / "o"), "--limit", "2"]
    )
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0]["limit"] == 2 and seen[0]["writer"] == "canonical"
    assert cli_convert.prepare is spy and api_module.convert.__module__ == "grounding_convert.api"


def test_cli_defaults_are_the_api_defaults():
    defaults = {
        f.name: f.default for f in dataclasses.fields(gc.ConvertOptions) if f.default is not dataclasses.MISSING
    }
    command = get_command(app).commands["convert"]
    compared = 0
    for param in command.params:
        if param.name in defaults:
            assert param.default == defaults[param.name], param.name
            compared += 1
    assert compared >= 25


def test_import_is_light():
    code = "import sys, grounding_convert as gc; print(sorted(m for m in ('pyarrow', 'datasets', 'typer') if m in sys.modules)); print(callable(gc.convert))"  # noqa: E501
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["[]", "True"], proc.stderr


def test_readme_library_example_runs(flickr_excerpt, tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Library use") :]
    code = section[
        section.index("```python\n") + len("```python\n") : section.index("```\n", section.index("```python"))
    ]
    for name in ("convert", "read", "render", "to_dataset"):
        assert f"gc.{name}(" in code
    os.symlink(flickr_excerpt, tmp_path / "flickr30k_entities")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["result"].written > 0 and scope["ds"]["test"].num_rows == sum(scope["result"].records.values())
