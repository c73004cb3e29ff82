"""A numpy backend for small Llama models on a CPU: one problem solved before torch could load.

On the 2-core CPU this project is built on, importing torch, transformers and peft takes
4-5 s, while the bundled 1M-parameter model solves an addition in a twentieth of a second
(`retune bench solve`, 2026-12-08: "48213 + 90771" answered 0.47 s after Enter in numpy,
4.9 s through transformers, the same trace). So problems on the CPU (``retune solve``, the
TUI, ``retune eval``) run here when the model is one this module computes exactly as
transformers does: a float32 ``LlamaForCausalLM`` in one small safetensors file, its LoRA
adapter merged into the weights (as ``load_model`` merges it in float32), greedy decoding.
A batch is packed into one matrix for every projection, and each context keeps a cache of
its own, so a parent that waits for its call costs nothing and one that resumes is not
copied back into a batch (``retune eval`` of the bundled DP adapter: 5x faster than
transformers' padded batch on that CPU; docs/results.md). Anything else -- another
architecture, sampling, a GPU -- is declined (``load`` returns None; ``--debug`` logs why)
and goes to transformers, which also gives the errors for whatever is wrong with the
files. ``RETUNE_ENGINE=torch`` always uses transformers. Segments end, stream and speculate
as in the transformers backend (both are ``TokenDecoder``\\s), and the tests check both
write the same traces.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retune_tui.engine.decoding import Context, Counters, Sampling, TokenDecoder, eos_ids_of, max_positions
from retune_tui.engine.generator import Delta
from retune_tui.engine.loading import SMALL_WEIGHTS, ModelSpec
from retune_tui.manifest import Manifest, config_fingerprint, full_model_manifest

ENGINE_ENV = "RETUNE_ENGINE"  # "torch": always the transformers backend

#: What transformers' ``config.to_dict()`` adds to a config.json it reads (5.x), so the
#: fingerprint of the file alone is the one `retune train` wrote into the manifest. If a
#: version adds more, the fingerprints differ and transformers loads the model instead.
_CONFIG_DEFAULTS = {
    "is_encoder_decoder": False, "output_hidden_states": False, "output_attentions": False,
    "return_dict": True, "problem_type": None, "chunk_size_feed_forward": 0,
    "id2label": {0: "LABEL_0", 1: "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
}
_TOKENIZER_CLASSES = {"TokenizersBackend", "PreTrainedTokenizerFast"}
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
#: A base layer saved with the adapter (peft does for an adapted lm_head unless told not to).
_SAVED_BASE_KEY = re.compile(r"^base_model\.model\.(?P<module>.+?)(\.base_layer)?\.weight$")
#: Adapter settings that change what the merged weights are; beyond a plain LoRA's defaults
#: the adapter goes to peft.
_LORA_PLAIN = {"use_dora": False, "lora_bias": False, "fan_in_fan_out": False, "modules_to_save": None,
               "layer_replication": None, "rank_pattern": {}, "alpha_pattern": {}, "target_parameters": None,
               "trainable_token_indices": None, "alora_invocation_tokens": None, "use_bdlora": None,
               "use_qalora": False, "bias": "none"}

log = logging.getLogger(__name__)


class Declined(Exception):
    """What this backend does not compute exactly: transformers runs it."""


def load(spec: ModelSpec, *, task: str | None, method: str | None, sampling: Sampling,
         batched: bool = False) -> NumpyGenerator | None:
    """A numpy generator for ``spec``, or None where transformers must run it (``--debug`` logs why);
    ``batched``: for many problems at once.

    The adapter's manifest is checked against ``task`` and ``method`` first, with the same
    errors as ``load_model``; a base that differs from the one it was trained on is declined.
    """
    try:
        return build(spec, task=task, method=method, sampling=sampling, batched=batched)
    except Declined as reason:
        log.debug("transformers runs %s: %s", spec.base, reason)
        return None


def build(spec: ModelSpec, *, task: str | None, method: str | None, sampling: Sampling,
          batched: bool = False) -> NumpyGenerator:
    """A numpy generator for ``spec``; ``Declined``, saying why, where it would not be exact."""
    _check_wanted(spec, sampling, batched)
    base = Path(spec.base)
    config = _read_json(base / "config.json")
    _check_supported(config)
    weights = base / "model.safetensors"
    if not weights.is_file() or weights.stat().st_size >= SMALL_WEIGHTS:
        raise Declined("no single model.safetensors under 200 MB")
    tokenizer_dir = _tokenizer_dir(spec)
    adapter = None
    if spec.adapter:
        adapter = _read_adapter(Path(spec.adapter))
        manifest = Manifest.read(spec.adapter)
        if manifest is not None:
            manifest.check(spec.adapter, task=task, method=method, fingerprint=None)
            if manifest.base_fingerprint != config_fingerprint({**_CONFIG_DEFAULTS, **config}):
                raise Declined("the adapter's manifest names another base")  # transformers says which
    else:
        manifest = full_model_manifest(spec.base)
        if manifest is not None:
            manifest.check(spec.base, task=task, method=method, fingerprint=None, what="model")
    tensors = _load_safetensors(weights)
    if config.get("tie_word_embeddings", False):
        embed = tensors.get("model.embed_tokens.weight")
        if embed is None or ("lm_head.weight" in tensors and not np.array_equal(tensors["lm_head.weight"], embed)):
            raise Declined("tied embeddings, but no model.embed_tokens.weight or an lm_head.weight of its own")
        if adapter is not None and adapter[0]:
            raise Declined("tied embeddings, and the adapter brings base layers (peft would change both)")
        tensors["lm_head.weight"] = embed  # merging makes it a matrix of its own
    if adapter is not None:
        _merge(tensors, *adapter)
    tokenizer, eos = _load_tokenizer(tokenizer_dir)
    model = LlamaWeights.of(tensors, config)
    generation = _read_json(base / "generation_config.json", required=False)
    if generation is None and "eos_token_id" not in config:
        raise Declined("no eos_token_id in config.json")  # transformers would take LlamaConfig's default
    generation_eos = (generation if generation is not None else config).get("eos_token_id")
    if eos is None and generation_eos is None:
        raise Declined("no EOS token")  # transformers says so
    return NumpyGenerator(model, tokenizer, eos_ids_of(eos, generation_eos), max_positions(config), name=spec.name)


# --- what this backend takes --------------------------------------------------------------


def _check_wanted(spec: ModelSpec, sampling: Sampling, batched: bool) -> None:
    """Greedy, float32, on the CPU (``auto`` only on the bundled base, which solves one problem
    in float32 on the CPU faster than on a GPU; a batch goes to the GPU if there is one), and
    not switched off."""
    from retune_tui import bundled

    if os.environ.get(ENGINE_ENV, "").lower() == "torch":
        raise Declined(f"{ENGINE_ENV}=torch")
    if not sampling.greedy or spec.trust_remote_code:
        raise Declined("sampling" if not sampling.greedy else "remote code allowed")
    if not (spec.device == "cpu" or (spec.device == "auto" and bundled.is_base(spec.base))):
        raise Declined(f"device {spec.device}" + (": --device cpu runs it here" if spec.device == "auto" else ""))
    if batched and spec.device == "auto" and _gpu_present():
        raise Declined("a batch, and a GPU to run it on (--device cpu runs it here)")
    if not (spec.dtype == "float32" or (spec.dtype == "auto" and spec.device == "cpu")):
        raise Declined(f"dtype {spec.dtype}")


#: The config's sizes: whole numbers, present (``head_dim`` and ``num_key_value_heads`` may be null).
_SIZES = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size",
          "max_position_embeddings")
_OPTIONAL_SIZES = ("head_dim", "num_key_value_heads")


def _check_supported(config: dict[str, Any]) -> None:
    """A plain Llama: SiLU, default RoPE, no biases, no custom code, every size a whole number
    that fits (transformers refuses what does not, and says why)."""
    rope = config.get("rope_parameters") or {}
    plain = (config.get("architectures") == ["LlamaForCausalLM"] and config.get("model_type") == "llama"
             and config.get("hidden_act") == "silu" and config.get("attention_bias", False) is False
             and config.get("mlp_bias", False) is False and config.get("pretraining_tp", 1) == 1
             and "auto_map" not in config and config.get("rope_scaling") is None and isinstance(rope, dict)
             and set(rope) <= {"rope_type", "type", "rope_theta"}  # no factor, no partial rotation
             and rope.get("rope_type", rope.get("type", "default")) == "default"
             and _is_number(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
             and _is_number(config.get("rms_norm_eps", 1e-6)))
    if not plain:
        raise Declined("not a plain LlamaForCausalLM (SiLU, default RoPE, no biases)")
    sizes = [config.get(name) for name in _SIZES] + [config.get(name) or 1 for name in _OPTIONAL_SIZES]
    if not all(isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes):
        raise Declined(f"a size of the config ({', '.join(_SIZES + _OPTIONAL_SIZES)}) is no whole number")
    heads = config["num_attention_heads"]
    if config["hidden_size"] % heads or heads % (config.get("num_key_value_heads") or heads):
        raise Declined("hidden_size or num_key_value_heads does not divide by num_attention_heads")


def _gpu_present() -> bool:
    """Whether ``auto`` would pick a GPU (asking torch takes seconds, little beside a batch)."""
    from retune_tui.engine.loading import resolve_device

    return resolve_device("auto").type != "cpu"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _tokenizer_dir(spec: ModelSpec) -> Path:
    """Where ``load_tokenizer`` reads the tokenizer (the adapter's own, else the base's), if it
    is a tokenizers file that transformers uses unchanged."""
    source = Path(spec.tokenizer_source)
    settings = _read_json(source / "tokenizer_config.json")
    if not (source / "tokenizer.json").is_file():
        raise Declined(f"no tokenizer.json in {source}")
    if settings.get("tokenizer_class") not in _TOKENIZER_CLASSES or {"add_bos_token", "add_eos_token"} & set(settings):
        raise Declined(f"tokenizer class {settings.get('tokenizer_class')} (or its BOS/EOS settings)")
    return source


def _read_json(path: Path, *, required: bool = True) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        if required:
            raise Declined(f"cannot read {path}")
        return None
    return data


def _read_adapter(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], float]:
    """A plain LoRA adapter: the base layers saved with it, each module's (A, B), and the scale."""
    config = _read_json(directory / "adapter_config.json")
    if config.get("peft_type") != "LORA":
        raise Declined(f"adapter type {config.get('peft_type')}")
    unusual = [key for key, plain in _LORA_PLAIN.items() if config.get(key, plain) not in (plain, None)]
    if unusual:
        raise Declined(f"adapter settings {', '.join(unusual)}")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or rank <= 0 or not isinstance(alpha, int | float):
        raise Declined("adapter rank or alpha")
    targets = config.get("target_modules")
    if (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)
            or any(config.get(key) for key in ("layers_to_transform", "layers_pattern", "exclude_modules"))):
        raise Declined("the adapter picks its modules otherwise than by a list of names")
    tensors = _load_safetensors(directory / "adapter_model.safetensors")
    saved: dict[str, np.ndarray] = {}
    updates: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in tensors.items():
        if (match := _LORA_KEY.match(key)) is not None:
            updates.setdefault(match["module"], {})[match["part"]] = tensor
        elif (match := _SAVED_BASE_KEY.match(key)) is not None and "lora_" not in key:
            saved[f"{match['module']}.weight"] = tensor
        else:
            raise Declined(f"adapter tensor {key}")  # embeddings, DoRA magnitudes: peft's business
    if any(set(parts) != {"A", "B"} or parts["A"].shape[0] != rank for parts in updates.values()):
        raise Declined("a LoRA module without both A and B, or of another rank than r")
    # peft adapts the modules its targets name (by suffix), whatever else the file holds
    if any(not any(module == t or module.endswith("." + t) for t in targets) for module in updates):
        raise Declined("the adapter file holds modules its target_modules does not name")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return saved, updates, scale


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except (OSError, SafetensorError, ValueError, TypeError) as exc:  # TypeError: bfloat16, which numpy lacks
        raise Declined(f"cannot read {path} in numpy: {exc}") from None
    if not all(t.dtype == np.float32 for t in tensors.values()):
        raise Declined(f"{path} is not all float32")
    return tensors


def _merge(tensors: dict[str, np.ndarray], saved: dict[str, np.ndarray], updates: dict[str, dict[str, np.ndarray]],
           scale: float) -> None:
    """The adapter's saved base layers, then W + scale · B A for every adapted module, as new
    arrays (an adapted ``lm_head`` of tied embeddings leaves the embeddings as they are: the
    same function as peft's separate layer)."""
    for key, weight in saved.items():
        if key not in tensors or tensors[key].shape != weight.shape:
            raise Declined(f"the adapter's {key} fits no base weight")
        tensors[key] = weight
    for module, parts in updates.items():
        key = f"{module}.weight"
        weight, a, b = tensors.get(key), parts["A"], parts["B"]
        fits = weight is not None and weight.ndim == 2 and a.shape[1] == weight.shape[1]
        if not fits or b.shape != (weight.shape[0], a.shape[0]):
            raise Declined(f"the adapter's {module} fits no base weight")
        tensors[key] = weight + scale * (b @ a)


def _load_tokenizer(directory: Path) -> tuple[Any, int | None]:
    """The tokenizer, without the truncation or padding its file may keep (as transformers
    uses it), and its EOS id; declined where transformers would add special tokens to it."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises its own bare Exception for a file it cannot read
        raise Declined(f"cannot read {directory / 'tokenizer.json'}: {exc}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    settings = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json", required=False) or {}
    named: list[Any] = []
    for source in (settings, special_map):
        named += [source.get(key) for key in ("bos_token", "eos_token", "unk_token", "pad_token")]
        for key in ("additional_special_tokens", "extra_special_tokens"):
            extra = source.get(key) or []
            named += list(extra.values()) if isinstance(extra, dict) else extra if isinstance(extra, list) else [extra]
    names = [_token_text(token) for token in named if token is not None]
    added = settings.get("added_tokens_decoder") or {}
    if (any(name is None or tokenizer.token_to_id(name) is None for name in names) or not isinstance(added, dict)
            or any(str(tokenizer.token_to_id(_token_text(token) or "")) != str(i) for i, token in added.items())):
        raise Declined("special tokens that tokenizer.json lacks (transformers would add them)")
    eos, mapped = _token_text(settings.get("eos_token")), _token_text(special_map.get("eos_token"))
    if eos and mapped and eos != mapped:
        raise Declined("tokenizer_config.json and special_tokens_map.json name different EOS tokens")
    eos = eos or mapped
    return tokenizer, (tokenizer.token_to_id(eos) if eos else None)


def _token_text(token: Any) -> str | None:
    """A special token as the tokenizer files give it: its text, or a dict with its content."""
    token = token.get("content") if isinstance(token, dict) else token
    return token if isinstance(token, str) else None


# --- the model ----------------------------------------------------------------------------


@dataclass
class _Layer:
    input_norm: np.ndarray
    qkv: np.ndarray  # (hidden, q + k + v), transposed for x @ W
    o: np.ndarray
    post_norm: np.ndarray
    gate: np.ndarray  # (hidden, intermediate); apart from up: OpenBLAS multiplies 9 x 128 by 128 x 512
    # twice in 26 us, by 128 x 1024 once in 87 us (2026-12-07, bundled DP: 0.6 s a problem, from 1.5 s)
    up: np.ndarray
    down: np.ndarray


@dataclass
class LlamaWeights:
    """A Llama's weights, laid out for row-vector products, and its shape."""

    embed: np.ndarray  # (vocab, hidden)
    layers: list[_Layer]
    norm: np.ndarray
    lm_head: np.ndarray  # (hidden, vocab)
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    inv_freq: np.ndarray  # (head_dim / 2,)

    @classmethod
    def of(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> LlamaWeights:
        layers = []
        try:
            hidden, heads, size = config["hidden_size"], config["num_attention_heads"], config["intermediate_size"]
            kv_heads = config.get("num_key_value_heads") or heads
            head_dim = config.get("head_dim") or hidden // heads
            for i in range(config["num_hidden_layers"]):
                p = f"model.layers.{i}."
                w = {name: tensors[p + name + ".weight"] for name in (
                    "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                    "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
                layers.append(_Layer(
                    input_norm=w["input_layernorm"], post_norm=w["post_attention_layernorm"],
                    qkv=np.ascontiguousarray(np.concatenate(
                        [w["self_attn.q_proj"], w["self_attn.k_proj"], w["self_attn.v_proj"]]).T),
                    o=np.ascontiguousarray(w["self_attn.o_proj"].T),
                    gate=np.ascontiguousarray(w["mlp.gate_proj"].T), up=np.ascontiguousarray(w["mlp.up_proj"].T),
                    down=np.ascontiguousarray(w["mlp.down_proj"].T)))
            embed, lm_head = tensors["model.embed_tokens.weight"], tensors["lm_head.weight"]
            norm = tensors["model.norm.weight"]
        except KeyError as missing:
            raise Declined(f"no {missing} in the weights or the config") from None
        shapes = {(layer.input_norm.shape, layer.qkv.shape, layer.o.shape, layer.post_norm.shape,
                   layer.gate.shape, layer.up.shape, layer.down.shape) for layer in layers}
        expected = ((hidden,), (hidden, (heads + 2 * kv_heads) * head_dim), (heads * head_dim, hidden), (hidden,),
                    (hidden, size), (hidden, size), (size, hidden))
        if (heads % kv_heads or shapes != {expected} or norm.shape != (hidden,) or embed.ndim != 2
                or embed.shape != (config["vocab_size"], hidden) or lm_head.shape != embed.shape):
            raise Declined("weights of other shapes than the config says")
        rope = config.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
        inv_freq = (1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
        return cls(embed, layers, norm, np.ascontiguousarray(lm_head.T), heads, kv_heads, head_dim,
                   float(config.get("rms_norm_eps", 1e-6)), inv_freq.astype(np.float32))


@dataclass
class _Cache:
    """One context's keys and values, per layer (kv_heads, capacity, head_dim); ``length`` valid."""

    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    length: int = 0

    def room(self, model: LlamaWeights, needed: int) -> None:
        capacity = self.keys[0].shape[1] if self.keys else 0
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 64)
        shape = (model.kv_heads, capacity, model.head_dim)
        for store in (self.keys, self.values):
            grown = [np.zeros(shape, np.float32) for _ in model.layers]
            for old, new in zip(store, grown):
                new[:, : self.length] = old[:, : self.length]
            store[:] = grown


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return weight * (x / np.sqrt((x * x).sum(axis=-1, keepdims=True) / x.shape[-1] + eps))


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """RoPE as transformers applies it: x·cos + rotate_half(x)·sin, halves not interleaved."""
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def forward(model: LlamaWeights, caches: Sequence[_Cache], fed: Sequence[list[int]],
            positions: Sequence[np.ndarray], columns: Sequence[int]) -> list[np.ndarray]:
    """Feed each context its ``fed`` tokens after the ``length`` its cache holds; each one's
    logits of its last ``columns`` (columns, vocab). The caches then hold them all.

    The contexts' tokens are packed into one matrix for every projection and the MLP (one
    product for the batch); only attention, over each context's own cache, is per context.
    """
    sizes = [len(tokens) for tokens in fed]
    ends = np.cumsum(sizes).tolist()
    spans = [(end - size, end) for size, end in zip(sizes, ends)]
    starts = [cache.length for cache in caches]
    for cache, start, size in zip(caches, starts, sizes):
        cache.room(model, start + size)
    n = ends[-1]
    x = model.embed[np.concatenate([np.asarray(tokens, dtype=np.int64) for tokens in fed])]  # (n, hidden)
    freqs = np.concatenate(positions).astype(np.float32)[:, None] * model.inv_freq[None, :]
    angles = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(angles)[None], np.sin(angles)[None]  # (1, n, head_dim)
    h, kv, d = model.heads, model.kv_heads, model.head_dim
    group = h // kv
    # A query at i sees its cache and its context's new tokens up to itself.
    futures = {size: np.triu(np.ones((size, size), dtype=bool), k=1) for size in set(sizes) if size > 1}
    scale = np.float32(d ** -0.5)
    for i, layer in enumerate(model.layers):
        qkv = _rms_norm(x, layer.input_norm, model.eps) @ layer.qkv
        qk = _rotate(qkv[:, : (h + kv) * d].reshape(n, h + kv, d).transpose(1, 0, 2), cos, sin)
        v = qkv[:, (h + kv) * d :].reshape(n, kv, d).transpose(1, 0, 2)
        queries = qk[:h] * scale
        attended = np.empty((n, h * d), np.float32)
        for cache, start, (a, b) in zip(caches, starts, spans):
            size, seen = b - a, start + b - a
            keys, values = cache.keys[i], cache.values[i]
            keys[:, start:seen] = qk[h:, a:b]
            values[:, start:seen] = v[:, a:b]
            q = queries[:, a:b].reshape(kv, group * size, d)  # heads sharing a key/value head, stacked
            scores = (q @ keys[:, :seen].transpose(0, 2, 1)).reshape(h, size, seen)
            if size > 1:
                scores[:, :, start:][:, futures[size]] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            out = (scores.reshape(kv, group * size, seen) @ values[:, :seen]).reshape(h, size, d)
            out /= scores.sum(axis=-1, keepdims=True)  # softmax's division, on the smaller array
            attended[a:b] = out.transpose(1, 0, 2).reshape(size, h * d)
        x = x + attended @ layer.o
        normed = _rms_norm(x, layer.post_norm, model.eps)
        gate = normed @ layer.gate
        x = x + (gate * (0.5 * (1 + np.tanh(0.5 * gate))) * (normed @ layer.up)) @ layer.down  # SiLU: g · sigmoid(g)
    for cache, start, size in zip(caches, starts, sizes):
        cache.length = start + size
    last = np.concatenate([np.arange(b - count, b) for (_, b), count in zip(spans, columns)])
    logits = _rms_norm(x[last], model.norm, model.eps) @ model.lm_head
    return np.split(logits, np.cumsum(columns)[:-1].tolist())


# --- the generator ------------------------------------------------------------------------

#: What says how many threads BLAS may use; where one is set, it rules.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_controller: Any = None


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """numpy's BLAS on one thread for a forward pass, unless the environment says otherwise.

    Measured with the bundled model on the 2 cores (2026-12-08): alone, one thread solves
    [3, -2, 5, 1, 4] in 0.79-0.86 s against 0.77-0.78 s for two, and 100 8-digit additions
    at once in 6.1 s against 5.2 s; beside a process busy on both cores, one thread took
    1.0-1.2 s and 4.3 s (50 additions), two 2.4-6.4 s and 29.4 s: OpenBLAS's threads wait
    for each other, spinning, on cores the other process holds (torch's do too:
    loading.threads_for_one_problem). Training or another evaluation beside it is how this
    project's CPU is mostly used, so one thread, for one problem and for a batch.
    """
    global _controller
    if any(name in os.environ for name in THREAD_ENV):
        return contextlib.nullcontext()
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")



@dataclass
class _NumpyContext(Context):
    cache: _Cache = field(default_factory=_Cache)


class NumpyGenerator(TokenDecoder):
    """A Generator over a ``LlamaWeights``: every context of a step in one forward pass, greedy,
    with the same segment ends and copy-aware speculation as ``HFGenerator``."""

    def __init__(self, model: LlamaWeights, tokenizer: Any, eos_ids: set[int], positions: int | None, *,
                 name: str = "model", speculate: int = 8, speculate_max_batch: int = 8) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.sampling = Sampling()
        self.speculate = speculate
        self.speculate_max_batch = speculate_max_batch
        self.eos_ids = eos_ids
        self.max_positions = positions
        self.counters = Counters()
        self._contexts: dict[Hashable, _NumpyContext] = {}

    def open(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        self._contexts[key] = _NumpyContext(text, pending=self.encode(text), budget=max_new_tokens)

    def extend(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        ctx = self._contexts[key]
        ctx.cache.length = self.prepare_extend(ctx, text, max_new_tokens)
        if not ctx.pending and ctx.ids:  # the text added no token: feed the last one again for the next choice
            ctx.pending = [ctx.ids.pop()]
            ctx.cache.length -= 1

    def close(self, key: Hashable) -> None:
        self._contexts.pop(key, None)

    def step(self, keys: Sequence[Hashable]) -> dict[Hashable, Delta]:
        out = self.too_long({k: self._contexts[k] for k in keys})
        keys = [k for k in keys if k not in out]
        if not keys:
            return out
        contexts = [self._contexts[k] for k in keys]
        drafts = self.drafts(contexts)
        fed = [ctx.pending + draft for ctx, draft in zip(contexts, drafts)]
        positions = [np.arange(len(ctx.ids), len(ctx.ids) + len(tokens)) for ctx, tokens in zip(contexts, fed)]
        if self.max_positions:
            positions = [np.minimum(p, self.max_positions - 1) for p in positions]
        with one_blas_thread():
            logits = forward(self.model, [ctx.cache for ctx in contexts], fed, positions,
                             [len(draft) + 1 for draft in drafts])
        self.counters.forwards += 1
        for key, ctx, tokens, draft, these in zip(keys, contexts, fed, drafts, logits):
            self.counters.fed_tokens += len(tokens)
            ctx.ids += tokens
            out[key], _ = self.take(ctx, these.argmax(axis=-1).tolist(), draft)
            ctx.cache.length = len(ctx.ids)  # rejected drafts leave the cache
        return out

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=True).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)
