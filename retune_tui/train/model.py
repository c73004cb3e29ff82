"""The model being trained: a base (loaded or randomly initialised) with a LoRA adapter."""

from __future__ import annotations

import warnings
from typing import Any

from retune_tui.engine.loading import (
    ModelSpec,
    attach_adapter,
    check_exists,
    load_base,
    load_tokenizer,
    model_file_errors,
)
from retune_tui.errors import InputError, UserError, first_line
from retune_tui.train.config import TrainConfig

#: Attention projections to adapt, per architecture family, as module-name suffixes.
#: The first family whose every name is found in the model is used.
LORA_TARGETS: list[list[str]] = [
    ["q_proj", "k_proj", "v_proj", "o_proj"],  # Llama, Mistral, Qwen2, Gemma, OPT
    ["qkv_proj", "o_proj"],  # Phi-3
    ["attention.query_key_value", "attention.dense"],  # GPT-NeoX, Pythia
    ["self_attention.query_key_value", "self_attention.dense"],  # Falcon, Bloom
    ["attn.c_attn", "attn.c_proj"],  # GPT-2
    ["Wqkv", "out_proj"],  # MPT
]


def lora_targets(model: Any) -> list[str]:
    """The attention projections of this architecture (q/k/v/o or their fused forms)."""
    names = [name for name, _ in model.named_modules()]
    for family in LORA_TARGETS:
        if all(any(name == t or name.endswith("." + t) for name in names) for t in family):
            return family
    raise UserError("cannot tell which modules are this architecture's attention projections; "
                    "name them with --lora-targets")


def load_training_tokenizer(config: TrainConfig) -> Any:
    if config.tokenizer == "char":
        from retune_tui.tokenizer import char_tokenizer

        return char_tokenizer()
    if config.base is not None:
        check_exists(config.base)
    source = config.tokenizer or config.base
    if source is None:
        raise InputError("tokenizer: training from --base-config needs --tokenizer (a path, or 'char')")
    return load_tokenizer(ModelSpec(source, trust_remote_code=config.trust_remote_code))


def build_model(config: TrainConfig, tokenizer: Any, device: Any, dtype: Any) -> Any:
    """The base model (from weights, or random from an architecture config), ready to train."""
    if config.base is not None:
        model = load_base(ModelSpec(config.base, allow_pickle=config.allow_pickle,
                                    trust_remote_code=config.trust_remote_code), device, dtype)
    else:
        model = random_model(config.base_config, tokenizer, dtype, device)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the model only "
                         f"{model.get_input_embeddings().weight.shape[0]} embeddings")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.full:
        return model
    if config.init_adapter is not None:
        return _continue_adapter(model, config)
    from peft import LoraConfig, get_peft_model

    targets = config.lora_targets or lora_targets(model)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM",
                      fan_in_fan_out=model.config.model_type == "gpt2")
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not the user's concern
            warnings.filterwarnings("ignore", category=FutureWarning)
            model = get_peft_model(model, lora)
    except ValueError as exc:
        raise InputError(f"lora_targets: {first_line(exc)}") from None
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def _continue_adapter(model: Any, config: TrainConfig) -> Any:
    """The base with an existing adapter on it, trainable; its manifest must name this base and task."""
    spec = ModelSpec(config.base or "", adapter=config.init_adapter, allow_pickle=config.allow_pickle)
    model, _ = attach_adapter(model, spec, task=config.task, method=config.method, trainable=True)
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def architecture(config_path: str | None) -> Any:
    """The transformers config in ``config_path`` (a config.json, or a folder holding one)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(config_path)
    except model_file_errors() as exc:
        raise InputError(f"base_config: cannot read {config_path}: {first_line(exc)}") from None


def random_model(config_path: str | None, tokenizer: Any, dtype: Any, device: Any) -> Any:
    """Random weights of the architecture in ``config_path`` (for from-scratch training and memory benchmarks).

    The weights are made on ``device``: a 7B model's random initialisation takes
    minutes on a CPU and seconds on a GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    arch = architecture(config_path)
    if tokenizer is not None and getattr(arch, "vocab_size", 0) < len(tokenizer):
        arch.vocab_size = len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if tokenizer is not None and getattr(tokenizer, name, None) is not None:
            setattr(arch, name, getattr(tokenizer, name))
    with torch.device(device):
        return AutoModelForCausalLM.from_config(arch, dtype=dtype)
