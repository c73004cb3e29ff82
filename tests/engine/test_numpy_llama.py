"""The numpy backend computes what transformers computes, and takes only what it computes exactly.

A tiny float32 Llama (grouped-query attention, a LoRA on every layer, the output layer
included) is run by both backends: the logits agree to float rounding, and the two
generators write the same segments through calls, returns and speculation.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny_models import tiny_model

from retune_tui.engine import Runner, numpy_llama
from retune_tui.engine.decoding import Sampling
from retune_tui.engine.generator import CONTEXT
from retune_tui.engine.hf import HFGenerator
from retune_tui.engine.loading import ModelSpec, load_model
from retune_tui.errors import InputError
from retune_tui.manifest import Manifest, config_fingerprint
from retune_tui.solving import Backend
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny Llama (weights large enough to write varied text) and a LoRA on all of it, with manifest."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("numpy")
    model, tok = tiny_model("llama", dtype=torch.float32, init=0.3)
    base = root / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    adapter = root / "adapter"
    lora.save_pretrained(adapter)
    Manifest("addition", "retuning", str(base), config_fingerprint(model.config.to_dict()), "char",
             (1, 15)).write(adapter)
    return base, adapter


def spec(saved, **changes):
    base, adapter = saved
    return ModelSpec(**{"base": str(base), "adapter": str(adapter), "device": "cpu", **changes})


def both(saved, **changes):
    hf = load_model(spec(saved, **changes), task="addition", method="retuning")
    fast = numpy_llama.load(spec(saved, **changes), task="addition", method="retuning", sampling=Sampling())
    assert fast is not None
    return HFGenerator(hf.model, hf.tokenizer, name=hf.name), fast


def shape(trace):
    return ([(n.prompt, [(s.text, s.tokens, s.returned) for s in n.segments], n.answer) for n in trace.walk()],
            trace.finished.status, trace.finished.error)


def test_logits_are_transformers_logits_also_fed_in_pieces(saved):
    hf, fast = both(saved)
    ids = hf.encode("73199 + 21439\nSolution: Call: 3199 + 1439\n")
    assert fast.encode("73199 + 21439\nSolution: Call: 3199 + 1439\n") == ids
    with torch.no_grad():
        expected = hf.model(input_ids=torch.tensor([ids])).logits[0].numpy()
    cache = numpy_llama._Cache()
    [first] = numpy_llama.forward(fast.model, [cache], [ids[:10]], [np.arange(10)], [10])
    [rest] = numpy_llama.forward(fast.model, [cache], [ids[10:]], [np.arange(10, len(ids))], [len(ids) - 10])
    np.testing.assert_allclose(np.concatenate([first, rest]), expected, rtol=1e-4, atol=1e-4)


def test_contexts_fed_together_get_the_logits_each_gets_alone(saved):
    """A batch packs contexts of every length, fresh or cached, into one pass: each one's
    logits are those transformers gives its text alone."""
    hf, fast = both(saved)
    texts = ["73199 + 21439\nSolution: Call: 3199 + 1439\n", "5 + 5\nSolution: ", "12 + 34\nSol"]
    ids = [hf.encode(text) for text in texts]
    with torch.no_grad():
        expected = [hf.model(input_ids=torch.tensor([i])).logits[0].numpy() for i in ids]
    caches = [numpy_llama._Cache() for _ in ids]
    cut = [12, 0, 5]  # the first and last fed in two steps; the second fresh in the second step
    first = numpy_llama.forward(fast.model, [caches[0], caches[2]], [ids[0][:12], ids[2][:5]],
                                [np.arange(12), np.arange(5)], [12, 5])
    rest = numpy_llama.forward(fast.model, caches, [i[c:] for i, c in zip(ids, cut)],
                               [np.arange(c, len(i)) for i, c in zip(ids, cut)], [1, 3, 2])
    np.testing.assert_allclose(np.concatenate([first[0], first[1]]),
                               np.concatenate([expected[0][:12], expected[2][:5]]), rtol=1e-4, atol=1e-4)
    for got, want in zip(rest, expected):
        np.testing.assert_allclose(got, want[-len(got):], rtol=1e-4, atol=1e-4)
    assert [len(got) for got in rest] == [1, 3, 2]


def test_both_backends_write_the_same_traces(saved):
    """Random weights write garbage, calls and returns included: the same garbage, segment for segment."""
    task = get_task("addition")
    problems = [task.parse(p) for p in ("12 + 34", "5 + 5", "999 + 1", "73199 + 21439")]
    hf, fast = both(saved)
    hf_traces = Runner(task, Method.RETUNING, hf).run(problems)
    fast_traces = Runner(task, Method.RETUNING, fast).run(problems)
    assert [shape(t) for t in fast_traces] == [shape(t) for t in hf_traces]
    assert sum(len(s.text) for t in fast_traces for n in t.walk() for s in n.segments) > 50
    assert fast.counters.forwards < fast.counters.generated_tokens  # speculation accepted some guesses


def test_both_backends_write_the_same_traces_in_batches(saved):
    """Many problems at once, more than speculation serves, in batches of 5: the same traces
    as transformers' batch (test_bundled.py checks real recursions, parents resuming beside
    fresh calls)."""
    task = get_task("addition")
    problems = [task.parse(f"{a} + {b}") for a, b in
                [(12, 34), (5, 5), (999, 1), (73199, 21439), (4, 58), (7000, 300), (61, 6), (123, 45678), (9, 9)]]
    hf, fast = both(saved)
    runs = [Runner(task, Method.RETUNING, gen) for gen in (hf, fast)]
    for runner in runs:
        list(runner.events(problems, batch=5))
    hf_traces, fast_traces = (runner.traces for runner in runs)
    assert [shape(t) for t in fast_traces] == [shape(t) for t in hf_traces]
    assert fast.counters.forwards < fast.counters.generated_tokens / 4  # several contexts a forward pass


def test_resuming_after_a_return_equals_encoding_the_whole_text(saved):
    _, fast = both(saved)
    fast.open("a", "12 + 34\nSolution: ", 6)
    while not fast.step(["a"])["a"].done:
        pass
    fast.extend("a", "Return: Carry 0, Output 6\nAnswer: ", 12)
    resumed = ""
    while not (delta := fast.step(["a"])["a"]).done:
        resumed += delta.text
    resumed += delta.text
    text = fast._contexts["a"].text[: -len(resumed) or None]
    fast.open("b", text, 12)
    fresh = ""
    while not (delta := fast.step(["b"])["b"]).done:
        fresh += delta.text
    assert resumed == fresh + delta.text


def test_a_context_past_the_window_ends_its_segment(saved):
    _, fast = both(saved)
    fast.max_positions = 30
    fast.open(0, "123456 + 654321\nSolution: ", 100)
    reasons = []
    while not reasons or not reasons[-1]:
        reasons.append(fast.step([0])[0].reason)
    assert reasons[-1] == CONTEXT and len(fast._contexts[0].ids) <= 30


def test_the_full_model_without_adapter_too(saved):
    hf, fast = both(saved, adapter=None)
    assert fast.name == hf.name
    ids = hf.encode("5 + 5\nSolution: ")
    with torch.no_grad():
        expected = hf.model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    got = numpy_llama.forward(fast.model, [numpy_llama._Cache()], [ids], [np.arange(len(ids))], [1])[0][0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_problems_on_the_cpu_run_in_numpy_one_or_many(saved):
    backend = Backend(spec(saved))
    task = get_task("addition")
    assert isinstance(backend.generator(task, Method.RETUNING), numpy_llama.NumpyGenerator)
    assert isinstance(backend.generator(task, Method.RETUNING, batched=True), numpy_llama.NumpyGenerator)


def test_a_batch_on_the_bundled_base_goes_to_a_gpu_if_there_is_one(saved, tmp_path, monkeypatch):
    """``auto`` solves one problem in numpy even beside a GPU (faster than a GPU's transformers),
    but gives a batch to the GPU."""
    from retune_tui import bundled

    base, adapter = saved
    (tmp_path / "base").symlink_to(base)  # the tiny model as the bundled one
    monkeypatch.setenv(bundled.ASSETS_ENV, str(tmp_path))
    the_spec = ModelSpec(str(tmp_path / "base"), str(adapter), "auto", "float32")
    monkeypatch.setattr(numpy_llama, "_gpu_present", lambda: True)
    assert numpy_llama.load(the_spec, task="addition", method="retuning", sampling=Sampling()) is not None
    with pytest.raises(numpy_llama.Declined, match="a batch, and a GPU"):
        numpy_llama.build(the_spec, task="addition", method="retuning", sampling=Sampling(), batched=True)
    monkeypatch.setattr(numpy_llama, "_gpu_present", lambda: False)
    assert numpy_llama.load(the_spec, task="addition", method="retuning", sampling=Sampling(), batched=True)


def test_an_adapter_for_another_task_is_refused_as_transformers_refuses_it(saved):
    with pytest.raises(InputError, match="trained for task 'addition', not 'parity'"):
        numpy_llama.load(spec(saved), task="parity", method="retuning", sampling=Sampling())
    with pytest.raises(InputError, match="trained for method 'retuning', not 'baseline'"):
        numpy_llama.load(spec(saved), task=None, method="baseline", sampling=Sampling())


@pytest.mark.parametrize(("change", "reason"), [
    ("sampling", "sampling"), ("env", "RETUNE_ENGINE=torch"), ("auto", "device auto"), ("bf16", "dtype bfloat16"),
    ("dora", "adapter settings use_dora"), ("arch", "not a plain LlamaForCausalLM"), ("base", "another base"),
    ("half-weights", "not all float32"),
])
def test_what_numpy_does_not_compute_exactly_goes_to_transformers(saved, tmp_path, monkeypatch, change, reason):
    base, adapter = saved
    sampling, the_spec = Sampling(), spec(saved)
    copy = tmp_path / "copy"
    shutil.copytree(base if change in ("arch", "base", "half-weights") else adapter, copy)
    if change == "sampling":
        sampling = Sampling(temperature=0.7)
    elif change == "env":
        monkeypatch.setenv(numpy_llama.ENGINE_ENV, "torch")
    elif change == "auto":  # a base that is not the bundled one might have a GPU to go to
        the_spec = spec(saved, device="auto")
    elif change == "bf16":
        the_spec = spec(saved, dtype="bfloat16")
    elif change == "dora":
        config = json.loads((copy / "adapter_config.json").read_text())
        (copy / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
        the_spec = spec(saved, adapter=str(copy))
    elif change in ("arch", "base"):  # another architecture; a base other than the adapter's
        config = json.loads((copy / "config.json").read_text())
        changed = {"architectures": ["MistralForCausalLM"]} if change == "arch" else {"rms_norm_eps": 1e-3}
        (copy / "config.json").write_text(json.dumps({**config, **changed}))
        the_spec = spec(saved, base=str(copy))
    elif change == "half-weights":
        from safetensors.numpy import load_file, save_file

        weights = load_file(copy / "model.safetensors")
        save_file({k: v.astype(np.float16) for k, v in weights.items()}, copy / "model.safetensors")
        the_spec = spec(saved, base=str(copy), adapter=None)
    with pytest.raises(numpy_llama.Declined, match=reason):
        numpy_llama.build(the_spec, task="addition", method="retuning", sampling=sampling)
    assert numpy_llama.load(the_spec, task="addition", method="retuning", sampling=sampling) is None


def _edit_json(path, **changes):
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(changes)
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not DROP}))


DROP = object()


def _bf16_weights(path):
    from safetensors.torch import load_file, save_file

    save_file({k: v.to(torch.bfloat16) for k, v in load_file(path).items()}, path)


@pytest.mark.parametrize(("where", "edit", "reason"), [
    ("config.json", {"rope_parameters": {"type": "linear", "factor": 4.0, "rope_theta": 10000.0}}, "not a plain"),
    ("config.json", {"num_hidden_layers": "2"}, "no whole number"),
    ("config.json", {"max_position_embeddings": DROP}, "no whole number"),
    ("config.json", {"rms_norm_eps": None}, "not a plain"),
    ("config.json", {"vocab_size": 99}, "other shapes"),
    ("config.json", {"tie_word_embeddings": True}, "an lm_head.weight of its own"),  # the file's own lm_head
    ("special_tokens_map.json", {"eos_token": "<end>"}, "special tokens that tokenizer.json lacks"),
    ("model.safetensors", _bf16_weights, "bfloat16"),
    ("adapter_config.json", {"target_modules": TARGETS[:-1]}, "holds modules its target_modules does not name"),
    ("adapter_config.json", {"layers_to_transform": [0]}, "picks its modules otherwise"),
    ("adapter_config.json", {"r": 8}, "another rank than r"),
])
def test_files_that_transformers_or_peft_read_otherwise_are_declined(saved, tmp_path, where, edit, reason):
    """Each edit makes transformers or peft compute something else, or refuse: numpy declines it."""
    base, adapter = saved
    shutil.copytree(base, tmp_path / "base")
    shutil.copytree(adapter, tmp_path / "adapter")
    on_adapter = where.startswith("adapter")
    path = tmp_path / ("adapter" if on_adapter else "base") / where
    edit(path) if callable(edit) else _edit_json(path, **edit)
    # a base edited alone (an adapter on it would be declined for its base's fingerprint first)
    the_spec = spec(saved, base=str(tmp_path / "base"), adapter=str(tmp_path / "adapter") if on_adapter else None)
    with pytest.raises(numpy_llama.Declined, match=reason):
        numpy_llama.build(the_spec, task="addition", method="retuning", sampling=Sampling())


def test_truncation_or_padding_kept_in_the_tokenizer_file_is_ignored_as_transformers_ignores_it(saved, tmp_path):
    base, _ = saved
    shutil.copytree(base, tmp_path / "base")
    _edit_json(tmp_path / "base" / "tokenizer.json",
               truncation={"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0})
    the_spec = spec(saved, base=str(tmp_path / "base"), adapter=None)
    fast = numpy_llama.build(the_spec, task=None, method=None, sampling=Sampling())
    text = "73199 + 21439\nSolution: "
    assert fast.encode(text) == load_model(the_spec).tokenizer(text)["input_ids"] and len(fast.encode(text)) > 8


def test_extending_by_no_text_still_gives_a_next_token(saved):
    hf, fast = both(saved)
    for gen in (hf, fast):
        gen.open("a", "12 + 34\nSolution: ", 3)
        while not gen.step(["a"])["a"].done:
            pass
        gen.extend("a", "", 3)
    assert fast.step(["a"])["a"] == hf.step(["a"])["a"]


def test_numpy_runs_on_one_blas_thread_unless_the_environment_says(saved, monkeypatch):
    """Beside a busy process, BLAS threads spin on each other's cores (one_blas_thread)."""
    from threadpoolctl import threadpool_info

    _, fast = both(saved)
    seen = []
    real = numpy_llama.forward

    def recording(*args, **kwargs):
        seen.append({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
        return real(*args, **kwargs)

    monkeypatch.setattr(numpy_llama, "forward", recording)
    for env in (None, "2"):
        if env is not None:
            monkeypatch.setenv("OPENBLAS_NUM_THREADS", env)
        else:
            for name in numpy_llama.THREAD_ENV:
                monkeypatch.delenv(name, raising=False)
        fast.open(env, "12 + 34\nSolution: ", 2)
        fast.step([env])
    assert seen[0] == {1}
    assert seen[1] == {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
