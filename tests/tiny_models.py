"""Tiny randomly initialised causal LMs of several architectures, built locally (no hub)."""

from __future__ import annotations

import torch

from retune_tui.tokenizer import char_tokenizer

ARCHITECTURES = ("llama", "gpt2", "qwen2", "gpt_neox")


def tiny_model(arch: str, tokenizer=None, seed: int = 0, dtype=torch.float64, init: float = 0.02):
    """A model with a few thousand parameters and the character tokenizer's vocabulary.

    ``init`` is the weights' standard deviation; at the usual 0.02 the output layer is so
    small that a LoRA on attention barely moves the loss, so training tests use more.
    """
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    tok = tokenizer or char_tokenizer()
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, initializer_range=init)
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=1024, **common))
    elif arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=1024, **common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=1024, **common))
    elif arch == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, max_position_embeddings=1024, **common))
    else:
        raise ValueError(arch)
    return model.to(dtype).eval(), tok
