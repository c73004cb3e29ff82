"""Average LoRA adapters that were trained from one start (checkpoint averaging, a "soup").

The average is exact: the result's weight update is the weighted mean of the adapters'
updates, ``ΔW = Σ w_i · s_i · B_i A_i`` (``s_i`` each adapter's scaling), written as one
LoRA whose rank is the sum of theirs — the A matrices stacked, the B matrices side by side,
scaled — and whose scaling is 1. A float32 load merges it into the base, so it runs as fast
there (kept apart, in bf16 or on tied embeddings, the larger rank costs a little).

It helps adapters that share a start and stayed near each other: the ends of two stages
of one run, a run and its continuation. Adapters from different fresh starts do not
average (the bundled addition adapter averaged with one from another start solved
nothing; each alone solved 95% of 15-digit problems), so where their manifests name
different starts (`retune train` writes one since 2026-11-28) they are refused.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retune_tui.errors import InputError, UserError
from retune_tui.files import STAGING_NAME, atomic_write_text, check_folder, staged_into
from retune_tui.manifest import MANIFEST_NAME, Manifest

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
ADAPTER_FILES = {ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST_NAME, "README.md", STAGING_NAME, *TOKENIZER_FILES}


def _factor(key: str) -> str | None:
    """Which LoRA factor a saved tensor is: A (rank × in), B (out × rank), or None (not LoRA's).
    peft names an embedding layer's factors lora_embedding_A/B, with the same shapes' roles."""
    for name in ("A", "B"):
        if f".lora_{name}." in key or f".lora_embedding_{name}" in key:
            return name
    return None


@dataclass
class Adapter:
    path: Path
    config: dict[str, Any]
    manifest: Manifest
    tensors: dict[str, Any]  # peft's keys → torch tensors

    @property
    def scaling(self) -> float:
        r, alpha = self.config["r"], self.config["lora_alpha"]
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r


@dataclass
class AverageResult:
    out: Path
    rank: int
    weights: list[float]


def average_adapters(paths: list[Path], out: Path, weights: list[float] | None = None, *,
                     overwrite: bool = False) -> AverageResult:
    """Write to ``out`` the adapter whose update is the weighted mean of those in ``paths``."""
    weights = _normalised(weights, len(paths))
    if len({Path(p).resolve() for p in paths}) < len(paths):
        raise InputError("an adapter is given twice (to weigh one more, use --weights)")
    _check_out(out, paths, overwrite)
    adapters = [_read_adapter(Path(p)) for p in paths]
    _check_compatible(adapters)
    tensors = _averaged_tensors(adapters, weights)
    rank = sum(a.config["r"] for a in adapters)
    _write(out, adapters, weights, tensors, rank)
    return AverageResult(out, rank, weights)


def _normalised(weights: list[float] | None, count: int) -> list[float]:
    if count < 2:
        raise InputError("give at least two adapters to average")
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise InputError(f"--weights has {len(weights)} values for {count} adapters")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise InputError("--weights must be positive numbers")
    largest = max(weights)  # dividing by it first keeps the sum finite
    total = sum(w / largest for w in weights)
    return [w / largest / total for w in weights]


def _check_out(out: Path, paths: list[Path], overwrite: bool) -> None:
    if out.is_file():
        raise InputError(f"--out {out} is a file; give a folder")
    if any(out.resolve() == Path(p).resolve() for p in paths):
        raise InputError(f"--out {out} is one of the adapters being averaged; choose another folder")
    if out.is_dir() and any(out.iterdir()):
        other = sorted(p.name for p in out.iterdir() if p.name not in ADAPTER_FILES)
        if other:
            raise InputError(f"--out {out} holds other files than an adapter's ({', '.join(other[:3])}); "
                             "choose another folder")
        if not overwrite:
            raise InputError(f"--out {out} holds an adapter; pass --overwrite to replace it")
    check_folder(out, "--out")


def _read_adapter(path: Path) -> Adapter:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_dir():
        raise InputError(f"adapter {path} not found" if not path.exists() else f"adapter {path} is not a folder")
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (path / name).is_file():
            raise InputError(f"{path} has no {name}: give LoRA adapter folders made by `retune train`")
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text())
    except ValueError as exc:
        raise UserError(f"{path / ADAPTER_CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(k), (int, float)) and config[k] > 0
                                               for k in ("r", "lora_alpha")):
        raise UserError(f"{path / ADAPTER_CONFIG} is not a LoRA config (it needs positive r and lora_alpha)")
    manifest = Manifest.read(path)
    if manifest is None:
        raise InputError(f"{path} has no retune.json: give adapters made by `retune train`")
    if config.get("peft_type") != "LORA":
        raise InputError(f"{path} is a {config.get('peft_type')} adapter; only LoRA adapters can be averaged")
    unsupported = [key for key in ("use_dora", "rank_pattern", "alpha_pattern", "lora_bias", "modules_to_save",
                                   "target_parameters", "trainable_token_indices") if config.get(key)]
    if unsupported:
        raise InputError(f"{path} uses {', '.join(unsupported)}: only plain LoRA adapters can be averaged")
    try:
        tensors = load_file(path / ADAPTER_WEIGHTS)
    except SafetensorError as exc:
        raise UserError(f"{path / ADAPTER_WEIGHTS} cannot be read ({exc})") from None
    other = sorted(k for k in tensors if _factor(k) is None)
    if other:
        raise InputError(f"{path} holds weights other than LoRA's ({other[0]}, …): it cannot be averaged")
    return Adapter(path, config, manifest, tensors)


def _check_compatible(adapters: list[Adapter]) -> None:
    first = adapters[0]
    if len(_starts(adapters)) > 1:
        starts = ", ".join(f"{a.path}: {a.manifest.extra.get('start')}" for a in adapters)
        raise InputError(f"these adapters come from different fresh starts ({starts}): their updates do not "
                         "average; give stages of one run")
    for other in adapters[1:]:
        for what in ("task", "method", "base_fingerprint"):
            if getattr(other.manifest, what) != getattr(first.manifest, what):
                name = "base model" if what == "base_fingerprint" else what
                raise InputError(f"{other.path} and {first.path} were trained for different {name}s "
                                 f"({getattr(other.manifest, what)!r}, {getattr(first.manifest, what)!r})")
        if set(other.tensors) != set(first.tensors):
            raise InputError(f"{other.path} and {first.path} adapt different layers (their target modules differ)")
        for key, tensor in first.tensors.items():
            kept = 1 if _factor(key) == "A" else 0  # A: (r, in); B: (out, r)
            if other.tensors[key].shape[kept] != tensor.shape[kept]:
                raise InputError(f"{other.path} and {first.path} differ in the shape of {key}")


def _starts(adapters: list[Adapter]) -> set[str]:
    """The fresh starts the adapters' manifests name (older manifests name none)."""
    return {a.manifest.extra.get("start") for a in adapters} - {None}


def _averaged_tensors(adapters: list[Adapter], weights: list[float]) -> dict[str, Any]:
    import torch

    tensors = {}
    for key in adapters[0].tensors:
        if _factor(key) == "A":  # (Σr, in)
            parts = [a.tensors[key].float() for a in adapters]
            tensors[key] = torch.cat(parts, dim=0).contiguous()
        else:  # (out, Σr)
            parts = [w * a.scaling * a.tensors[key].float() for a, w in zip(adapters, weights)]
            tensors[key] = torch.cat(parts, dim=1).contiguous()
    return tensors


def _write(out: Path, adapters: list[Adapter], weights: list[float], tensors: dict[str, Any], rank: int) -> None:
    """Write through a staging folder, then move the files in (a failure leaves ``out`` as it was)."""
    from safetensors.torch import save_file

    first = adapters[0]
    with staged_into(out) as staging:
        save_file(tensors, staging / ADAPTER_WEIGHTS, metadata={"format": "pt"})
        config = dict(first.config, r=rank, lora_alpha=rank, use_rslora=False)
        atomic_write_text(staging / ADAPTER_CONFIG, json.dumps(config, indent=2) + "\n")
        for name in TOKENIZER_FILES:
            if (first.path / name).is_file():
                shutil.copy(first.path / name, staging / name)
        manifests = [a.manifest for a in adapters]
        Manifest(
            task=first.manifest.task,
            method=first.manifest.method,
            base=first.manifest.base,
            base_fingerprint=first.manifest.base_fingerprint,
            tokenizer=first.manifest.tokenizer,
            train_lengths=(min(m.train_lengths[0] for m in manifests), max(m.train_lengths[1] for m in manifests)),
            lora=dict(first.manifest.lora, r=rank, alpha=rank),
            steps=0,
            final_loss=None,
            versions=first.manifest.versions,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            extra={"averaged": [{"adapter": str(a.path), "weight": w, "rank": a.config["r"], "steps": a.manifest.steps,
                                 "final_loss": a.manifest.final_loss} for a, w in zip(adapters, weights)],
                   "start": next(iter(_starts(adapters)), None)},
        ).write(staging)
