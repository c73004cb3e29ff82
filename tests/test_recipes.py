"""Every shipped recipe loads, validates, and opens with the command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from retune_tui.train.config import build_config

RECIPES = sorted((Path(__file__).resolve().parent.parent / "training").rglob("*.toml"))


@pytest.mark.parametrize("folder", ["llama7b", "bundled"])
def test_there_is_a_recipe_per_task_and_method(folder):
    names = {p.stem.split(".")[0] for p in RECIPES if p.parent.name == folder} - {"base"}
    assert names == {f"{t}-{m}" for t in ("addition", "parity", "dp") for m in ("baseline", "scratchpad", "retuning")}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(p.parent.parent)))
def test_recipe_is_valid_and_says_how_to_run_it(recipe):
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# retune train") and str(recipe.relative_to(recipe.parent.parent.parent)) in first
    config = build_config(recipe)
    assert config.task in recipe.stem or (config.task == "skills" and recipe.stem == "base")
    if recipe.parent.name == "llama7b":
        assert (config.lora_r, config.lora_alpha, config.lora_dropout, config.learning_rate) == (64, 64, 0.05, 2e-4)


# The order build.sh runs a bundled adapter's stages in.
STAGES = ("", ".echo", ".anneal", ".long", ".long2", ".gpu", ".gpu2", ".gpu3", ".gpu4", ".gpu5", ".polish")


@pytest.mark.parametrize("recipe", [p for p in RECIPES if p.parent.name == "bundled"], ids=lambda p: p.stem)
def test_an_adapters_first_stage_is_fresh_and_a_later_one_continues_the_one_before(recipe):
    name, dot, stage = recipe.stem.partition(".")
    present = [s for s in STAGES if recipe.with_name(name + s + ".toml").exists()]
    place = present.index(dot + stage)
    later = build_config(recipe)
    if place == 0:
        assert later.init_adapter is None
        return
    before = build_config(recipe.with_name(name + present[place - 1] + ".toml"))
    assert later.init_adapter == before.out and later.out != before.out
    assert (later.task, later.method, later.base) == (before.task, before.method, before.base)


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "assets" / "adapters").glob("*/retune.json"))
# What a stage's examples look like: a rebuild from the recipes must train on what the shipped adapter did.
SHAPING = ("curriculum", "repeat_long", "skills_replay", "perturbed_returns", "prompt_filler", "position_gap",
           "position_stride")


@pytest.mark.parametrize("manifest", SHIPPED, ids=lambda p: p.parent.name)
def test_an_adapters_last_recipe_shapes_its_examples_as_the_shipped_adapter_was_trained(manifest):
    import json

    from retune_tui.train.config import FIELDS

    recorded = json.loads(manifest.read_text())["weighting"]  # {} for an average of adapters
    if not recorded:
        pytest.skip("an average of adapters: its manifest names the runs it averages")
    folder = Path(__file__).resolve().parent.parent / "training" / "bundled"
    name = manifest.parent.name
    last = [s for s in STAGES if s != ".polish" and (folder / f"{name}{s}.toml").exists()][-1]
    config = build_config(folder / f"{name}{last}.toml").to_dict()
    for key in SHAPING:  # a key a manifest lacks was added since: that run had its default
        value = list(config[key]) if isinstance(config[key], tuple) else config[key]
        assert value == recorded.get(key, FIELDS[key].default), f"{name}{last}.toml: {key}"
