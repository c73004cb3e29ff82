"""`retune bench memory`: peak GPU memory of one LoRA training step, per method and size.

The step uses the longest example of a problem of the given size, repeated to fill a
micro-batch: forward, cross-entropy over its tokens (retune train's loss, averaged per example
first, holds the same tensors), backward, AdamW step on the adapter. On a CPU no memory figure
is meaningful, so only the sequence lengths are reported. A step's seconds are one step's, after
a short warm-up step that takes CUDA's start-up out of the first row: still one step, so read
memory here and speed elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from random import Random
from typing import Any

from retune_tui.tasks import get_method, get_task
from retune_tui.tasks.protocol import Method, Task


@dataclass
class MemoryRow:
    task: str
    method: str
    size: int
    tokens: int  # the longest example's tokens (prompt + completion + EOS)
    examples: int  # examples in the problem's oracle trace
    peak_gib: float | None  # None on a CPU, or when the step ran out of memory
    seconds: float | None
    out_of_memory: bool = False


def longest_example(task: Task, method: Method, size: int, tokenizer: Any, seed: int = 0) -> tuple[list[int], int]:
    """Token ids of the longest example of a random problem of ``size``, and the example count."""
    from retune_tui.train.dataset import tokenize

    problem = task.sample(Random(seed), size)
    examples = task.oracle_examples(problem, method)
    tokenized = [tokenize(tokenizer, ex.prompt, ex.completion)[0] for ex in examples]
    return max(tokenized, key=len), len(examples)


def measure_step(model: Any, ids: list[int], micro_batch: int) -> tuple[float, float]:
    """Peak GiB and seconds of one training step on the GPU."""
    import torch

    device = next(p for p in model.parameters() if p.requires_grad).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    batch = torch.tensor([ids] * micro_batch, device=device)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(input_ids=batch).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                             batch[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30
    del logits, loss, optimizer, batch
    return peak, seconds


def memory_benchmark(task_name: str, *, sizes: list[int], methods: list[str], base: str | None,
                     base_config: str | None, tokenizer_source: str, micro_batch: int = 4, lora_r: int = 64,
                     device: str = "auto") -> dict[str, Any]:
    """Measure every (method, size); returns the settings and one row per measurement."""
    import torch

    from retune_tui.train.config import TrainConfig
    from retune_tui.train.model import build_model, load_training_tokenizer

    task = get_task(task_name)
    config = TrainConfig(task=task.name, base=base, base_config=base_config, tokenizer=tokenizer_source,
                         lora_r=lora_r, lora_alpha=lora_r, lora_dropout=0.0,
                         device="cpu" if device == "cpu" else "auto")
    tokenizer = load_training_tokenizer(config)
    from retune_tui.engine.loading import resolve_device

    where = resolve_device(device)  # a GPU that is not there is one line, not GPU 0 instead
    gpu = where.type == "cuda"
    model = None
    if gpu:
        torch.cuda.set_device(where)
        model = build_model(config, tokenizer, where, torch.bfloat16)
        model.train()
    if model is not None:  # CUDA and its kernels start here, not in the first row
        measure_step(model, longest_example(task, get_method(methods[0]), sizes[0], tokenizer)[0][:16], 1)
    rows = []
    for method in methods:
        for size in sizes:
            ids, count = longest_example(task, get_method(method), size, tokenizer)
            peak = seconds = None
            out_of_memory = False
            if model is not None:
                try:
                    peak, seconds = measure_step(model, ids, micro_batch)
                except torch.cuda.OutOfMemoryError:
                    out_of_memory = True  # JSON has no infinity a strict reader takes
                    torch.cuda.empty_cache()
            rows.append(MemoryRow(task.name, method, size, len(ids), count, peak, seconds, out_of_memory))
    return {
        "benchmark": "memory",
        "device": torch.cuda.get_device_name(where) if gpu else "cpu (sequence lengths only)",
        "base": base or f"random weights of {base_config}",
        "tokenizer": tokenizer_source,
        "micro_batch": micro_batch,
        "lora_r": lora_r,
        "precision": "bf16 autocast, base in bf16" if gpu else None,
        "rows": [asdict(r) for r in rows],
    }
