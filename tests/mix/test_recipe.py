"""Recipe errors name the recipe line (exit 2), through CliRunner and a real subprocess; dry run; examples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mix_fixtures import Fixtures, write_recipe
from typer.testing import CliRunner

from grounding_convert.cli.app import app
from grounding_convert.mix.plan import describe, dry_run
from grounding_convert.mix.recipe import RecipeError, load_recipe

BIN = str(Path(sys.executable).with_name("grounding-convert"))
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


def good(data: Fixtures, tmp_path: Path) -> list[str]:
    return write_recipe(tmp_path / "good.yaml", data).read_text().splitlines()


def line_of(lines: list[str], needle: str) -> int:
    return next(i for i, text in enumerate(lines, 1) if needle in text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("reader: refcoco\n    input", "reader: refcocoo\n    input", "unknown reader 'refcocoo'"),
        ("input: {root}/flickr\n    options", "input: {root}/nowhere\n    options", "does not exist"),
        ("weight: 1.0", "weight: -0.5", "weight must be a finite number >= 0"),
        ("weight: 1.0", "weight: lots", "weight must be a finite number >= 0"),
        ("    tasks: [rec]\n", "    tasks: [rec]\n    wieght: 2\n", "unknown key 'wieght' in a source"),
        ("dedup: off", "dedup: sometimes", "dedup must be one of off, image-text-task"),
        ("    splits: [testA]", "    splits: [testA]\n    option: {x: 1}", "unknown key 'option'"),
        ("options: {split: train}\n    tasks", "options: {splitt: train}\n    tasks", "has no option 'splitt'"),
    ],
)
def test_recipe_errors_exit_2_with_the_line(
    mix_data: Fixtures, tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = "\n".join(good(mix_data, tmp_path)) + "\n"
    old, new = old.replace("{root}", str(mix_data.root)), new.replace("{root}", str(mix_data.root))
    assert old in text
    bad = text.replace(old, new, 1)
    lines = bad.splitlines()
    changed = next(i for i, (a, b) in enumerate(zip(text.splitlines(), lines, strict=False), 1) if a != b)
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(bad)
    with pytest.raises(RecipeError) as info:
        load_recipe(str(recipe))
    assert f"{recipe}:{changed}: " in str(info.value) and message in str(info.value)
    result = CliRunner().invoke(app, ["mix", str(recipe), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{recipe}:{changed}:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_recipe_error_as_a_subprocess(mix_data: Fixtures, tmp_path: Path) -> None:
    lines = good(mix_data, tmp_path)
    at = line_of(lines, "weight:")
    lines[at - 1] = lines[at - 1].replace("1.0", ".nan")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    done = subprocess.run([BIN, "mix", str(recipe), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{recipe}:{at}: weight must be a finite number >= 0, not nan" in done.stderr
    assert "Traceback" not in done.stderr


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("writer: qwen-vl\nsources:\n  - reader: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken.yaml:4: not valid YAML"):
        load_recipe(str(recipe))


def test_an_exclusion_set_with_no_samples_is_an_error(mix_data: Fixtures, tmp_path: Path) -> None:
    text = write_recipe(tmp_path / "r.yaml", mix_data).read_text().replace("splits: [testA]", "splits: [tesA]")
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RecipeError, match="refcoco-testA' has no samples in splits tesA"):
        dry_run(load_recipe(str(tmp_path / "r.yaml")))


def test_dry_run_prints_sources_estimates_and_exclusion_sets(mix_data: Fixtures, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", mix_data)
    result = CliRunner().invoke(app, ["mix", str(recipe), "--dry-run"])
    assert result.exit_code == 0, result.output
    by_coco = sum(mix_data.vg_samples.get(i, 0) for i in mix_data.coco_of_vg)
    by_flickr = sum(mix_data.vg_samples.get(i, 0) for i in mix_data.flickr_of_vg)
    total = sum(mix_data.vg_samples.values())
    assert f"vg (visual-genome, 1 partition(s), tasks rec, weight 1): samples ={total:,}, " in result.output
    assert f"decontaminated ={by_coco + by_flickr:,}" in result.output
    assert "refcoco-testA: " in result.output and f"coco {len(mix_data.all_testa_coco)}" in result.output
    assert f"flickr {len(mix_data.all_test_flickr)}" in result.output
    assert not (tmp_path / "(dry run)").exists()


@pytest.mark.parametrize("name", ["qwen-vl-grounding-sft.yaml", "kosmos2-grit.yaml"])
def test_example_recipes_parse_and_dry_run_on_synth(name: str, tmp_path: Path, monkeypatch) -> None:
    from grounding_convert.synth import generate

    data = tmp_path / "data"
    generate("visual-genome", data / "visual_genome", images=6, seed=1, write_images=False, regions_per_image=3)
    for dataset in ("refcoco", "refcoco+", "refcocog"):
        generate(dataset, data / "refcoco", images=40, seed=2, write_images=False)
    generate("flickr30k-entities", data / "flickr30k_entities", images=12, seed=3, write_images=False)
    generate("visual7w", data / "visual7w", images=4, seed=4, write_images=False)
    generate("grit", data / "grit", images=30, seed=5)
    monkeypatch.setenv("DATA", str(data))
    recipe = load_recipe(str(RECIPES / name))
    plan = dry_run(recipe)
    text = "\n".join(describe(recipe, plan))
    assert recipe.exclude and all(e.samples > 0 and e.records > 0 for e in plan["estimates"])
    for spec in recipe.exclude:
        assert f"  {spec.name}: " in text
    assert {e.name for e in plan["estimates"]} == {s.name for s in recipe.sources}
