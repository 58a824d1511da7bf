"""grounding-convert mix: decontamination, weights, dedup, caps, shuffle, determinism, resume, card, CLI."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from mix_fixtures import Fixtures, write_recipe
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.engine.runner import RunOptions
from grounding_convert.mix import shuffle
from grounding_convert.mix.keys import CAP_BINS
from grounding_convert.mix.recipe import load_recipe
from grounding_convert.mix.runner import run_mix

BIN = str(Path(sys.executable).with_name("grounding-convert"))


def mix(recipe: Path, out: Path, **run) -> dict:
    result = run_mix(load_recipe(str(recipe)), str(out), RunOptions(progress=False, **run))
    return result.finalized


def rows(out: Path) -> list[dict]:
    return [r for f in sorted((out / "data").glob("train-*.parquet")) for r in pq.read_table(f).to_pylist()]


def digest(out: Path) -> dict[str, str]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and "_progress" not in p.parts and "rejects" not in p.parts)
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def vg_image(sample_id: str) -> int | None:
    parts = sample_id.split("/")
    return int(parts[1]) if parts[0] == "visual_genome" else None


def source(manifest: dict, name: str) -> dict:
    return next(s for s in manifest["sources"] if s["name"] == name)


# --- decontamination -------------------------------------------------------------------------------


def test_exactly_the_planted_overlaps_are_removed_and_counted_per_set(mix_data: Fixtures, tmp_path: Path) -> None:
    manifest = mix(write_recipe(tmp_path / "r.yaml", mix_data, shard=50), tmp_path / "out")
    vg = source(manifest, "vg")
    by_coco = sum(mix_data.vg_samples.get(i, 0) for i in mix_data.coco_of_vg)
    by_flickr = sum(mix_data.vg_samples.get(i, 0) for i in mix_data.flickr_of_vg)
    assert by_coco > 0 and by_flickr > 0
    assert vg["samples_decontaminated"] == {"refcoco-testA": by_coco, "flickr-test": by_flickr}
    assert source(manifest, "refcoco")["samples_decontaminated"] == {"refcoco-testA": 0, "flickr-test": 0}
    seen = {vg_image(r["sample_id"]) for r in rows(tmp_path / "out")} - {None}
    planted = set(mix_data.coco_of_vg) | set(mix_data.flickr_of_vg)
    assert seen == set(mix_data.vg_samples) - planted  # every other VG image is there, none of the planted
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| refcoco-testA | refcoco | testA |" in card and f"| {by_coco:,} | 0 | 0 |" in card


def test_no_image_key_of_an_evaluation_set_in_canonical_output_and_present_without_exclude(
    mix_data: Fixtures, tmp_path: Path
) -> None:
    for exclude in (True, False):
        recipe = write_recipe(tmp_path / f"r{exclude}.yaml", mix_data, exclude=exclude)
        text = recipe.read_text().replace("writer: qwen-vl", "writer: canonical").replace("tasks: [rec, reg]", "")
        recipe.write_text(text.replace("    tasks: [rec]\n", ""))
        mix(recipe, tmp_path / f"out{exclude}")
        keys = [r["image"]["keys"] for r in rows(tmp_path / f"out{exclude}")]
        coco = {k["coco"] for k in keys if k["coco"] is not None}
        flickr = {k["flickr"] for k in keys if k["flickr"] is not None}
        overlap = (coco & mix_data.all_testa_coco) | (flickr & mix_data.all_test_flickr)
        if exclude:
            assert not overlap
        else:  # the VG images carrying evaluation ids are back (RefCOCO/Flickr sources read train only)
            with_samples = [i for i in mix_data.vg_samples]  # VG image 3 has no regions, so no samples
            assert {c for i, c in mix_data.coco_of_vg.items() if i in with_samples} <= coco
            assert {f for i, f in mix_data.flickr_of_vg.items() if i in with_samples} <= flickr


def test_without_exclude_the_planted_samples_are_present(mix_data: Fixtures, tmp_path: Path) -> None:
    manifest = mix(write_recipe(tmp_path / "r.yaml", mix_data, exclude=False), tmp_path / "out")
    assert source(manifest, "vg")["samples_decontaminated"] == {}
    seen = {vg_image(r["sample_id"]) for r in rows(tmp_path / "out")} - {None}
    assert seen == set(mix_data.vg_samples)


# --- weights, caps, dedup --------------------------------------------------------------------------


def _vg_only(tmp_path: Path, data_root: Path, weight: float, seed: int, extra: str = "") -> Path:
    recipe = tmp_path / f"w{weight}-{seed}.yaml"
    recipe.write_text(
        f"writer: qwen-vl\nseed: {seed}\nsources:\n  - reader: visual-genome\n    input: {data_root}\n"
        f"    tasks: [rec]\n    weight: {weight}\n{extra}"
    )
    return recipe


@pytest.fixture(scope="module")
def big_vg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    from grounding_convert.synth import generate

    root = tmp_path_factory.mktemp("bigvg")
    counts = generate("visual-genome", root, images=300, seed=11, write_images=False, regions_per_image=5)
    return root, counts["samples"]


def test_weight_half_keeps_about_half_deterministically(big_vg: tuple[Path, int], tmp_path: Path) -> None:
    root, n = big_vg
    ids = {}
    for seed in (0, 0, 1):
        out = tmp_path / f"out{len(ids)}-{seed}"
        manifest = mix(_vg_only(tmp_path, root, 0.5, seed), out)
        kept = [r["sample_id"] for r in rows(out)]
        # tolerance: 4 standard deviations of a Binomial(n, 0.5)
        assert abs(len(kept) - n / 2) <= 4 * math.sqrt(n * 0.25), (len(kept), n)
        assert manifest["sources"][0]["samples_dropped_by_weight"] == n - len(kept)
        ids.setdefault(seed, []).append(sorted(kept))
    assert ids[0][0] == ids[0][1]  # same seed, same samples
    assert ids[0][0] != ids[1][0]  # another seed, another half


def test_weight_two_repeats_every_sample_with_distinct_ids_and_draws(big_vg: tuple[Path, int], tmp_path: Path) -> None:
    root, n = big_vg
    mix(_vg_only(tmp_path, root, 2.0, 0), tmp_path / "out")
    records = rows(tmp_path / "out")
    assert len(records) == 2 * n
    assert len({r["id"] for r in records}) == 2 * n
    first = {r["sample_id"]: r for r in records if "/w1" not in r["sample_id"]}
    second = {r["sample_id"][: -len("/w1")]: r for r in records if r["sample_id"].endswith("/w1")}
    assert first.keys() == second.keys() and len(first) == n
    prompts = [(first[k]["conversations"][0]["value"], second[k]["conversations"][0]["value"]) for k in first]
    assert sum(a != b for a, b in prompts) > n // 4  # the copies draw their own phrasings


def test_weight_one_and_a_half(big_vg: tuple[Path, int], tmp_path: Path) -> None:
    root, n = big_vg
    mix(_vg_only(tmp_path, root, 1.5, 0), tmp_path / "out")
    assert abs(len(rows(tmp_path / "out")) - 1.5 * n) <= 4 * math.sqrt(n * 0.25)


def test_max_samples_is_an_upper_bound_within_one_hash_bin(big_vg: tuple[Path, int], tmp_path: Path) -> None:
    root, n = big_vg
    cap = n // 3
    manifest = mix(_vg_only(tmp_path, root, 1.0, 0, f"    max_samples: {cap}\n"), tmp_path / "out")
    written = len(rows(tmp_path / "out"))
    # one bin holds about n / CAP_BINS samples; 4 standard deviations of it plus one
    assert cap - (n / CAP_BINS + 4 * math.sqrt(n / CAP_BINS) + 1) <= written <= cap
    assert manifest["sources"][0]["records_capped"] == n - written


def test_dedup_keeps_one_copy_from_the_first_source(mix_data: Fixtures, tmp_path: Path) -> None:
    from mix_fixtures import samples_of

    from grounding_convert.readers.refcoco import RefCocoReader

    folder = mix_data.root / "refcoco_data" / "refcoco"
    text = "writer: qwen-vl\ndedup: {dedup}\nsources:\n" + "".join(
        f"  - name: {name}\n    reader: refcoco\n    input: {folder}\n    tasks: [rec]\n" for name in "ab"
    )
    results = {}
    for dedup in ("off", "image-text-task"):
        recipe = tmp_path / f"{dedup}.yaml"
        recipe.write_text(text.format(dedup=dedup))
        results[dedup] = (mix(recipe, tmp_path / dedup), rows(tmp_path / dedup))
    off_manifest, off_rows = results["off"]
    on_manifest, on_rows = results["image-text-task"]
    samples = samples_of(RefCocoReader(), folder)
    assert source(off_manifest, "a")["records_written"] == source(off_manifest, "b")["records_written"] == len(samples)
    assert len(off_rows) == 2 * len(samples)
    # expected: one record per (COCO image, expression up to case/spaces): the same one, from source a
    unique = {(s.image.keys["coco"], " ".join(s.text.split()).casefold()) for s in samples}
    assert len(unique) < len(samples)  # the synth repeats short expressions ("left person") on an image
    a, b = source(on_manifest, "a"), source(on_manifest, "b")
    assert a["records_written"] == len(on_rows) == len(unique)
    assert a["records_deduplicated"] == len(samples) - len(unique)
    assert b["records_written"] == 0 and b["records_deduplicated"] == b["records_rendered"] == len(samples)


# --- shuffle, determinism, resume ------------------------------------------------------------------


def test_every_shard_mixes_sources(mix_data: Fixtures, tmp_path: Path) -> None:
    mix(write_recipe(tmp_path / "r.yaml", mix_data, shard=40), tmp_path / "out")
    shards = sorted((tmp_path / "out" / "data").glob("train-*.parquet"))
    assert len(shards) > 5
    for shard in shards:
        datasets = {sid.split("/")[0] for sid in pq.read_table(shard, columns=["sample_id"]).column(0).to_pylist()}
        assert len(datasets) >= 2, (shard.name, datasets)
    first = [r["sample_id"].split("/")[0] for r in rows(tmp_path / "out")[:30]]
    assert len(set(first)) == 3  # interleaved from the start, not source after source


def test_byte_identical_for_one_and_two_workers_and_array_slices(mix_data: Fixtures, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", mix_data, shard=40, dedup="image-text-task")
    mix(recipe, tmp_path / "one")
    mix(recipe, tmp_path / "two", workers=2)
    for index in (1, 0):
        run_mix(
            load_recipe(str(recipe)),
            str(tmp_path / "arr"),
            RunOptions(progress=False, num_workers=2, worker_index=index),
        )
    result = CliRunner().invoke(app, ["finalize", str(tmp_path / "arr")])
    assert result.exit_code == 0, result.output
    one = digest(tmp_path / "one")
    assert one == digest(tmp_path / "two") == digest(tmp_path / "arr")
    assert any(name.startswith("data/train-") for name in one) and "manifest.json" in one


def test_interrupted_shuffle_resumes_to_the_same_bytes(
    mix_data: Fixtures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", mix_data, shard=40)
    mix(recipe, tmp_path / "clean")
    calls = {"n": 0}
    original = shuffle.ShardSink.add_batch

    def dying(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(shuffle.ShardSink, "add_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        mix(recipe, tmp_path / "out")
    monkeypatch.undo()
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(Exception, match="not empty"):
        mix(recipe, tmp_path / "out")
    mix(recipe, tmp_path / "out", resume=True)
    assert digest(tmp_path / "out") == digest(tmp_path / "clean")


def test_killed_process_resumes_to_the_same_bytes(mix_data: Fixtures, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", mix_data, shard=40)
    mix(recipe, tmp_path / "clean")
    cmd = [BIN, "mix", str(recipe), "-o", str(tmp_path / "out"), "--quiet"]
    for _attempt in range(5):  # kill after the first committed partition, before the run could finish
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((tmp_path / "out" / "_progress").glob("stage-*.json")):
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not (tmp_path / "out" / "manifest.json").exists():
            break
    assert not (tmp_path / "out" / "manifest.json").exists(), "the kill never landed before the end"
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "out") == digest(tmp_path / "clean")


def test_card_and_manifest_report_every_source(mix_data: Fixtures, tmp_path: Path) -> None:
    manifest = mix(write_recipe(tmp_path / "r.yaml", mix_data, vg_weight=2.0), tmp_path / "out")
    on_disk = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert on_disk["sources"] == manifest["sources"]
    assert [s["name"] for s in manifest["sources"]] == ["vg", "refcoco", "flickr"]
    total = sum(s["records_written"] for s in manifest["sources"])
    assert total == len(rows(tmp_path / "out")) == manifest["totals"]["records_written"]
    for s in manifest["sources"]:
        assert s["proportion"] == pytest.approx(s["records_written"] / total, abs=1e-6)
        assert s["samples_sampled"] == s["samples_kept"] - s["samples_dropped_by_weight"] + s["samples_added_by_weight"]
    vg = source(manifest, "vg")
    assert vg["samples_added_by_weight"] == vg["samples_kept"]
    card = (tmp_path / "out" / "README.md").read_text()
    for s in manifest["sources"]:
        assert (
            f"| {s['name']} | {s['reader']} |" in card
            and f"| {s['records_written']:,} | {s['proportion']:.1%} |" in card
        )
    assert not (tmp_path / "out" / "_progress" / "spill").exists()


def test_ray_engine_gives_the_same_bytes(mix_data: Fixtures, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", mix_data, shard=40, dedup="image-text-task")
    mix(recipe, tmp_path / "local")
    mix(recipe, tmp_path / "ray", engine="ray", workers=2)
    assert digest(tmp_path / "ray") == digest(tmp_path / "local")


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_text_containers_hold_the_same_records(mix_data: Fixtures, tmp_path: Path, fmt: str) -> None:
    import json

    mix(write_recipe(tmp_path / "p.yaml", mix_data, shard=40), tmp_path / "parquet")
    manifest = mix(write_recipe(tmp_path / "t.yaml", mix_data, shard=40, format=fmt), tmp_path / fmt)
    shards = sorted((tmp_path / fmt / "data").glob(f"train-*.{fmt}"))
    if fmt == "json":
        records = [r for f in shards for r in json.loads(f.read_text())]
    else:
        records = [orjson.loads(line) for f in shards for line in f.read_bytes().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows(tmp_path / "parquet")]
    assert len(records) == manifest["totals"]["records_written"]


def test_tsv_is_refused_with_the_recipe_line(mix_data: Fixtures, tmp_path: Path) -> None:
    from grounding_convert.mix.recipe import RecipeError

    recipe = write_recipe(tmp_path / "r.yaml", mix_data, format="tsv")
    with pytest.raises(RecipeError, match=r"r.yaml:3: mix writes parquet, jsonl, json, not 'tsv'"):
        load_recipe(str(recipe))


# --- the user's files and a second run (issue 11 rules, as for convert) ----------------------------------


def test_mix_output_that_is_or_contains_a_source_input_is_refused_and_the_input_is_intact(tmp_path: Path) -> None:
    from grounding_convert.synth import generate

    data = tmp_path / "vg"
    generate("visual-genome", data, images=5, seed=3, write_images=False)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    recipe = _vg_only(tmp_path, data, 1.0, 0)
    for out in (data, tmp_path):
        result = CliRunner().invoke(app, ["mix", str(recipe), "--output", str(out), "--overwrite"])
        assert result.exit_code == 2, result.output
        assert "input" in result.output and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


def test_a_second_mix_into_a_held_output_is_refused_naming_the_lock(tmp_path: Path) -> None:
    from grounding_convert.engine.lock import OutputLock
    from grounding_convert.output.storage import Store
    from grounding_convert.synth import generate

    data = tmp_path / "vg"
    generate("visual-genome", data, images=5, seed=3, write_images=False)
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(Store(str(out)), command="convert"):  # another run of this process holds it
        result = CliRunner().invoke(app, ["mix", str(_vg_only(tmp_path, data, 1.0, 0)), "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "in use by another run" in result.output and ".grounding-convert.lock" in result.output
    assert sorted(p.name for p in out.iterdir()) == []
