"""Loading a base model, its tokenizer and an optional peft adapter, safely.

Weights load from safetensors only and remote code never runs, unless the user asks
(``allow_pickle``, ``trust_remote_code``). Devices: CUDA, then MPS, then CPU unless
named; bf16 on GPUs that support it, float32 elsewhere.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retune_tui.errors import InputError, UserError, first_line
from retune_tui.manifest import Manifest, config_fingerprint, full_model_manifest

DTYPES = ("auto", "float32", "bfloat16", "float16")
#: The names `retune train --precision` takes, accepted for the same dtypes.
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    """A device name of the right form, checked without loading torch (before any work)."""
    if not DEVICE_RE.match(name):
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def dtype_name(name: str) -> str:
    """The dtype ``name`` stands for (``bf16`` is ``bfloat16``); an unknown one is refused."""
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return name


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how.

    Attributes:
        base: a local directory or a Hugging Face hub name.
        adapter: a directory with a peft LoRA adapter (and its retune manifest).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        dtype: ``auto`` (bf16 on capable GPUs, else float32) or a torch dtype name.
        allow_pickle: allow pickled (``.bin``) checkpoints, which can run code on load.
        trust_remote_code: allow model code shipped with the checkpoint to run.
    """

    base: str
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    allow_pickle: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    @property
    def name(self) -> str:
        """The model as traces and reports name it: the base, and its adapter if any."""
        return self.base if not self.adapter else f"{self.base} + {self.adapter}"

    @property
    def tokenizer_source(self) -> str:
        """Where the tokenizer is read: the adapter's own, if it has one, else the base's."""
        if self.adapter and _has(Path(self.adapter), "tokenizer.json", "tokenizer_config.json"):
            return self.adapter
        return self.base


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    manifest: Manifest | None
    device: Any
    name: str


def resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} asked for, but there are {torch.cuda.device_count()} GPUs here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' asked for, but Apple's MPS is not available here; use --device cpu")
    return device


def _tied_embeddings(model: Any) -> bool:
    """The base's output layer shares its weights with the input embeddings (gpt2, Qwen2.5,
    SmolLM…): merging an adapted lm_head would write its update into the embeddings too."""
    from retune_tui.engine.hf import base_model_of

    base = base_model_of(model)
    inputs, outputs = base.get_input_embeddings(), base.get_output_embeddings()
    return inputs is not None and outputs is not None and inputs.weight.data_ptr() == outputs.weight.data_ptr()


def resolve_dtype(name: str, device: Any) -> Any:
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _has(directory: Path, *patterns: str) -> bool:
    return any(next(directory.glob(p), None) is not None for p in patterns)


def check_exists(name: str, what: str = "base model") -> None:
    """A name that is clearly a local path (not a hub name) must exist, as a folder; a hub
    name must be in the local cache or the hub reachable (else one line within seconds, where
    transformers would retry for most of a minute)."""
    if Path(name).is_file():
        raise InputError(f"{what} {name!r} is a file; give the model's folder or a hub name")
    if Path(name).exists():
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise InputError(f"{what} {name!r} not found")
    _check_hub(name, what)


HUB_TIMEOUT_SECONDS = 5.0


def _check_hub(name: str, what: str) -> None:
    import os
    import threading
    from urllib.parse import urlparse

    from huggingface_hub import HfApi, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
    except ValueError:  # huggingface_hub's HFValidationError
        raise InputError(f"{what} {name!r} is neither a local folder nor a valid Hugging Face hub name") from None
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return  # transformers looks in the cache only, and says so itself
    # One request, no retries, at most HUB_TIMEOUT_SECONDS in all (DNS, every address, the
    # reply): in a thread, as the request's own timeout is per phase and per address.
    outcome: list[Exception | None] = []

    def ask() -> None:
        try:
            HfApi().model_info(name, timeout=HUB_TIMEOUT_SECONDS)
            outcome.append(None)
        except Exception as exc:  # judged below, on the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_SECONDS)
    if not outcome or _unreachable(outcome[0]):
        host = urlparse(HfApi().endpoint).hostname
        raise UserError(f"{what} {name!r} is no local folder and not in the Hugging Face cache, and {host} "
                        "cannot be reached to download it (offline?)")


def _unreachable(exc: Exception | None) -> bool:
    """Whether a hub request failed for want of a connection. An HTTP answer of any status,
    or a reply that did not parse, means the hub (or a mirror) is there: transformers says
    what is wrong with the name itself."""
    from huggingface_hub.errors import HfHubHTTPError

    if exc is None or isinstance(exc, HfHubHTTPError):
        return False
    transport = {"TransportError", "ConnectError", "TimeoutException", "ConnectionError", "SSLError"}
    return isinstance(exc, OSError) or any(c.__name__ in transport for c in type(exc).__mro__)


def model_file_errors() -> tuple[type[Exception], ...]:
    """What loading raises for a model's files that are wrong: missing or unreadable files,
    bad values, and huggingface_hub's strict check of a config's fields (a string where a
    number belongs), which is none of the others."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # an older huggingface_hub checks no fields
        return (OSError, ValueError)
    return (OSError, ValueError, StrictDataclassError)


def load_tokenizer(spec: ModelSpec) -> Any:
    from transformers import AutoTokenizer

    source = spec.tokenizer_source
    check_exists(source, "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
    except model_file_errors() as exc:
        raise UserError(f"cannot load the tokenizer of {source!r}: {first_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


SMALL_WEIGHTS = 200 * 2**20  # bytes of safetensors below which loading shows no progress bar


def load_base(spec: ModelSpec, device: Any, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    local = Path(spec.base)
    if local.is_dir() and not spec.allow_pickle and not _has(local, "*.safetensors") and _has(local, "*.bin", "*.pt"):
        raise UserError(f"{spec.base} holds only pickled weights (.bin), which can run code when loaded; "
                        "convert them to safetensors, or pass --allow-pickle if you trust them")
    check_exists(spec.base)
    if (local / "adapter_config.json").is_file() and not (local / "config.json").is_file():
        # transformers would load the base the adapter names, a path relative to where it was trained
        raise InputError(f"{spec.base} is a LoRA adapter, not a model: pass it with --adapter (and --base, the "
                        "model it was trained on)")
    if local.is_dir() and sum(f.stat().st_size for f in local.glob("*.safetensors")) < SMALL_WEIGHTS:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar that flashes for a fraction of a second is only noise
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec.base,
            dtype=dtype,
            use_safetensors=None if spec.allow_pickle else True,
            trust_remote_code=spec.trust_remote_code,
        )
    except model_file_errors() as exc:
        message = first_line(exc)
        if "trust_remote_code" in str(exc):
            message = "its code is shipped with the checkpoint; pass --trust-remote-code if you trust it"
        raise UserError(f"cannot load base model {spec.base!r}: {message}") from None
    return model.to(device).eval()


def check_adapter_folder(directory: str | Path) -> None:
    """An adapter named by the user is a folder that is there (checked before any work)."""
    if Path(directory).is_file():
        raise InputError(f"adapter {directory} is a file; give the adapter's folder")
    if not Path(directory).is_dir():
        raise InputError(f"adapter directory {directory} not found")


def load_adapter(model: Any, spec: ModelSpec, *, trainable: bool = False) -> Any:
    """``model`` with the adapter of ``spec`` on it (in eval mode unless ``trainable``)."""
    from peft import PeftModel

    directory = Path(spec.adapter)
    check_adapter_folder(directory)
    if not (directory / "adapter_config.json").exists():
        raise InputError(f"{directory} is not a peft adapter (no adapter_config.json)")
    if not (directory / "adapter_model.safetensors").exists():
        if not spec.allow_pickle:
            raise UserError(f"{directory} has no adapter_model.safetensors; pass --allow-pickle to load a pickled "
                            "adapter if you trust it")
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not the user's concern
            warnings.filterwarnings("ignore", category=FutureWarning)
            adapted = PeftModel.from_pretrained(model, str(directory), is_trainable=trainable)
            return adapted if trainable else adapted.eval()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"cannot load adapter {directory}: {first_line(exc)}") from None


def attach_adapter(model: Any, spec: ModelSpec, *, task: str | None, method: str | None,
                   trainable: bool = False) -> tuple[Any, Manifest | None]:
    """``model`` with the adapter of ``spec`` on it, once the adapter's manifest (if it has one)
    is checked against the task, the method and this base; and that manifest."""
    manifest = Manifest.read(spec.adapter)
    if manifest is not None:
        manifest.check(spec.adapter, task=task, method=method, fingerprint=config_fingerprint(model.config.to_dict()))
    return load_adapter(model, spec, trainable=trainable), manifest


SMALL_MODEL = 50_000_000  # parameters


def threads_for_one_problem(model: Any) -> None:
    """One CPU thread for a small model solving a problem or two (unless OMP_NUM_THREADS says).

    Measured with the bundled 1M-parameter model on 2 cores (2026-11-27): alone, one thread
    solved an addition in 0.31 s against 0.45 s for two; beside another busy process, one
    thread took 0.32 s and two took 1.4 s (OpenMP's threads wait for each other, spinning,
    on cores the other process holds; 20-100 times slower when both use two). Batches of
    many problems gain from more threads (64 additions: 29% faster with two on an idle
    machine), so evaluation and benchmarks keep torch's default.
    """
    import os

    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return
    parameters = list(model.parameters())
    if parameters and parameters[0].device.type == "cpu" and sum(p.numel() for p in parameters) < SMALL_MODEL:
        torch.set_num_threads(1)


def load_model(spec: ModelSpec, *, task: str | None = None, method: str | None = None) -> LoadedModel:
    """Load base, tokenizer and adapter, for inference; check the adapter's manifest against
    what is asked.

    In float32 the adapter is merged into the base's weights: the same function to float
    rounding, and faster, as each adapted layer is then one matrix product instead of three
    (bundled model, 2-core CPU, 2026-11-27: 1.3-1.5 times the problems per second for one
    12-digit addition or batches of 16 DP and 64 addition problems, every trace the same as
    unmerged; `retune eval` of 300 additions 74 s against 85 s; 700 evaluated additions
    right and wrong exactly as unmerged). In bf16 and fp16 a merge would round the adapter's
    small updates away, and with tied input and output embeddings it would change both, so
    there the adapter stays a separate layer.
    """
    import torch

    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    model = load_base(spec, device, dtype)
    tokenizer = load_tokenizer(spec)
    manifest = None if spec.adapter else full_model_manifest(spec.base)
    if manifest is not None:
        manifest.check(spec.base, task=task, method=method, fingerprint=None, what="model")
    if spec.adapter:
        model, manifest = attach_adapter(model, spec, task=task, method=method)
        if dtype == torch.float32 and not _tied_embeddings(model):
            model = model.merge_and_unload()
    return LoadedModel(model, tokenizer, manifest, device, spec.name)
