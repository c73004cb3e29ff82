"""`retune average`: the averaged adapter's update is exactly the weighted mean of theirs."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_model

from retune_tui.cli import run_cli
from retune_tui.errors import UserError
from retune_tui.manifest import Manifest, config_fingerprint
from retune_tui.train.average import average_adapters

TARGETS = ["q_proj", "v_proj", "down_proj", "lm_head", "embed_tokens"]


def make_adapter(base, out, *, seed, r=4, alpha=8, rslora=False, task="parity", lengths=(1, 4), targets=TARGETS,
                 start=None):
    """An adapter of random weights on ``base`` with the manifest `retune train` writes."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(seed)
    lora = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, target_modules=targets))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_" in name:
                p.normal_(std=0.3)
    lora.save_pretrained(out, save_embedding_layers=False)
    Manifest(task=task, method="retuning", base=str(base), base_fingerprint=config_fingerprint(model.config.to_dict()),
             tokenizer=str(base), train_lengths=lengths, steps=100 * seed, final_loss=0.01 * seed,
             extra={"start": start} if start else {}).write(out)
    return out


def merged_weights(base, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    return model.merge_and_unload().state_dict()


def test_the_average_is_the_weighted_mean_of_the_updates(base, tmp_path):
    from retune_tui.engine.loading import ModelSpec, load_model

    one = make_adapter(base, tmp_path / "one", seed=1)
    two = make_adapter(base, tmp_path / "two", seed=2, r=2, alpha=3, rslora=True, lengths=(3, 6))
    result = average_adapters([one, two], tmp_path / "avg", [1e308, 1.5e308])  # as 2, 3: their sum would overflow
    assert result.rank == 6 and result.weights == pytest.approx([0.4, 0.6])

    plain = merged_weights(base, tmp_path / "one")  # W + ΔW₁
    other = merged_weights(base, tmp_path / "two")  # W + ΔW₂
    averaged = merged_weights(base, tmp_path / "avg")
    for name, weight in averaged.items():
        torch.testing.assert_close(weight, 0.4 * plain[name] + 0.6 * other[name], rtol=1e-5, atol=1e-6)

    loaded = load_model(ModelSpec(str(base), str(tmp_path / "avg"), device="cpu"))  # merged at float32
    manual, _ = tiny_model("llama", dtype=torch.float32, init=0.3)
    manual.load_state_dict({k: 0.4 * plain[k] + 0.6 * other[k] for k in plain})
    ids = torch.tensor([loaded.tokenizer("What is the parity of [1, 0]?\nSolution: ")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, manual(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-5)

    manifest = json.loads((tmp_path / "avg" / "retune.json").read_text())
    assert manifest["task"] == "parity" and manifest["train_lengths"] == [1, 6]
    assert [(a["adapter"], a["weight"], a["steps"]) for a in manifest["extra"]["averaged"]] == [
        (str(one), pytest.approx(0.4), 100), (str(two), pytest.approx(0.6), 200)]


def test_the_command_writes_an_adapter_and_refuses_to_replace_one(base, tmp_path, capsys):
    one = make_adapter(base, tmp_path / "one", seed=1)
    two = make_adapter(base, tmp_path / "two", seed=2)
    assert run_cli(["average", str(one), str(two), "--out", str(tmp_path / "avg")]) == 0
    assert "averaged 2 adapters (weights 0.5, 0.5)" in capsys.readouterr().out
    before = (tmp_path / "avg" / "adapter_model.safetensors").read_bytes()
    assert run_cli(["average", str(one), str(two), "--out", str(tmp_path / "avg"), "--weights", "1,2"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "avg" / "adapter_model.safetensors").read_bytes() == before
    assert run_cli(["average", str(one), str(two), "--out", str(tmp_path / "avg"), "--weights", "1,2",
                    "--overwrite"]) == 0
    assert (tmp_path / "avg" / "adapter_model.safetensors").read_bytes() != before


@pytest.mark.parametrize("case, message", [
    ("one", "at least two adapters"),
    ("task", "trained for different tasks ('addition', 'parity')"),
    ("targets", "adapt different layers"),
    ("not-an-adapter", "has no adapter_config.json"),
    ("missing", "not found"),
    ("weights", "--weights has 3 values for 2 adapters"),
    ("negative", "--weights must be positive"),
    ("into-itself", "is one of the adapters being averaged"),
    ("twice", "an adapter is given twice"),
    ("a-run-folder", "holds other files than an adapter's (loss.jsonl)"),
    ("broken-config", "is not a LoRA config"),
])
def test_bad_input_is_one_line(base, tmp_path, case, message):
    one = make_adapter(base, tmp_path / "one", seed=1)
    other = {
        "task": lambda: make_adapter(base, tmp_path / "two", seed=2, task="addition"),
        "targets": lambda: make_adapter(base, tmp_path / "two", seed=2, targets=["q_proj"]),
        "not-an-adapter": lambda: base,
        "missing": lambda: tmp_path / "nowhere",
    }.get(case, lambda: make_adapter(base, tmp_path / "two", seed=2))()
    paths, weights, out = [one, other], None, tmp_path / "avg"
    if case == "one":
        paths = [one]
    if case == "twice":
        paths = [one, tmp_path / "." / "one"]
    if case == "weights":
        weights = [1.0, 2.0, 3.0]
    if case == "negative":
        weights = [1.0, -1.0]
    if case == "into-itself":
        out = other
    if case == "a-run-folder":
        out.mkdir()
        (out / "loss.jsonl").write_text("{}")
    if case == "broken-config":
        (other / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        average_adapters(paths, out, weights, overwrite=True)
    assert case == "a-run-folder" or not (tmp_path / "avg").exists()
    assert not (tmp_path / "avg" / "adapter_model.safetensors").exists()


def test_adapters_of_different_fresh_starts_are_refused_and_one_start_is_kept(base, tmp_path):
    one = make_adapter(base, tmp_path / "one", seed=1, start="aaaa")
    other = make_adapter(base, tmp_path / "other", seed=2, start="bbbb")
    unnamed = make_adapter(base, tmp_path / "unnamed", seed=3)  # a manifest from before starts were written
    with pytest.raises(UserError, match="different fresh starts"):
        average_adapters([one, unnamed, other], tmp_path / "avg")
    assert not (tmp_path / "avg").exists()
    later = make_adapter(base, tmp_path / "later", seed=4, start="aaaa")
    average_adapters([one, unnamed, later], tmp_path / "avg")
    assert json.loads((tmp_path / "avg" / "retune.json").read_text())["extra"]["start"] == "aaaa"
