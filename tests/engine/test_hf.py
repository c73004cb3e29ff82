"""The transformers backend on tiny random models of four architectures (no hub).

Models run in float64 so that greedy choices are exact and comparisons are token for
token: alone vs a naive loop, batched vs alone, resumed from the cache vs re-encoded.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import ARCHITECTURES, tiny_model

from retune_tui.engine import Runner
from retune_tui.engine.generator import CALL, EOS, LENGTH
from retune_tui.engine.hf import HFGenerator
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method

PROMPTS = [
    "73199 + 21439\nSolution: ",
    "What is the parity of [1, 0, 1]?\nSolution: ",
    "9 + 9\nSolution: ",
    "Create dp array [1, -2, 3]\nSolution: Call with array minus first element. Call: Create dp array [-2, 3]\n"
    "Return: [3, 3]\nAnswer: ",
]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request):
    return tiny_model(request.param)


def naive_greedy(model, tok, text, n):
    """The slow reference: re-encode the whole text for every token."""
    ids, out = tok(text)["input_ids"], []
    for _ in range(n):
        with torch.no_grad():
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        if token == tok.eos_token_id:
            break
        ids.append(token)
        out.append(token)
    return tok.decode(out)


def generate(gen, keys_and_texts, n):
    """Open each context and step them all together until every segment ends."""
    for key, text in keys_and_texts:
        gen.open(key, text, n)
    outs = {key: "" for key, _ in keys_and_texts}
    live = [key for key, _ in keys_and_texts]
    while live:
        deltas = gen.step(live)
        for key, d in deltas.items():
            outs[key] += d.text
        live = [k for k in live if not deltas[k].done]
    return outs


def test_alone_equals_a_naive_greedy_loop(model):
    m, tok = model
    for text in PROMPTS:
        assert generate(HFGenerator(m, tok), [(0, text)], 12)[0] == naive_greedy(m, tok, text, 12)


def test_batch_equals_each_alone(model):
    m, tok = model
    alone = [generate(HFGenerator(m, tok), [(0, t)], 15)[0] for t in PROMPTS]
    batched = generate(HFGenerator(m, tok), list(enumerate(PROMPTS)), 15)
    assert [batched[i] for i in range(len(PROMPTS))] == alone


def test_resume_from_cache_equals_reencoding(model):
    m, tok = model
    gen = HFGenerator(m, tok, speculate=0)  # no guessed tokens: the count of encoded tokens is exact
    first = generate(gen, [(0, PROMPTS[0])], 8)[0]
    other = generate(gen, [(1, PROMPTS[1])], 5)  # another context runs while 0 waits
    fed = gen.counters.fed_tokens
    returned = "Return: Carry 0, Output 4638\nAnswer: "
    gen.extend(0, returned, 10)
    resumed, steps = "", 0
    while True:
        d = gen.step([0])[0]
        resumed, steps = resumed + d.text, steps + 1
        if d.done:
            break
    full = PROMPTS[0] + first + returned
    assert resumed == naive_greedy(m, tok, full, 10)
    # Encoded on resume: the Return text, plus the last token of the first segment (sampled,
    # never fed), plus each token generated since but the last.
    returned_tokens = len(tok(returned, add_special_tokens=False)["input_ids"])
    assert gen.counters.fed_tokens - fed == returned_tokens + 1 + steps - 1
    assert other


def test_contexts_join_and_leave_the_batch_in_any_order(model):
    """Staggered starts, different lengths, a resumed context: each equals its naive run."""
    m, tok = model
    gen = HFGenerator(m, tok)
    gen.open("a", PROMPTS[0], 6)
    gen.step(["a"])
    gen.open("b", PROMPTS[3], 9)
    texts = {"a": "", "b": ""}
    live = ["a", "b"]
    while live:
        deltas = gen.step(live)
        for k, d in deltas.items():
            texts[k] += d.text
        live = [k for k in live if not deltas[k].done]
    gen.extend("a", "Return: 1\nAnswer: ", 7)
    gen.open("c", PROMPTS[2], 7)
    out = generate(gen, [], 0) or {}
    more = {"a": "", "c": ""}
    live = ["a", "c"]
    while live:
        deltas = gen.step(live)
        for k, d in deltas.items():
            more[k] += d.text
        live = [k for k in live if not deltas[k].done]
    assert more["c"] == naive_greedy(m, tok, PROMPTS[2], 7)
    a_first = naive_greedy(m, tok, PROMPTS[0], 6)
    assert more["a"] == naive_greedy(m, tok, PROMPTS[0] + a_first + "Return: 1\nAnswer: ", 7)
    assert out == {}


def test_speculation_changes_nothing_but_the_number_of_passes(model):
    """Copy-aware guesses are checked by the model: outputs equal plain greedy decoding."""
    m, tok = model
    repetitive = "Copy: 1231231231231231231231\nAnswer: 12312312"
    prompts = PROMPTS + [repetitive]
    plain = HFGenerator(m, tok, speculate=0)
    guessing = HFGenerator(m, tok, speculate=6)
    want = generate(plain, list(enumerate(prompts)), 30)
    assert generate(guessing, list(enumerate(prompts)), 30) == want
    alone = [generate(HFGenerator(m, tok, speculate=6), [(0, p)], 30)[0] for p in prompts]
    assert alone == [want[i] for i in range(len(prompts))]


def test_lookup_finds_the_continuation_of_the_last_tokens():
    from retune_tui.engine.decoding import lookup

    assert lookup([5, 1, 2, 3, 9, 1, 2], 3) == [3, 9, 1]
    assert lookup([1, 2, 3], 2) == []
    assert lookup([4, 4, 4], 2) == [4]


class ScriptedSampling(HFGenerator):
    """A real model forward, but the next tokens come from a script (one context)."""

    def __init__(self, model, tokenizer, script):
        super().__init__(model, tokenizer, speculate=0)
        self.script = list(script)

    def _sample(self, logits, needed, contexts):
        return [[self.script.pop(0)] for _ in needed]


def test_call_stops_at_the_newline_even_inside_a_merged_token():
    m, tok = tiny_model("llama")
    tok.add_tokens(["9\nRe"])
    m.resize_token_embeddings(len(tok))
    merged = tok.convert_tokens_to_ids("9\nRe")
    script = tok("Call: 3199 + 143", add_special_tokens=False)["input_ids"] + [merged]
    gen = ScriptedSampling(m, tok, script)
    gen.open(0, "73199 + 21439\nSolution: ", 100)
    text, delta = "", None
    while delta is None or not delta.done:
        delta = gen.step([0])[0]
        text += delta.text
    assert delta.reason == CALL and text == "Call: 3199 + 1439\n"
    # On resume the context is the truncated text plus the return, tokenized again: the
    # cached tokens are kept and the rest (here the tokenizer merges "9\nRe") is encoded.
    gen.script = [tok.eos_token_id]
    gen.extend(0, "Return: Carry 0, Output 4638\nAnswer: ", 10)
    ctx = gen._contexts[0]
    full = tok("73199 + 21439\nSolution: Call: 3199 + 1439\nReturn: Carry 0, Output 4638\nAnswer: ")["input_ids"]
    assert ctx.ids + ctx.pending == full and ctx.pending[0] == merged
    assert gen.step([0])[0].reason == EOS


def test_segment_budget():
    m, tok = tiny_model("gpt2")
    gen = ScriptedSampling(m, tok, [tok.convert_tokens_to_ids("x")] * 5)
    gen.open(0, "1 + 2\nSolution: ", 3)
    reasons = [gen.step([0])[0].reason for _ in range(3)]
    assert reasons == [None, None, LENGTH]


def test_sampling_is_seeded():
    from retune_tui.engine.decoding import Sampling

    m, tok = tiny_model("qwen2")
    runs = [generate(HFGenerator(m, tok, sampling=Sampling(1.0, 0.9, seed=s)), [(0, PROMPTS[0])], 12)[0]
            for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    # what a context writes depends on the seed and its key, not on what shares its batch
    together = generate(HFGenerator(m, tok, sampling=Sampling(1.0, 0.9, seed=1)), [(1, PROMPTS[1]), (0, PROMPTS[0])],
                        12)
    assert together[0] == runs[0]


def test_runner_with_a_random_model_ends_every_problem(model):
    """A random model writes garbage: every problem still ends, with the reason on its node."""
    m, tok = model
    task = get_task("addition")
    runner = Runner(task, Method.RETUNING, HFGenerator(m, tok, name="tiny"))
    traces = runner.run([task.parse(p) for p in ("12 + 34", "5 + 5", "999 + 1")])
    assert all(t.finished is not None for t in traces)
    for trace in traces:
        if trace.finished.error:
            assert trace.finished.status == "error"


def test_an_error_mid_step_leaves_the_generator_usable():
    m, tok = tiny_model("llama")
    gen = HFGenerator(m, tok)
    real_forward = m.forward
    calls = {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory (simulated)")
        return real_forward(*args, **kwargs)

    m.forward = failing_once
    gen.open(0, PROMPTS[0], 10)
    gen.step([0])
    gen.step([0])
    with pytest.raises(RuntimeError, match="simulated"):
        gen.step([0])
    gen.close(0)
    m.forward = real_forward
    assert generate(gen, [(1, PROMPTS[1])], 8)[1] == naive_greedy(m, tok, PROMPTS[1], 8)


def test_a_context_past_the_models_window_is_an_error_on_its_node():
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = tiny_model("llama")
    torch.manual_seed(0)
    small = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=40))
    task = get_task("addition")
    [trace] = Runner(task, Method.RETUNING, HFGenerator(small.eval(), tok)).run([task.parse("123456 + 654321")])
    assert "context longer than the model's window" in trace.finished.error
