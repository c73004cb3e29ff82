"""Loading models and adapters safely, with one-line errors for what is wrong."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_model

from retune_tui.engine.loading import ModelSpec, load_model
from retune_tui.errors import InputError, UserError
from retune_tui.manifest import Manifest, config_fingerprint
from retune_tui.tasks import Method


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny Llama saved with safetensors and its tokenizer, plus a LoRA adapter with manifest."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("models")
    model, tok = tiny_model("llama", dtype=torch.float32)
    base = root / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_()  # make the adapter change the output
    adapter = root / "adapter"
    lora.save_pretrained(adapter)
    fingerprint = config_fingerprint(model.config.to_dict())
    Manifest("parity", "retuning", str(base), fingerprint, "char", (1, 21)).write(adapter)
    ids = torch.tensor([tok("What is the parity of [1]?\nSolution: ")["input_ids"]])
    with torch.no_grad():
        expected = lora(input_ids=ids).logits
    return root, base, adapter, ids, expected


def test_base_and_adapter_load_merged_with_the_same_logits(saved):
    _, base, adapter, ids, expected = saved
    loaded = load_model(ModelSpec(str(base), str(adapter), device="cpu"), task="parity", method="retuning")
    assert not any("lora" in name for name, _ in loaded.model.named_parameters())  # merged into the base
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, expected, rtol=1e-5, atol=1e-6)
    assert loaded.manifest.task == "parity" and loaded.device.type == "cpu"
    assert next(loaded.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize(("task", "method", "message"), [
    ("addition", None, "trained for task 'parity', not 'addition'"),
    (None, "baseline", "trained for method 'retuning', not 'baseline'"),
])
def test_adapter_for_something_else_is_refused(saved, task, method, message):
    _, base, adapter, _, _ = saved
    with pytest.raises(InputError, match=message):
        load_model(ModelSpec(str(base), str(adapter), device="cpu"), task=task, method=method)


def test_a_full_fine_tune_brings_its_task_and_method_and_refuses_another(saved, tmp_path):
    import shutil

    from retune_tui.solving import Backend

    _, base, _, _, _ = saved
    full = tmp_path / "full"
    shutil.copytree(base, full)
    assert Backend(ModelSpec(str(full))).defaults(None, None) == (None, Method.RETUNING)  # no manifest: no task
    Manifest("skills", "retuning", "random", "", "char", (1, 40)).write(full)  # a pre-trained base: no task's
    assert Backend(ModelSpec(str(full))).defaults(None, None) == (None, Method.RETUNING)
    Manifest("parity", "scratchpad", "random", "", "char", (1, 21)).write(full)
    assert Backend(ModelSpec(str(full))).defaults(None, None) == ("parity", Method.SCRATCHPAD)
    with pytest.raises(InputError, match="model .*full was trained for task 'parity', not 'addition'"):
        load_model(ModelSpec(str(full), device="cpu"), task="addition", method="scratchpad")
    assert load_model(ModelSpec(str(full), device="cpu"), task="parity", method="scratchpad").manifest.task == "parity"


def test_adapter_on_another_base_is_refused(saved, tmp_path):
    _, _, adapter, _, _ = saved
    other, tok = tiny_model("gpt2", dtype=torch.float32)
    other.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    with pytest.raises(InputError, match="was trained on base"):
        load_model(ModelSpec(str(tmp_path / "other"), str(adapter), device="cpu"))


def test_pickled_weights_are_refused_unless_allowed(saved, tmp_path):
    _, base, _, _, _ = saved
    model, tok = tiny_model("llama", dtype=torch.float32)
    model.config.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="--allow-pickle"):
        load_model(ModelSpec(str(tmp_path), device="cpu"))
    assert load_model(ModelSpec(str(tmp_path), device="cpu", allow_pickle=True)).model is not None


def test_remote_code_is_refused(saved, tmp_path):
    _, base, _, _, _ = saved
    target = tmp_path / "remote"
    target.mkdir()
    for f in base.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "evil"  # unknown to transformers: only the shipped code could load it
    config["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (target / "config.json").write_text(json.dumps(config))
    (target / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(UserError, match="trust-remote-code"):
        load_model(ModelSpec(str(target), device="cpu"))


@pytest.mark.parametrize(("spec", "message"), [
    (ModelSpec("/nonexistent/model", device="cpu"), "not found"),
    (ModelSpec("/tmp", device="cpu"), "cannot load base model"),
])
def test_missing_models(spec, message):
    with pytest.raises(UserError, match=message):
        load_model(spec)


def test_bad_device_and_dtype():
    with pytest.raises(InputError, match="unknown dtype"):
        ModelSpec("x", dtype="float8")
    assert ModelSpec("x", dtype="bf16").dtype == "bfloat16"  # train's --precision names work too
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            load_model(ModelSpec("x", device="cuda"))


def test_cli_solves_with_a_model(saved):
    from typer.testing import CliRunner

    from retune_tui.cli import app

    _, base, adapter, _, _ = saved
    result = CliRunner().invoke(app, ["solve", "1 0 1", "--base", str(base), "--adapter", str(adapter),
                                      "--device", "cpu", "--max-segment-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "parity · retuning" in result.output and "expected 0" in result.output
    wrong = CliRunner().invoke(app, ["solve", "12 + 34", "--base", str(base), "--adapter", str(adapter)])
    assert wrong.exit_code == 2 and "not a parity problem" in wrong.output


def test_a_small_model_solving_one_problem_runs_on_one_cpu_thread(monkeypatch):
    from retune_tui.engine.loading import threads_for_one_problem

    model, _ = tiny_model("llama", dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
        threads_for_one_problem(model)
        assert torch.get_num_threads() == 2  # the user's own setting wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        threads_for_one_problem(model)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_file_given_as_a_model_or_an_adapter_is_one_line(saved, tmp_path):
    _, base, *_ = saved
    (tmp_path / "x.jsonl").write_text("{}")
    with pytest.raises(UserError, match="is a file; give the model's folder"):
        load_model(ModelSpec(str(tmp_path / "x.jsonl")))
    with pytest.raises(UserError, match="is a file; give the adapter's folder"):
        load_model(ModelSpec(str(base), adapter=str(tmp_path / "x.jsonl"), device="cpu"))


def test_an_adapter_given_as_the_model_is_one_line(saved):
    _, _, adapter, *_ = saved
    with pytest.raises(UserError, match="is a LoRA adapter, not a model: pass it with --adapter"):
        load_model(ModelSpec(str(adapter), device="cpu"))


def test_a_hub_name_that_cannot_be_downloaded_is_one_line_at_once(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(UserError, match="'someone/no-such-model' is no local folder and not in the Hugging Face "
                                        "cache, and huggingface.co cannot be reached"):
        load_model(ModelSpec("someone/no-such-model"))


def test_a_network_with_no_route_out_is_one_line_after_one_short_try(monkeypatch):
    from huggingface_hub import HfApi, constants

    from retune_tui.engine import loading

    asked = []

    def stalled(self, name, timeout=None, **kwargs):
        asked.append((self.endpoint, name, timeout))
        raise TimeoutError("timed out")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "ENDPOINT", "https://mirror.example:8443")  # HF_ENDPOINT, read at import
    monkeypatch.setattr(HfApi, "model_info", stalled)
    with pytest.raises(UserError, match="mirror.example cannot be reached"):
        loading.check_exists("someone/no-such-model")
    assert asked == [("https://mirror.example:8443", "someone/no-such-model", loading.HUB_TIMEOUT_SECONDS)]


def test_a_hub_that_answers_leaves_the_name_to_transformers(monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from retune_tui.engine import loading

    class Unauthorized(HfHubHTTPError):
        def __init__(self):  # no response object needed here
            Exception.__init__(self, "401 Unauthorized")

    def gated(self, name, timeout=None, **kwargs):
        raise Unauthorized()

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(HfApi, "model_info", gated)
    loading.check_exists("someone/gated-model")  # no error here: transformers asks for a token itself
    monkeypatch.setattr(HfApi, "model_info", lambda self, name, timeout=None, **kwargs: object())
    loading.check_exists("someone/some-model")


def test_a_hub_request_that_hangs_is_given_up_after_the_timeout(monkeypatch):
    import time

    from huggingface_hub import HfApi

    from retune_tui.engine import loading

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(loading, "HUB_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(HfApi, "model_info", lambda self, name, timeout=None, **kwargs: time.sleep(3))
    start = time.monotonic()
    with pytest.raises(UserError, match="cannot be reached"):
        loading.check_exists("someone/slow-model")
    assert time.monotonic() - start < 2


def test_a_hub_that_answers_something_odd_is_still_reachable(monkeypatch):
    from huggingface_hub import HfApi

    from retune_tui.engine import loading

    def odd_reply(self, name, timeout=None, **kwargs):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")  # an HTML page, not JSON

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(HfApi, "model_info", odd_reply)
    loading.check_exists("someone/some-model")  # transformers says what is wrong, if anything


def test_a_name_that_is_no_folder_and_no_hub_name_is_one_line():
    from retune_tui.engine import loading

    with pytest.raises(UserError, match="'bad name!' is neither a local folder nor a valid Hugging Face hub name"):
        loading.check_exists("bad name!")


def test_an_adapter_on_tied_embeddings_is_not_merged(tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_model("gpt2", dtype=torch.float32)
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=["c_attn", "lm_head"],
                                            fan_in_fan_out=True))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_()
    lora.save_pretrained(tmp_path / "adapter", save_embedding_layers=False)
    ids = torch.tensor([tok("1 + 2")["input_ids"]])
    with torch.no_grad():
        expected = lora(input_ids=ids).logits
    loaded = load_model(ModelSpec(str(tmp_path / "base"), str(tmp_path / "adapter"), device="cpu"))
    assert any("lora" in name for name, _ in loaded.model.named_parameters())  # kept apart
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, expected)


def test_a_config_field_of_the_wrong_type_is_one_line(saved, tmp_path):
    """huggingface_hub's strict check of config fields raises neither OSError nor ValueError."""
    import shutil

    from typer.testing import CliRunner

    from retune_tui.cli import app

    _, base, _, _, _ = saved
    shutil.copytree(base, tmp_path / "base")
    config = json.loads((tmp_path / "base" / "config.json").read_text())
    (tmp_path / "base" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "2"}))
    with pytest.raises(UserError, match="cannot load base model .*num_hidden_layers"):
        load_model(ModelSpec(str(tmp_path / "base"), device="cpu"))
    result = CliRunner().invoke(app, ["solve", "1 0 1", "--base", str(tmp_path / "base"), "--device", "cpu"])
    assert result.exit_code == 1 and "expected int, got str" in result.output and "Traceback" not in result.output
