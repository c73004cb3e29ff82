"""Examples as token ids with the prompt masked, batches, and the order they come in.

Loss is on completions only: prompt tokens and padding get label -100, and EOS ends
every completion (the recursion protocol stops a segment there). The order is a
seeded stream of indices that can start with short problems and widen (a curriculum),
and groups examples of similar length into micro-batches; since the loss is averaged
per example, grouping changes the padding, not what each example weighs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from retune_tui import data as datasets
from retune_tui.data import DataSpec, Weighting
from retune_tui.errors import InputError
from retune_tui.tasks import get_method, get_task

IGNORE = -100


@dataclass(frozen=True)
class TextExample:
    prompt: str
    completion: str
    size: int


def oracle_examples(task: str, method: str, lengths: tuple[int, int], problems: int, seed: int,
                    reweight: bool) -> list[TextExample]:
    """Fresh examples from oracle traces, as `retune data` makes them (or skills to pre-train on)."""
    if task == "skills":
        from retune_tui.train.skills import skill_examples

        return [TextExample(p, c, size) for p, c, size in skill_examples(lengths, problems, seed)]
    spec = DataSpec(task, get_method(method), lengths, problems, seed,
                    Weighting.paper(task) if reweight else Weighting())
    return [TextExample(ex.prompt, ex.completion, ex.size) for ex in datasets.examples(spec)]


def file_examples(path: str, task: str) -> list[TextExample]:
    """Examples from a `retune data` JSONL (size read from the record, or from its prompt)."""
    the_task = None if task == "skills" else get_task(task)
    out = []
    try:
        for record in datasets.read_jsonl(path):
            size = record.get("size") or (the_task.size(the_task.parse(record["prompt"])) if the_task else 1)
            out.append(TextExample(record["prompt"], record["completion"], int(size)))
    except OSError as exc:
        raise InputError(f"cannot read data {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not out:
        raise InputError(f"{path} holds no examples")
    return out


def tokenize(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Input ids and labels: the prompt masked, the completion and EOS learned.

    The whole text is tokenized at once (as the engine re-tokenizes a context) and the
    labels start where the prompt's own tokens end.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    full = tokenizer(prompt + completion, add_special_tokens=True)["input_ids"]
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    ids = full + [tokenizer.eos_token_id]
    labels = [IGNORE] * start + ids[start:]
    return ids, labels


class TokenizedExamples(torch.utils.data.Dataset):
    """Examples tokenized on first use."""

    def __init__(self, examples: Sequence[TextExample], tokenizer: Any, max_length: int | None = None) -> None:
        self.examples = examples
        self.tokenizer = tokenizer
        self.max_length = max_length
        self._cache: dict[int, dict[str, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        item = self._cache.get(index)
        if item is None:
            ex = self.examples[index]
            ids, labels = tokenize(self.tokenizer, ex.prompt, ex.completion)
            if self.max_length is not None and len(ids) > self.max_length:
                raise InputError(f"an example has {len(ids)} tokens, more than the model's {self.max_length} "
                                 "positions; train on shorter problems")
            item = self._cache[index] = {"input_ids": ids, "labels": labels}
        return item


def collate(pad_id: int):
    """Right-pad a micro-batch: pad id in inputs, 0 in the mask, -100 in labels."""

    def collate_fn(items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            input_ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    return collate_fn


class CurriculumSampler(torch.utils.data.Sampler[int]):
    """A fixed, seeded stream of ``total`` example indices.

    With ``curriculum`` = c > 0, the largest size allowed grows linearly from the
    smallest to the largest over the first c of the stream; examples are drawn
    uniformly among those allowed. With ``group`` > 1, each window of ``group``
    indices is sorted by length, cut into micro-batches of ``batch``, and the
    micro-batches shuffled.
    """

    def __init__(self, sizes: Sequence[int], lengths: Sequence[int], total: int, *, seed: int, curriculum: float,
                 batch: int, group: int = 64) -> None:
        rng = np.random.default_rng(seed)
        sizes_arr = np.asarray(sizes)
        order = np.argsort(sizes_arr, kind="stable")
        sorted_sizes = sizes_arr[order]
        lo, hi = int(sorted_sizes[0]), int(sorted_sizes[-1])
        progress = np.arange(total) / max(total, 1)
        if curriculum > 0:
            caps = lo + (hi - lo) * np.minimum(1.0, progress / curriculum)
        else:
            caps = np.full(total, hi, dtype=float)
        allowed = np.searchsorted(sorted_sizes, np.floor(caps + 1e-9), side="right")
        indices = order[np.minimum((rng.random(total) * allowed).astype(np.int64), allowed - 1)]
        if group > 1 and batch > 1:
            lengths_arr = np.asarray(lengths)
            window = group * batch
            for start in range(0, total, window):
                chunk = indices[start : start + window]
                chunk = chunk[np.argsort(lengths_arr[chunk], kind="stable")]
                batches = [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
                rng.shuffle(batches)
                indices[start : start + len(chunk)] = np.concatenate(batches)
        self.indices = indices.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
