"""Training on tiny models built in the test: loss, labels, adapters, resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model

from retune_tui.errors import InputError, UserError
from retune_tui.train import dataset as ds
from retune_tui.train.config import build_config, read_recipe
from retune_tui.train.run import last_checkpoint, train

REPO = Path(__file__).resolve().parent.parent


def quick(model_dir, out, **kw):
    settings = dict(task="parity", base=str(model_dir), out=str(out), max_steps=40, problems=200, lengths=(1, 4),
                    lora_r=8, lora_alpha=16, learning_rate=0.01, logging_steps=5, save_steps=20, micro_batch=8)
    settings.update(kw)
    if "data" in kw:  # the file's problems are trained on
        settings.pop("problems")
    if "init_adapter" in kw or kw.get("full"):  # that adapter's LoRA settings, or none
        for name in {"lora_r", "lora_alpha"} - set(kw):
            settings.pop(name)
    return build_config(**settings)


def test_labels_mask_the_prompt_and_padding():
    _, tok = tiny_model("llama")
    ids, labels = ds.tokenize(tok, "What is the parity of [1]?\nSolution: ", "1")
    prompt_len = len(tok("What is the parity of [1]?\nSolution: ")["input_ids"])
    assert labels[:prompt_len] == [ds.IGNORE] * prompt_len
    assert labels[prompt_len:] == ids[prompt_len:] == [tok.convert_tokens_to_ids("1"), tok.eos_token_id]
    batch = ds.collate(tok.pad_token_id)([{"input_ids": ids, "labels": labels},
                                          {"input_ids": ids[:3], "labels": [ds.IGNORE] * 3}])
    assert (batch["labels"][1, 3:] == ds.IGNORE).all() and (batch["attention_mask"][1, 3:] == 0).all()
    assert (batch["input_ids"][1, 3:] == tok.pad_token_id).all()


def _word_tokenizer():
    """A tokenizer that is not one token per character (whole words and digits)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "What", "is", "the", "parity", "of", "[", "]", ",", "?", "Solution", ":",
             "Call", "Return", "Output", "Carry", "+"] + [str(d) for d in range(10)]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.mark.parametrize("word_level", [False, True], ids=["char-table", "tokenizer"])
def test_examples_tokenized_up_front_match_one_by_one(word_level):
    from retune_tui.tokenizer import char_tokenizer

    tok = _word_tokenizer() if word_level else char_tokenizer()
    examples = ds.oracle_examples("parity", "retuning", (1, 6), 30, 0, False)
    examples.append(ds.TextExample("What is the parity of [1, 0]?\nSolution: ", "Call: 1 é", 2))  # not ASCII
    assert (ds.CharTable.of(tok, [examples[0].prompt]) is None) == word_level
    tokenized = ds.TokenizedExamples(examples, tok)
    for i, ex in enumerate(examples):
        ids, labels = ds.tokenize(tok, ex.prompt, ex.completion)
        assert tokenized[i]["input_ids"].tolist() == ids and tokenized[i]["labels"].tolist() == labels
    assert tokenized.lengths().tolist() == [len(ds.tokenize(tok, ex.prompt, ex.completion)[0]) for ex in examples]
    batch = ds.collate(tok.pad_token_id)([tokenized[0], tokenized[len(examples) - 1]])
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].sum() == sum(tokenized.lengths()[[0, -1]])


def test_repeat_long_weights_the_long_contexts_and_keeps_the_short():
    examples = ds.oracle_examples("parity", "retuning", (4, 6), 40, 0, False)
    repeated = ds.with_long_repeated(examples, 5, 3)
    long = [ex for ex in examples if ex.size >= 5]
    assert repeated[: len(examples)] == examples and repeated[len(examples):] == long * 2
    assert ds.with_long_repeated(examples, 5, 1) == examples
    with pytest.raises(InputError, match="no example has a context of size 7 or more; the largest is 6"):
        ds.with_long_repeated(examples, 7, 2)


@pytest.mark.parametrize("task", ["addition", "parity", "dp"])
def test_perturbed_returns_add_other_values_with_the_oracles_completion(task):
    from retune_tui.tasks import get_task
    from retune_tui.tasks.protocol import Method, returned_values

    examples = ds.oracle_examples(task, "retuning", (2, 4), 30, 0, False)
    combining = [ex for ex in examples if returned_values(ex.prompt)]
    mixed = ds.with_perturbed_returns(examples, task, 0.5, seed=1)
    added = mixed[len(examples):]
    assert mixed[: len(examples)] == examples and 0.3 * len(combining) < len(added) < 0.7 * len(combining)
    originals = {ex.prompt.rsplit("Return: ", 1)[0]: ex for ex in combining}
    for ex in added:
        original = originals[ex.prompt.rsplit("Return: ", 1)[0]]  # the same context up to the last Return
        assert returned_values(ex.prompt)[-1] != returned_values(original.prompt)[-1]
        assert ex.completion == get_task(task).oracle(ex.prompt, Method.RETUNING) != original.completion
        assert ex.size == original.size
    assert ds.with_perturbed_returns(examples, task, 0.0, seed=1) is examples


def test_prompt_filler_puts_skills_text_before_most_prompts_and_keeps_what_is_learned():
    examples = ds.oracle_examples("parity", "retuning", (2, 5), 200, 0, False)
    filled = ds.with_prompt_filler(examples, 30, seed=1)
    assert len(filled) == len(examples) and filled == ds.with_prompt_filler(examples, 30, seed=1)
    extra = [new.prompt[: len(new.prompt) - len(old.prompt)] for old, new in zip(examples, filled)]
    assert all(new.prompt.endswith(old.prompt) and (new.completion, new.size) == (old.completion, old.size)
               for old, new in zip(examples, filled))
    assert 0.7 < sum(map(bool, extra)) / len(extra) < 0.9 and max(map(len, extra)) <= 30
    assert len(set(extra)) > 100  # random text of random lengths, not one fixed prefix
    assert ds.with_prompt_filler(examples, 0, seed=1) is examples


def test_position_gap_moves_each_completion_on_and_leaves_its_prompt():
    items = [{"input_ids": list(range(1, 9)), "labels": [ds.IGNORE] * 5 + [6, 7, 8]},
             {"input_ids": [1, 2, 3, 4], "labels": [ds.IGNORE] * 2 + [3, 4]}] * 20
    batch = ds.collate(0, position_gap=10, seed=3)(items)
    positions = batch["position_ids"]
    assert (positions[0::2, :5] == torch.arange(5)).all() and (positions[1::2, :2] == torch.arange(2)).all()
    gaps = torch.cat([positions[0::2, 5] - 5, positions[1::2, 2] - 2])
    assert gaps.min() >= 0 and gaps.max() <= 10 and len(set(gaps.tolist())) > 3
    assert (positions[0::2, 5:].diff(dim=1) == 1).all()  # the completion itself stays contiguous
    assert "position_ids" not in ds.collate(0)(items)


def test_position_stride_spaces_each_example_evenly_by_its_own_random_stride():
    items = [{"input_ids": list(range(1, 9)), "labels": [ds.IGNORE] * 5 + [6, 7, 8]}] * 40
    positions = ds.collate(0, seed=3, position_stride=2.0)(items)["position_ids"]
    assert positions.dtype == torch.float32 and (positions[:, 0] == 0).all()
    steps = positions.diff(dim=1)
    assert torch.allclose(steps, steps[:, :1].expand_as(steps))  # one stride per example
    assert steps.min() >= 1 and steps.max() <= 2 and len(set(steps[:, 0].tolist())) > 30
    gapped = ds.collate(0, position_gap=10, seed=3, position_stride=2.0)(items)["position_ids"]
    jump = gapped[:, 5] - gapped[:, 4]
    stride = gapped[:, 1] - gapped[:, 0]
    assert (jump >= stride - 1e-5).all() and (jump > stride + 1e-3).any()  # the gap, spaced too


def test_written_examples_read_back_as_a_recipes_data(tmp_path):
    examples = ds.oracle_examples("dp", "retuning", (2, 3), 5, 0, False)
    ds.write_examples(tmp_path / "data.jsonl", examples)
    assert ds.file_examples(str(tmp_path / "data.jsonl"), "dp") == examples


def test_an_example_longer_than_the_model_is_refused_before_training():
    from retune_tui.tokenizer import char_tokenizer

    with pytest.raises(InputError, match="more than the model's 20 positions"):
        ds.TokenizedExamples(ds.oracle_examples("parity", "baseline", (8, 8), 2, 0, False), char_tokenizer(), 20)


def test_cosine_time_decays_by_training_time_and_carries_over_a_resume(monkeypatch):
    from retune_tui.train import callbacks

    now = [100.0]
    monkeypatch.setattr(callbacks.TimeCosine, "now", staticmethod(lambda: now[0]))
    factor = callbacks.TimeCosine(minutes=1, warmup=2)
    assert factor(0) == pytest.approx(0.5)  # warming up: step 1 of 2
    now[0] += 30
    assert factor(2) == pytest.approx(0.5)  # half the minute spent: cos(pi/2)
    saved = dict(vars(factor))
    monkeypatch.setattr(callbacks, "_PROCESS", "another process")
    resumed = callbacks.TimeCosine(minutes=1, warmup=2)
    vars(resumed).update(saved)  # what LambdaLR.load_state_dict does
    now[0] += 1000  # time between the runs is not training time
    assert resumed(3) == pytest.approx(0.5)
    now[0] += 30
    assert resumed(4) == pytest.approx(0.0)


def test_a_cosine_time_run_stops_by_time_with_the_rate_at_zero(base, tmp_path, monkeypatch):
    from retune_tui.train import callbacks

    ticks = iter(range(10**6))  # a clock that advances a second at each reading, however fast the machine
    monkeypatch.setattr(callbacks.TimeCosine, "now", staticmethod(lambda: float(next(ticks))))
    config = quick(base, tmp_path / "o", scheduler="cosine_time", warmup=0, max_minutes=0.2, max_steps=100_000,
                   logging_steps=1)
    result = train(config, progress=False)
    assert 2 <= result.steps <= 13  # 12 seconds of budget: one or two readings per step
    rates = [json.loads(line)["learning_rate"] for line in (tmp_path / "o" / "loss.jsonl").read_text().splitlines()]
    assert rates[0] > rates[-1] and rates[-1] < 0.1 * config.learning_rate  # the last logged: one step before the end


def test_curriculum_starts_short_and_widens():
    sizes = [1] * 10 + [2] * 10 + [5] * 10
    sampler = ds.CurriculumSampler(sizes, [s * 10 for s in sizes], 3000, seed=0, curriculum=0.5, batch=1, group=1)
    drawn = [sizes[i] for i in sampler]
    assert max(drawn[:300]) == 1 and max(drawn[-1000:]) == 5
    again = ds.CurriculumSampler(sizes, [s * 10 for s in sizes], 3000, seed=0, curriculum=0.5, batch=1, group=1)
    assert list(again) == list(sampler)


def test_grouping_by_length_keeps_every_index():
    lengths = list(range(100))
    plain = ds.CurriculumSampler([1] * 100, lengths, 512, seed=3, curriculum=0, batch=8, group=1)
    grouped = ds.CurriculumSampler([1] * 100, lengths, 512, seed=3, curriculum=0, batch=8, group=8)
    assert sorted(plain) == sorted(grouped)
    spans = [max(lengths[i] for i in grouped.indices[k:k + 8]) - min(lengths[i] for i in grouped.indices[k:k + 8])
             for k in range(0, 512, 8)]
    assert sum(spans) / len(spans) < 40  # similar lengths within a micro-batch


def test_training_lowers_the_loss_and_writes_an_adapter(base, tmp_path):
    result = train(quick(base, tmp_path / "run"), progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()]
    assert result.steps == 40 and log[-1]["loss"] < 0.9 * log[0]["loss"]
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "retune.json", "loss.png", "tokenizer.json"} <= files
    assert "model.safetensors" not in files  # never a copy of the base
    manifest = json.loads((tmp_path / "run" / "retune.json").read_text())
    assert manifest["task"] == "parity" and manifest["train_lengths"] == [1, 4] and manifest["steps"] == 40


def test_saved_adapter_reloads_with_the_same_logits(base, tmp_path):
    from retune_tui.engine.loading import ModelSpec, load_model
    from retune_tui.train.model import build_model, load_training_tokenizer

    config = quick(base, tmp_path / "run", max_steps=10)
    train(config, progress=False)
    loaded = load_model(ModelSpec(str(base), str(tmp_path / "run"), device="cpu"))
    ids = torch.tensor([loaded.tokenizer("What is the parity of [1, 0]?\nSolution: ")["input_ids"]])
    # The same adapter, rebuilt by hand from its safetensors.
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    fresh = build_model(config, load_training_tokenizer(config), torch.device("cpu"), torch.float32)
    set_peft_model_state_dict(fresh, load_file(tmp_path / "run" / "adapter_model.safetensors"))
    fresh.eval()
    with torch.no_grad():  # loaded for inference, the adapter is merged into the base: equal to rounding
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, fresh(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-5)


def test_an_adapter_on_lm_head_saves_only_lora_weights(base, tmp_path):
    from safetensors import safe_open

    train(quick(base, tmp_path / "run", max_steps=2, lora_targets=["q_proj", "lm_head"]), progress=False)
    with safe_open(tmp_path / "run" / "adapter_model.safetensors", "pt") as saved:
        names = list(saved.keys())
    assert any("lm_head.lora_A" in n for n in names) and all("lora_" in n for n in names)


def test_a_second_stage_starts_from_the_first_adapter(base, tmp_path):
    from retune_tui.engine.loading import ModelSpec, load_model
    from retune_tui.train.model import build_model, load_training_tokenizer

    train(quick(base, tmp_path / "one", max_steps=10), progress=False)
    second = quick(base, tmp_path / "two", max_steps=5, init_adapter=str(tmp_path / "one"),
                   scheduler="cosine", learning_rate=1e-3)
    start = build_model(second, load_training_tokenizer(second), torch.device("cpu"), torch.float32).eval()
    first = load_model(ModelSpec(str(base), str(tmp_path / "one"), device="cpu")).model
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(start(input_ids=ids).logits, first(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
    assert any(p.requires_grad for p in start.parameters())
    train(second, progress=False)
    manifest = json.loads((tmp_path / "two" / "retune.json").read_text())
    assert manifest["lora"]["r"] == 8  # the first stage's rank
    assert manifest["extra"]["init_adapter"] == str(tmp_path / "one")
    train(quick(base, tmp_path / "long", max_steps=2, lengths=(3, 6), init_adapter=str(tmp_path / "two"),
                repeat_long=(5, 3), skills_replay=0.2, perturbed_returns=0.5), progress=False)
    manifest = json.loads((tmp_path / "long" / "retune.json").read_text())
    assert manifest["train_lengths"] == [1, 6] and manifest["extra"]["stage_lengths"] == [3, 6]
    fresh = json.loads((tmp_path / "one" / "retune.json").read_text())["extra"]["start"]
    assert len(fresh) == 12 and manifest["extra"]["start"] == fresh  # every stage names the fresh start
    assert manifest["weighting"]["repeat_long"] == [5, 3] and manifest["weighting"]["skills_replay"] == 0.2
    assert manifest["weighting"]["perturbed_returns"] == 0.5
    with pytest.raises(InputError, match="trained for task 'parity', not 'addition'"):
        train(quick(base, tmp_path / "three", task="addition", lengths=(1, 2), init_adapter=str(tmp_path / "one")),
              progress=False)


@pytest.mark.parametrize(("settings", "message"), [
    (dict(task="multiplication"), "task: unknown task"),
    (dict(lora_r=0), "lora_r: must be at least 1"),
    (dict(precision="fp8"), "precision: choose one of"),
    (dict(lengths=(5, 2)), "lengths: need 1 <= lo <= hi"),
    (dict(learning_rate="fast"), "learning_rate: expected float"),
    (dict(scheduler="cosine_time"), "cosine_time decays over max_minutes"),
    (dict(scheduler="cosine_time", max_minutes=1, curriculum=0.4), "cannot be combined with curriculum"),
    (dict(scheduler="cosine_time", max_minutes=1, warmup=0.1), "warmup: with cosine_time"),
    (dict(repeat_long=(18, 0)), "repeat_long: need \\[size, times\\] both at least 1"),
    (dict(skills_replay=1.0), "skills_replay: must be in"),
    (dict(task="skills", skills_replay=0.5), "skills_replay: mixes skills"),
    (dict(perturbed_returns=1.5), "perturbed_returns: must be in"),
    (dict(method="baseline", perturbed_returns=0.5), "perturbed_returns: only Re-Tuning data"),
    (dict(prompt_filler=-1), "prompt_filler: must be >= 0"),
    (dict(position_gap=-5), "position_gap: must be >= 0"),
    (dict(position_stride=0.5), "position_stride: must be in \\[1, 8\\]"),
    (dict(lengths=[1, 2, 3]), "lengths: expected two whole numbers"),
    (dict(lengths=[1.5, 3]), "lengths: expected two whole numbers"),
    (dict(repeat_long=[5]), "repeat_long: expected two whole numbers"),
    (dict(lora_targets=[1, 2]), "lora_targets: expected names"),
    (dict(warmup=2.5), "warmup: a fraction of the steps"),
    (dict(max_grad_norm=-1.0), "max_grad_norm: must be >= 0"),
    (dict(max_grad_norm=float("nan")), "max_grad_norm: must be >= 0"),
    (dict(weight_decay=float("nan")), "weight_decay: must be a number >= 0"),  # it wrote an adapter of nans
    (dict(weight_decay=float("inf")), "weight_decay: must be a number >= 0"),
    (dict(warmup=float("nan")), "warmup: must be a number >= 0"),
    (dict(warmup=float("inf")), "warmup: must be a number >= 0"),  # a traceback from int()
    (dict(max_minutes=float("nan")), "max_minutes: must be a positive number"),
    (dict(epochs=float("inf"), max_steps=None), "epochs: must be a positive number"),  # a traceback from ceil()
    (dict(seed=-1), "seed: must be in \\[0, 2\\^32\\)"),  # numpy's seed error
    (dict(data_seed=2**32), "data_seed: must be in"),
])
def test_bad_settings_name_the_field(base, tmp_path, settings, message):
    with pytest.raises(InputError, match=message):
        quick(base, tmp_path, **settings)


def test_precision_takes_the_dtype_names_too(base, tmp_path):
    assert quick(base, tmp_path, precision="float32").precision == "fp32"


@pytest.mark.bundled
def test_no_base_given_is_the_bundled_one(tmp_path, monkeypatch):
    from retune_tui.bundled import base_dir

    assert build_config(task="parity", out=str(tmp_path)).base == str(base_dir())
    from retune_tui.bundled import is_base  # eval runs it in float32, as solve does

    assert is_base(os.path.relpath(base_dir())) and not is_base(tmp_path) and not is_base(None)
    monkeypatch.setenv("RETUNE_ASSETS", str(tmp_path))  # an install without assets/
    with pytest.raises(InputError, match="base: give a base model .* the bundled base is not in assets/"):
        build_config(task="parity", out=str(tmp_path))


def test_a_continued_adapter_keeps_its_own_base_when_none_is_given(tmp_path):
    from retune_tui.manifest import Manifest

    (tmp_path / "other-base").mkdir()
    Manifest(task="parity", method="retuning", base=str(tmp_path / "other-base"), base_fingerprint="",
             tokenizer="char", train_lengths=(1, 4)).write(tmp_path / "first")
    config = build_config(task="parity", out=str(tmp_path / "second"), init_adapter=str(tmp_path / "first"))
    assert config.base == str(tmp_path / "other-base")


def test_a_position_gap_past_the_models_positions_is_refused_before_training(base, tmp_path):
    with pytest.raises(InputError, match="position_gap, position_stride: the longest example"):
        train(quick(base, tmp_path / "gap", position_gap=100_000), progress=False)
    assert not (tmp_path / "gap" / "adapter_model.safetensors").exists()


def test_missing_base_is_one_line(tmp_path):
    from retune_tui.errors import UserError

    with pytest.raises(UserError, match="not found"):
        train(build_config(task="parity", base=str(tmp_path / "nope"), out=str(tmp_path / "o")), progress=False)


def test_recipe_with_a_wrong_field(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('task = "parity"\nbase = "x"\nlearnin_rate = 1e-4\n')
    with pytest.raises(InputError, match="unknown field 'learnin_rate'"):
        read_recipe(recipe)


def test_flags_beat_the_recipe(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('task = "parity"\nbase = "x"\nmax_steps = 7\nlora_r = 16\n')
    config = build_config(recipe, max_steps=9)
    assert config.max_steps == 9 and config.lora_r == 16
    recipe.write_text('task = "parity"\nbase = "x"\nepochs = 1.0\n')  # a one-epoch recipe, tried quickly
    config = build_config(recipe, max_steps=50)
    assert config.max_steps == 50 and config.epochs is None
    assert build_config(recipe).epochs == 1.0
    with pytest.raises(InputError, match="give one"):
        build_config(recipe, max_steps=50, epochs=2.0)


def test_cli_bad_inputs_are_one_line():
    from typer.testing import CliRunner

    from retune_tui.cli import app

    for args, message in [(["train", "chess", "--base", "x"], "unknown task"),
                          (["train", "parity"], "give a base model"),  # tests see no assets/
                          (["train", "parity", "--base-config", "/no/such.json"], "base_config: /no/such.json"),
                          (["train", "parity", "--base", "x", "--recipe", "/no/such.toml"], "cannot read recipe")]:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_run_with_other_settings_is_not_overwritten(base, tmp_path):
    train(quick(base, tmp_path / "run", max_steps=5), progress=False)
    with pytest.raises(InputError, match="holds a run with other settings"):
        train(quick(base, tmp_path / "run", max_steps=5, task="addition", lengths=(1, 2)), progress=False)


def test_a_saved_run_matches_its_own_settings_and_one_from_before_new_fields(tmp_path):
    from retune_tui.train.run import _check_previous_run

    config = quick(tmp_path, tmp_path / "run", repeat_long=(3, 2))
    (tmp_path / "run").mkdir()
    saved = config.to_dict()
    (tmp_path / "run" / "train_config.json").write_text(json.dumps(saved))
    _check_previous_run(config, tmp_path / "run")  # the tuple read back as a list is the same setting
    older = {k: v for k, v in quick(tmp_path, tmp_path / "run").to_dict().items()
             if k not in ("repeat_long", "skills_replay", "perturbed_returns")}
    (tmp_path / "run" / "train_config.json").write_text(json.dumps(older))
    _check_previous_run(quick(tmp_path, tmp_path / "run"), tmp_path / "run")  # fields added since: defaults
    with pytest.raises(InputError, match="repeat_long: None there"):
        _check_previous_run(config, tmp_path / "run")


def _train_cli(base, out, steps, extra=()):
    return [sys.executable, "-m", "retune_tui.cli", "train", "parity", "--base", str(base), "--out", str(out),
            "--max-steps", str(steps), "--problems", "200", "--lengths", "1-4", "--lora-r", "8",
            "--learning-rate", "0.01", "--save-steps", "10", "--logging-steps", "5", "--micro-batch", "8",
            "--device", "cpu", *extra]


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_data_order(base, tmp_path):
    """Kill a run after its first checkpoint; re-running it ends where an uninterrupted run does."""
    steps = 60
    subprocess.run(_train_cli(base, tmp_path / "whole", steps), check=True, capture_output=True)
    proc = subprocess.Popen(_train_cli(base, tmp_path / "cut", steps, ["--save-limit", "10"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while last_checkpoint(tmp_path / "cut" / "checkpoints") is None:
        assert proc.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "adapter_model.safetensors").exists()
    done = subprocess.run(_train_cli(base, tmp_path / "cut", steps), check=True, capture_output=True, text=True)
    assert "resumed from" in done.stdout
    from safetensors.torch import load_file

    whole = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    cut = load_file(tmp_path / "cut" / "adapter_model.safetensors")
    assert whole.keys() == cut.keys()
    for key in whole:
        torch.testing.assert_close(whole[key], cut[key], rtol=1e-4, atol=1e-5)
    steps_logged = [json.loads(line)["step"] for line in (tmp_path / "cut" / "loss.jsonl").read_text().splitlines()]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_the_same_command_goes_on_from(base, tmp_path):
    """Ctrl-C after some steps, with no checkpoint due for long: the step reached is kept."""
    steps = 200  # long enough that Ctrl-C lands before the end
    subprocess.run(_train_cli(base, tmp_path / "whole", steps), check=True, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cli(base, cut, steps, ["--save-steps", "1000"]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    while not (cut / "loss.jsonl").exists() or not (cut / "loss.jsonl").read_text().strip():
        assert proc.poll() is None, "the run ended before its first logged step"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    step = int(err.split("interrupted at step ")[1].split()[0])
    assert 5 <= step < steps and err.strip().endswith("the same command goes on from there")
    assert last_checkpoint(cut / "checkpoints").name == f"checkpoint-{step}"
    assert not (cut / "adapter_model.safetensors").exists()  # not finished: no adapter to mistake for one
    done = subprocess.run(_train_cli(base, cut, steps), check=True, capture_output=True, text=True)
    assert f"trained to step {steps} ({steps - step} now)" in done.stdout and "resumed from" in done.stdout
    from safetensors.torch import load_file

    whole = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    for key, value in load_file(cut / "adapter_model.safetensors").items():
        torch.testing.assert_close(whole[key], value, rtol=1e-4, atol=1e-5)


def test_a_stop_asked_for_at_the_last_step_is_a_finished_run(base, tmp_path, monkeypatch):
    import retune_tui.train.run as run
    from retune_tui.errors import Stopped

    class AskedAtOnce(run.StopOnInterrupt):  # as if Ctrl-C came during the first step
        def __init__(self):
            super().__init__()
            self.requested = True

    monkeypatch.setattr(run, "StopOnInterrupt", AskedAtOnce)
    done = train(quick(base, tmp_path / "one", max_steps=1, save_steps=100), progress=False)
    assert done.steps == 1 and (tmp_path / "one" / "adapter_model.safetensors").exists()
    with pytest.raises(Stopped, match="interrupted at step 1 of 3"):
        train(quick(base, tmp_path / "three", max_steps=3, save_steps=100), restart=True, progress=False)
    assert last_checkpoint(tmp_path / "three" / "checkpoints").name == "checkpoint-1"


def test_a_restart_stopped_before_its_end_leaves_nothing_of_the_run_before_to_pass_for_its_own(
        base, tmp_path, monkeypatch):
    import retune_tui.train.run as run
    from retune_tui.errors import Stopped

    train(quick(base, tmp_path / "run", max_steps=2, save_steps=100), progress=False)
    assert all((tmp_path / "run" / name).exists() for name in ("loss.png", "adapter_model.safetensors"))

    class AskedAtOnce(run.StopOnInterrupt):  # as if Ctrl-C came during the first step
        def __init__(self):
            super().__init__()
            self.requested = True

    monkeypatch.setattr(run, "StopOnInterrupt", AskedAtOnce)
    with pytest.raises(Stopped):
        train(quick(base, tmp_path / "run", max_steps=3, save_steps=100), restart=True, progress=False)
    left = {path.name for path in (tmp_path / "run").iterdir()}
    assert not left & {"loss.png", "adapter_model.safetensors", "adapter_config.json", "retune.json"}, left
    assert last_checkpoint(tmp_path / "run" / "checkpoints").name == "checkpoint-1"  # its own, to go on from


def test_an_ignored_ctrl_c_stays_ignored():
    import signal

    from retune_tui.train.callbacks import StopOnInterrupt

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's
    try:
        with StopOnInterrupt().watching():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    with StopOnInterrupt().watching():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_a_run_past_the_steps_asked_for_is_refused(base, tmp_path):
    train(quick(base, tmp_path / "run", max_steps=4, save_steps=4), progress=False)
    with pytest.raises(InputError, match="already trained for 4 steps, past max_steps 2"):
        train(quick(base, tmp_path / "run", max_steps=2, save_steps=4), progress=False)


@pytest.mark.slow
def test_two_processes_on_cpu_make_one_adapter(base, tmp_path, free_port):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port,
           "-m", "retune_tui.cli", *_train_cli(base, tmp_path / "ddp", 10)[3:]]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ddp" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "ddp" / "retune.json").read_text())["steps"] == 10
    assert result.stdout.count("trained 10 steps") == 2  # both ranks finish; only rank 0 writes


def test_position_stride_trains_and_is_recorded(base, tmp_path):
    train(quick(base, tmp_path / "stride", max_steps=6, save_steps=100, position_stride=1.5), progress=False)
    manifest = json.loads((tmp_path / "stride" / "retune.json").read_text())
    assert manifest["weighting"]["position_stride"] == 1.5
    losses = [json.loads(line)["loss"] for line in (tmp_path / "stride" / "loss.jsonl").read_text().splitlines()]
    assert all(loss == loss and loss < 10 for loss in losses)  # fractional ids reached the model: no NaN


def test_position_stride_is_refused_for_a_model_without_rotary_positions(tmp_path):
    path = tmp_path / "gpt2"
    model, tok = tiny_model("gpt2", dtype=torch.float32)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    with pytest.raises(InputError, match="position_stride: needs rotary position embeddings"):
        train(quick(path, tmp_path / "out", position_stride=1.5), progress=False)
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_an_out_folder_holding_other_files_is_refused(base, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "adapter_config.json").write_text('{"mine": 1}')
    with pytest.raises(InputError, match="holds files that are not a retune run"):
        train(quick(base, mine, max_steps=2), progress=False)
    assert (mine / "adapter_config.json").read_text() == '{"mine": 1}'


def test_a_finished_run_run_again_is_left_as_it_was(base, tmp_path):
    first = train(quick(base, tmp_path / "run", max_steps=20, save_steps=10), progress=False)
    manifest = (tmp_path / "run" / "retune.json").read_text()
    again = train(quick(base, tmp_path / "run", max_steps=20, save_steps=10), progress=False)
    assert again.already_done and again.steps == 20 and again.final_loss == first.final_loss
    assert (tmp_path / "run" / "retune.json").read_text() == manifest
    further = train(quick(base, tmp_path / "run", max_steps=30, save_steps=10), progress=False)
    assert not further.already_done and further.steps == 30 and further.final_loss is not None
    # the continuation is of the same fresh start, so `retune average` takes it with the run before
    start = json.loads(manifest)["extra"]["start"]
    assert start and json.loads((tmp_path / "run" / "retune.json").read_text())["extra"]["start"] == start
    restarted = train(quick(base, tmp_path / "run", max_steps=2, save_steps=10), restart=True, progress=False)
    assert restarted.steps == 2
    assert json.loads((tmp_path / "run" / "retune.json").read_text())["extra"]["start"] != start


def test_a_finished_adapter_with_no_checkpoint_is_not_trained_over(base, tmp_path):
    run = tmp_path / "run"
    train(quick(base, run, max_steps=4, save_steps=2), progress=False)
    shutil.rmtree(run / "checkpoints")  # as an adapter copied out of its run, or an average, has none
    weights = (run / "adapter_model.safetensors").read_bytes()
    with pytest.raises(InputError, match="holds a finished adapter and no checkpoint"):
        train(quick(base, run, max_steps=4, save_steps=2), progress=False)
    assert (run / "adapter_model.safetensors").read_bytes() == weights
    train(quick(base, run, max_steps=4, save_steps=2, learning_rate=0.02), restart=True, progress=False)
    assert (run / "adapter_model.safetensors").read_bytes() != weights


def test_restart_with_a_bad_setting_leaves_the_run_before_as_it_was(base, tmp_path):
    run = tmp_path / "run"
    train(quick(base, run, max_steps=4, save_steps=2), progress=False)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(UserError):
        train(quick(base, run, max_steps=4, data=str(tmp_path / "typo.jsonl")), restart=True, progress=False)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_a_data_file_of_another_task_is_refused(tmp_path):
    data = tmp_path / "parity.jsonl"
    ds.write_examples(data, ds.oracle_examples("parity", "retuning", (1, 3), 5, 0, True))
    with pytest.raises(UserError, match="does not hold addition examples"):
        ds.file_examples(str(data), "addition")
    assert ds.file_examples(str(data), "parity")
    paper = tmp_path / "paper.json"
    paper.write_text('[{"input": "x", "output": "y"},\n{"input": "z", "output": "w"}]\n')
    with pytest.raises(UserError, match="one JSON list"):
        ds.file_examples(str(paper), "parity")
    with pytest.raises(UserError, match="does not hold parity scratchpad examples"):
        ds.file_examples(str(data), "parity", "scratchpad")
    assert ds.file_examples(str(data), "parity", "retuning")


def test_a_run_on_a_data_file_records_the_files_sizes_not_the_lengths_setting(base, tmp_path):
    data = tmp_path / "parity.jsonl"
    ds.write_examples(data, ds.oracle_examples("parity", "retuning", (1, 6), 20, 0, True))
    with pytest.raises(InputError, match="lengths: .* holds problems of sizes 1-6, outside 2-3"):
        train(quick(base, tmp_path / "run", data=str(data), lengths=(2, 3), max_steps=2), progress=False)
    train(quick(base, tmp_path / "run", data=str(data), lengths=(1, 10), max_steps=2), progress=False)
    manifest = json.loads((tmp_path / "run" / "retune.json").read_text())
    assert manifest["train_lengths"] == [1, 6] and "problems" not in manifest["weighting"]


@pytest.mark.parametrize(("settings", "message"), [
    (dict(data="d.jsonl", problems=50), "problems: has no effect with data"),
    (dict(data="d.jsonl", reweight=False), "reweight: has no effect with data"),
    (dict(init_adapter="a", lora_r=4), "lora_r: has no effect with init_adapter"),
    (dict(full=True, lora_targets=["q_proj"]), "lora_targets: has no effect with full"),
])
def test_a_setting_another_makes_moot_is_refused(base, tmp_path, settings, message):
    with pytest.raises(InputError, match=message):
        build_config(task="parity", base=str(base), out=str(tmp_path), **settings)


def test_a_dp_files_sizes_are_its_problems_not_its_one_element_calls():
    examples = ds.oracle_examples("dp", "retuning", (3, 4), 10, 0, True)
    assert min(ex.size for ex in examples) == 1
    assert ds.problem_sizes(examples, "dp") == (3, 4)
    assert ds.problem_sizes([*examples, ds.TextExample("not a problem", "x", 9)], "dp") == (3, 4)
    assert ds.problem_sizes(ds.oracle_examples("addition", "retuning", (3, 4), 10, 0, True), "addition") == (1, 4)


def test_repeat_long_and_lengths_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from retune_tui.cli import app

    result = CliRunner().invoke(app, ["train", "parity", "--base", "x", "--repeat-long", "5-2"])
    assert result.exit_code == 2 and "expected SIZE,TIMES like 18,4" in result.output
    help_text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "[size, times]" in help_text and "problem sizes [lo, hi]" in help_text  # not eaten as markup


def test_the_last_step_is_logged_whatever_the_logging_steps(base, tmp_path):
    result = train(quick(base, tmp_path / "run", max_steps=3, logging_steps=50), progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()]
    assert result.final_loss is not None and [r["step"] for r in log] == [3]


def test_restart_starts_over_a_run_that_never_finished_and_replaces_a_finished_one(base, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "loss.jsonl").write_text('{"step": 5, "loss": 1.0}\n')  # all a run killed early leaves
    train(quick(base, run, max_steps=4, save_steps=2), restart=True, progress=False)
    first = (run / "adapter_model.safetensors").read_bytes()
    result = train(quick(base, run, max_steps=4, save_steps=2, learning_rate=0.02), restart=True, progress=False)
    assert not result.already_done and (run / "adapter_model.safetensors").read_bytes() != first
