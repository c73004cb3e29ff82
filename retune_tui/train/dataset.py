"""Examples as token ids with the prompt masked, batches, and the order they come in.

Loss is on completions only: prompt tokens and padding get label -100, and EOS ends
every completion (the recursion protocol stops a segment there). The order is a
seeded stream of indices that can start with short problems and widen (a curriculum),
and groups examples of similar length into micro-batches; since the loss is averaged
per example, grouping changes the padding, not what each example weighs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
import torch

from retune_tui import data as datasets
from retune_tui.data import DataSpec, Weighting
from retune_tui.errors import InputError, UserError
from retune_tui.tasks import get_method, get_task
from retune_tui.tasks.protocol import BadReturn, Method, ProblemParseError, Task, return_text, returned_values
from retune_tui.train.skills import REPLAY_LENGTHS, skill_example, skill_examples

IGNORE = -100
#: The share of examples `with_prompt_filler` puts filler in front of (the rest stay bare, as at inference).
FILLED = 0.8


@dataclass(frozen=True)
class TextExample:
    prompt: str
    completion: str
    size: int


def oracle_examples(task: str, method: str, lengths: tuple[int, int], problems: int, seed: int,
                    reweight: bool) -> list[TextExample]:
    """Fresh examples from oracle traces, as `retune data` makes them (or skills to pre-train on)."""
    if task == "skills":
        return [TextExample(p, c, size) for p, c, size in skill_examples(lengths, problems, seed)]
    spec = DataSpec(task, get_method(method), lengths, problems, seed,
                    Weighting.paper(task) if reweight else Weighting())
    return [TextExample(ex.prompt, ex.completion, ex.size) for ex in datasets.examples(spec)]


def with_long_repeated(examples: list[TextExample], size: int, times: int) -> list[TextExample]:
    """The examples, with those of contexts of at least ``size`` ``times`` times in all."""
    long = [ex for ex in examples if ex.size >= size]
    if not long:
        raise InputError(f"repeat_long: no example has a context of size {size} or more; "
                         f"the largest is {max((ex.size for ex in examples), default=0)}")
    return examples + long * (times - 1)


def with_skills_replay(examples: list[TextExample], fraction: float, seed: int) -> list[TextExample]:
    """The examples plus skills examples making up ``fraction`` of the whole (rehearsal of what the
    base was pre-trained on). They carry the examples' smallest size, so a curriculum admits them
    from the start."""
    if fraction <= 0 or not examples:
        return examples
    count = round(len(examples) * fraction / (1 - fraction))
    smallest = min(ex.size for ex in examples)
    return examples + [TextExample(p, c, smallest) for p, c, _ in skill_examples(REPLAY_LENGTHS, count, seed)]


def with_prompt_filler(examples: list[TextExample], max_chars: int, seed: int) -> list[TextExample]:
    """The examples, four in five with the tail (1 to ``max_chars`` characters) of random skills
    text in front of the prompt, as if a context held something before the problem. Only the
    completion is learned, so what an example teaches is unchanged; but the model can no longer
    tell where it is from how far the context's start lies, which a small model trained on bare
    prompts does: its calls broke on a prompt a few characters longer than any trained."""
    if max_chars <= 0:
        return examples
    rng = Random(f"filler:{seed}")
    filled = []
    for ex in examples:
        if rng.random() < FILLED:
            text, chars = "", rng.randint(1, max_chars)
            while len(text) < chars:
                prompt, completion = skill_example(rng, rng.randint(*REPLAY_LENGTHS))
                text += f"{prompt}{completion}\n"
            ex = TextExample(text[-chars:] + ex.prompt, ex.completion, ex.size)
        filled.append(ex)
    return filled


def with_perturbed_returns(examples: list[TextExample], task: str, fraction: float, seed: int) -> list[TextExample]:
    """The examples plus, for ``fraction`` of those that use a returned value, a copy in which that
    value has one digit changed and the completion is what the oracle writes for it.

    Oracle data always returns the true value, so a parent can learn to answer from its own
    problem and ignore what came back (the parity adapter bundled until 2026-11-27 did: given
    a wrong Return, it still wrote the true parity). With other values in the data, only the
    returned one predicts the completion, and the recursion does the work.
    """
    if fraction <= 0:
        return examples
    the_task = get_task(task)
    rng = Random(f"perturbed-returns:{seed}")
    extra = []
    for ex in examples:
        if returned_values(ex.prompt) and rng.random() < fraction:
            other = changed_return(the_task, ex.prompt, ex.completion, rng)
            if other is not None:
                extra.append(TextExample(*other, ex.size))
    if not extra:
        raise InputError("perturbed_returns: no example uses a returned value (it needs Re-Tuning data)")
    return examples + extra


def changed_return(task: Task, prompt: str, completion: str, rng: Random) -> tuple[str, str] | None:
    """(prompt, completion) with a digit of the last returned value changed, or None if no change is valid.

    Digits the value already holds elsewhere are tried first, so the new value tends to look like
    one the task returns (DP's chosen indices of 1s and 2s mostly stay so)."""
    values = returned_values(prompt)
    last = values[-1]
    if not prompt.endswith(return_text(last)):
        return None
    problem = task.parse(prompt)
    places = [i for i, ch in enumerate(last) if ch.isdigit()]
    rng.shuffle(places)
    held = sorted(set(last) & set("0123456789"))
    digits = rng.sample(held, len(held)) + rng.sample(sorted(set("0123456789") - set(held)), 10 - len(held))
    for i in places:
        for digit in (d for d in digits if d != last[i]):
            value = last[:i] + digit + last[i + 1 :]
            try:
                text = task.oracle_step(problem, Method.RETUNING, [*values[:-1], value]).text
            except (BadReturn, ProblemParseError):
                continue
            if text != completion:
                return prompt[: -len(return_text(last))] + return_text(value), text
    return None


def file_examples(path: str, task: str, method: str | None = None) -> list[TextExample]:
    """Examples from a `retune data` JSONL (size read from the record, or from its prompt);
    the first one must be a ``task`` example, and what ``method`` writes in its context (a
    file made for another task or method is refused)."""
    the_task = None if task == "skills" else get_task(task)
    out = []
    try:
        for record in datasets.read_jsonl(path):
            if not out and the_task is not None:
                _check_task(path, the_task, record["prompt"])
                if method is not None:
                    _check_method(path, the_task, get_method(method), record["prompt"], record["completion"])
            size = record.get("size") or (the_task.size(the_task.parse(record["prompt"])) if the_task else 1)
            out.append(TextExample(record["prompt"], record["completion"], int(size)))
    except OSError as exc:
        raise InputError(f"cannot read data {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # the file's contents: exit code 1, as for every bad content
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); give a `retune data` JSONL file") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not out:
        raise UserError(f"{path} holds no examples")
    return out


def problem_sizes(examples: Sequence[TextExample], task: str) -> tuple[int, int]:
    """The sizes of the problems ``examples`` teach: those of the contexts that hold a problem
    as a user types it. A DP file's calls go down to arrays of one element, yet its problems
    may start at two; for a task whose calls are problems too (addition, parity), and for
    skills, every example counts."""
    counted: Sequence[TextExample] = examples
    if task != "skills":
        the_task = get_task(task)
        problem = type(the_task.sample(Random(0), 2))
        counted = [ex for ex in examples if isinstance(_parsed(the_task, ex.prompt), problem)] or examples
    return min(ex.size for ex in counted), max(ex.size for ex in counted)


def _parsed(task: Task, prompt: str) -> object | None:
    try:
        return task.parse(prompt)
    except ProblemParseError:  # a record of the user's own making: it does not count
        return None


def _check_task(path: str, task: Task, prompt: str) -> None:
    try:
        task.parse(prompt)
    except ProblemParseError:
        raise UserError(f"{path} does not hold {task.name} examples (its first prompt: "
                         f"{prompt.splitlines()[0][:60]!r})") from None


def _check_method(path: str, task: Task, method: Method, prompt: str, completion: str) -> None:
    try:
        writes = task.oracle(prompt, method)
    except (BadReturn, ProblemParseError):
        writes = None
    if writes != completion:
        raise UserError(f"{path} does not hold {task.name} {method} examples (its first completion is not "
                         f"what {method} writes there; made with another --method?)")


def write_examples(path: Path, examples: Sequence[TextExample]) -> None:
    """Write examples as the JSONL that ``file_examples`` (a recipe's ``data``) reads."""
    path.write_text("".join(json.dumps({"prompt": ex.prompt, "completion": ex.completion, "size": ex.size}) + "\n"
                            for ex in examples))


def _labelled(prompt_ids: list[int], full_ids: list[int], eos: int) -> tuple[list[int], int]:
    """The text's ids with EOS appended, and where its labels start: after the prompt's own
    tokens, as far as they agree with the whole text's (a merge across the boundary stops them)."""
    start = len(prompt_ids)
    if full_ids[:start] != prompt_ids:
        start = 0
        while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
            start += 1
    return full_ids + [eos], start


def tokenize(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Input ids and labels: the prompt masked, the completion and EOS learned.

    The whole text is tokenized at once (as the engine re-tokenizes a context) and the
    labels start where the prompt's own tokens end.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    full = tokenizer(prompt + completion, add_special_tokens=True)["input_ids"]
    ids, start = _labelled(prompt_ids, full, tokenizer.eos_token_id)
    return ids, [IGNORE] * start + ids[start:]


class CharTable:
    """Tokenizing by table lookup, for a tokenizer that gives one token per character (the
    bundled one does): 25-60 times faster than the tokenizer's own regex split (measured on
    the bundled tokenizer and the Re-Tuning sets).

    ``CharTable.of`` returns one only when the table reproduces the tokenizer exactly on
    the sample texts it is given; texts with a character outside the table fall back to
    the tokenizer.
    """

    def __init__(self, prefix: list[int], table: np.ndarray) -> None:
        self.prefix = np.asarray(prefix, dtype=np.int32)
        self.table = table

    @classmethod
    def of(cls, tokenizer: Any, samples: Sequence[str]) -> CharTable | None:
        prefix = tokenizer("", add_special_tokens=True)["input_ids"]
        table = np.full(128, -1, dtype=np.int32)
        for code in range(128):
            ids = tokenizer(chr(code), add_special_tokens=True)["input_ids"]
            if ids[: len(prefix)] == prefix and len(ids) == len(prefix) + 1 and ids[-1] != tokenizer.unk_token_id:
                table[code] = ids[-1]
        found = cls(prefix, table)
        for text in samples:
            ids = found.encode(text)
            if ids is None or ids.tolist() != tokenizer(text, add_special_tokens=True)["input_ids"]:
                return None
        return found

    def encode(self, text: str) -> np.ndarray | None:
        """The text's ids (with the tokenizer's prefix), or None for a character not in the table."""
        try:
            codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            return None
        ids = self.table[codes]
        if (ids < 0).any():
            return None
        return np.concatenate([self.prefix, ids])


class TokenizedExamples(torch.utils.data.Dataset):
    """Every example tokenized up front, kept as one flat int32 array with offsets.

    Texts go through a `CharTable` where the tokenizer allows it, else through the
    tokenizer in batches; either way an example's labels start where `tokenize` says.
    """

    CHUNK = 4096  # texts per batched tokenizer call

    def __init__(self, examples: Sequence[TextExample], tokenizer: Any, max_length: int | None = None) -> None:
        self.examples = examples
        eos = tokenizer.eos_token_id
        chars = CharTable.of(tokenizer, [ex.prompt + ex.completion for ex in examples[:64]])
        pieces: list[np.ndarray] = []
        self.starts = np.zeros(len(examples), dtype=np.int64)
        for first in range(0, len(examples), self.CHUNK):
            chunk = examples[first : first + self.CHUNK]
            encoded = [self._by_table(chars, ex, eos) for ex in chunk] if chars else [None] * len(chunk)
            missing = [i for i, item in enumerate(encoded) if item is None]
            if missing:
                prompts = tokenizer([chunk[i].prompt for i in missing], add_special_tokens=True)["input_ids"]
                fulls = tokenizer([chunk[i].prompt + chunk[i].completion for i in missing],
                                  add_special_tokens=True)["input_ids"]
                for i, prompt_ids, full in zip(missing, prompts, fulls):
                    ids, start = _labelled(prompt_ids, full, eos)
                    encoded[i] = (np.asarray(ids, dtype=np.int32), start)
            for i, (ids, start) in enumerate(encoded):
                if max_length is not None and len(ids) > max_length:
                    raise InputError(f"an example has {len(ids)} tokens, more than the model's {max_length} "
                                     "positions; train on shorter problems")
                pieces.append(ids)
                self.starts[first + i] = start
        lengths = np.array([len(ids) for ids in pieces], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)

    @staticmethod
    def _by_table(chars: CharTable, ex: TextExample, eos: int) -> tuple[np.ndarray, int] | None:
        ids = chars.encode(ex.prompt + ex.completion)
        if ids is None:
            return None
        return np.append(ids, np.int32(eos)), len(chars.prefix) + len(ex.prompt)

    def __len__(self) -> int:
        return len(self.examples)

    def lengths(self) -> np.ndarray:
        """Tokens in each example (EOS included)."""
        return np.diff(self.offsets)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        ids = self.ids[self.offsets[index] : self.offsets[index + 1]]
        labels = ids.copy()
        labels[: self.starts[index]] = IGNORE
        return {"input_ids": ids, "labels": labels}


def collate(pad_id: int, position_gap: int = 0, seed: int = 0, position_stride: float = 1.0):
    """Right-pad a micro-batch (items' ids and labels as lists or arrays): pad id in inputs,
    0 in the mask, -100 in labels. With ``position_gap`` > 0, each example's completion gets
    its position ids moved on by a random 0 to ``position_gap``, so the model meets relative
    distances between the prompt and what it writes longer than its problems' own. With
    ``position_stride`` > 1, each example's position ids are spaced by a random stride from 1
    to ``position_stride`` (fractional ids, which rotary embeddings take as they are), so the
    model meets every distance of a longer problem inside its own examples while the spacing
    it meets at inference (1) stays among those it was trained on."""
    rng = np.random.default_rng(seed)

    def collate_fn(items: list[dict[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        lengths = np.array([len(item["input_ids"]) for item in items])
        width = int(lengths.max())
        input_ids = np.full((len(items), width), pad_id, dtype=np.int64)
        labels = np.full((len(items), width), IGNORE, dtype=np.int64)
        for row, item in enumerate(items):
            input_ids[row, : lengths[row]] = item["input_ids"]
            labels[row, : lengths[row]] = item["labels"]
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
                 "labels": torch.from_numpy(labels)}
        if position_gap > 0 or position_stride > 1:
            positions = np.broadcast_to(np.arange(width, dtype=np.float64), (len(items), width))
            if position_gap > 0:
                starts = (labels != IGNORE).argmax(axis=1)
                gaps = rng.integers(0, position_gap, size=len(items), endpoint=True)
                positions = positions + (np.arange(width)[None, :] >= starts[:, None]) * gaps[:, None]
            if position_stride > 1:
                positions = positions * rng.uniform(1.0, position_stride, size=len(items))[:, None]
            batch["position_ids"] = torch.from_numpy(positions.astype(np.float32 if position_stride > 1 else np.int64))
        return batch

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
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return map(int, self.indices)

    def __len__(self) -> int:
        return len(self.indices)
