"""Training settings: one flat, typed config; recipes are TOML files of the same fields.

A flag always beats the recipe file, which beats the defaults. Every field is checked in
``__post_init__`` and an error names the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from retune_tui.data import check_size
from retune_tui.engine.loading import DTYPE_ALIASES
from retune_tui.errors import InputError
from retune_tui.tasks import METHODS, TASKS

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SKILLS = "skills"  # the pre-training corpus of train/skills.py, not a task
SKILL_LENGTHS = (1, 64)
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_time")


@dataclass
class TrainConfig:
    """Everything one `retune train` run needs."""

    task: str = field(metadata={"help": "addition, parity or dp; or 'skills' to pre-train a base on copying"})
    method: str = field(default="retuning", metadata={"help": "baseline, scratchpad or retuning"})
    base: str | None = field(default=None, metadata={"help": "base model: a local directory or a hub name "
                                                       "(default: --init-adapter's, else the bundled base)"})
    base_config: str | None = field(default=None, metadata={"help": "a config.json: train from random weights of this architecture"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer source (default: the base); 'char' builds the character tokenizer"})
    out: str | None = field(default=None, metadata={"help": "output directory (default runs/TASK-METHOD)"})
    # data
    data: str | None = field(default=None, metadata={"help": "a `retune data` JSONL to train on instead of fresh oracle data"})
    lengths: tuple[int, int] | None = field(default=None, metadata={"help": "problem sizes [lo, hi] (default: the paper's); with data, the sizes the file's problems must lie within"})
    problems: int = field(default=10_000, metadata={"help": "top-level problems to draw examples from"})
    data_seed: int = field(default=0, metadata={"help": "seed of the problems"})
    reweight: bool = field(default=True, metadata={"help": "the paper's re-weighting of short and long problems"})
    repeat_long: tuple[int, int] | None = field(default=None, metadata={"help": "[size, times]: the examples of contexts of at least this size appear this many times (a recursion's long contexts are a small share of its examples; the short ones stay, since an adapter trained on long contexts alone forgot the short)"})
    skills_replay: float = field(default=0.0, metadata={"help": "fraction of the examples drawn from the skills a base is pre-trained on (copy, drop first, prepend of 1-40 elements): rehearsing them keeps the base's copying, which a task adapter otherwise overwrites (0: off)"})
    prompt_filler: int = field(default=0, metadata={"help": "put the tail (1 to this many characters) of random skills text in front of four prompts in five, so the model cannot tell where it is from the distance to the context's start (a help to longer problems than trained; 0: off)"})
    position_gap: int = field(default=0, metadata={"help": "move each example's completion on by a random 0 to this many position ids, so the model meets prompt-to-completion distances longer than its problems' own (a help to copy longer inputs than trained; 0: off)"})
    position_stride: float = field(default=1.0, metadata={"help": "space each example's position ids by a random stride from 1 to this, so the model meets the distances of longer problems than its own while inference keeps a stride of 1 (1: off)"})
    perturbed_returns: float = field(default=0.0, metadata={"help": "Re-Tuning: for this fraction of the examples that use a returned value, add a copy with another value (one digit changed) and the oracle's completion for it, so a parent cannot ignore what its call returned (0: off)"})
    # model
    full: bool = field(default=False, metadata={"help": "train every weight instead of a LoRA adapter"})
    init_adapter: str | None = field(default=None, metadata={"help": "start from this adapter's weights (its rank and targets) instead of a fresh LoRA: a second stage with new settings"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_targets: list[str] | None = field(default=None, metadata={"help": "module names to adapt (default: attention q/k/v/o of the architecture)"})
    # optimisation
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    scheduler: str = field(default="linear", metadata={"help": "linear, cosine, constant, constant_with_warmup; or cosine_time: cosine to zero over max_minutes of training (a fixed time budget, as on a GPU of unknown speed)"})
    warmup: float = field(default=0.03, metadata={"help": "warmup: a fraction of the steps (<1) or a number of steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip gradients to this norm (0: no clipping)"})
    micro_batch: int = field(default=4, metadata={"help": "examples per device per forward pass"})
    accumulation: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    epochs: float | None = field(default=None, metadata={"help": "passes over the examples; sets the steps (beats max_steps)"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop (and save) after this many minutes"})
    curriculum: float = field(default=0.0, metadata={"help": "widen sizes from the shortest to all over this fraction of training (0: off)"})
    group_by_length: bool = field(default=False, metadata={"help": "batch examples of similar length: less padding, but homogeneous batches learned far slower in our small-model runs"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations to save memory"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 on capable GPUs), bf16, fp16, fp32 "
                                                               "(or bfloat16, float16, float32)"})
    device: str = field(default="auto", metadata={"help": "auto or cpu"})
    seed: int = field(default=0, metadata={"help": "training seed (order of examples, initialisation)"})
    # bookkeeping
    save_steps: int = field(default=200, metadata={"help": "checkpoint every this many steps"})
    save_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    logging_steps: int = field(default=10, metadata={"help": "log the loss every this many steps"})
    allow_pickle: bool = field(default=False, metadata={"help": "allow pickled base weights"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow code shipped with the base to run"})

    def __post_init__(self) -> None:
        _check_types(self)
        if self.task not in TASKS and self.task != SKILLS:
            raise InputError(f"task: unknown task {self.task!r}; choose one of: {', '.join(TASKS)} (or {SKILLS})")
        if self.method not in {m.value for m in METHODS}:
            raise InputError(f"method: unknown method {self.method!r}; choose one of: {', '.join(m.value for m in METHODS)}")
        if self.base is None and self.base_config is None:
            self.base = _default_base(self.init_adapter)
        if self.base is not None and self.base_config is not None:
            raise InputError("base: give a base model (--base) or an architecture config (--base-config), not both")
        if self.base_config is not None and self.base_config.endswith(".json") and not Path(self.base_config).is_file():
            raise InputError(f"base_config: {self.base_config} not found")
        if self.init_adapter is not None and self.full:
            raise InputError("init_adapter: continues a LoRA adapter; it cannot be combined with full")
        _check_nothing_ignored(self)
        if self.lengths is not None:
            lo, hi = self.lengths = tuple(self.lengths)  # type: ignore[assignment]
            if not 1 <= lo <= hi:
                raise InputError(f"lengths: need 1 <= lo <= hi, got {list(self.lengths)}")
            check_size(hi)
        for name in ("problems", "lora_r", "lora_alpha", "micro_batch", "accumulation", "max_steps", "save_steps",
                     "save_limit", "logging_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.learning_rate < 1:
            raise InputError(f"learning_rate: must be in (0, 1), got {self.learning_rate}")
        if self.repeat_long is not None:
            size, times = self.repeat_long = tuple(self.repeat_long)  # type: ignore[assignment]
            if size < 1 or times < 1:
                raise InputError(f"repeat_long: need [size, times] both at least 1, got {list(self.repeat_long)}")
        if not 0 <= self.skills_replay < 1:
            raise InputError(f"skills_replay: must be in [0, 1), got {self.skills_replay}")
        if self.skills_replay > 0 and self.task == SKILLS:
            raise InputError("skills_replay: mixes skills into a task's examples; the skills task is all skills already")
        if not 0 <= self.perturbed_returns <= 1:
            raise InputError(f"perturbed_returns: must be in [0, 1], got {self.perturbed_returns}")
        if self.perturbed_returns > 0 and (self.method != "retuning" or self.task == SKILLS):
            raise InputError("perturbed_returns: only Re-Tuning data has returned values")
        for name in ("prompt_filler", "position_gap"):
            if getattr(self, name) < 0:
                raise InputError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.position_stride <= 8:
            raise InputError(f"position_stride: must be in [1, 8], got {self.position_stride}")
        if not 0 <= self.curriculum <= 1:
            raise InputError(f"curriculum: must be in [0, 1], got {self.curriculum}")
        if not 0 <= self.warmup < math.inf:  # nan too
            raise InputError(f"warmup: must be a number >= 0, got {self.warmup}")
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise InputError(f"warmup: a fraction of the steps (< 1) or a whole number of steps, got {self.warmup}")
        if not 0 <= self.weight_decay < math.inf:  # nan too: a nan weight decay writes a nan adapter
            raise InputError(f"weight_decay: must be a number >= 0, got {self.weight_decay}")
        if not self.max_grad_norm >= 0:  # inf is no clipping
            raise InputError(f"max_grad_norm: must be >= 0, got {self.max_grad_norm}")
        for name in ("epochs", "max_minutes"):
            if getattr(self, name) is not None and not 0 < getattr(self, name) < math.inf:
                raise InputError(f"{name}: must be a positive number, got {getattr(self, name)}")
        for name in ("seed", "data_seed"):
            if not 0 <= getattr(self, name) < 2**32:  # numpy's seeds
                raise InputError(f"{name}: must be in [0, 2^32), got {getattr(self, name)}")
        self.precision = {dtype: short for short, dtype in DTYPE_ALIASES.items()}.get(self.precision, self.precision)
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: choose one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"scheduler: choose one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.scheduler == "cosine_time" and self.max_minutes is None:
            raise InputError("scheduler: cosine_time decays over max_minutes; give max_minutes")
        if self.scheduler == "cosine_time" and (self.curriculum > 0 or self.epochs is not None):
            raise InputError("scheduler: cosine_time ends by time, not at a known step; it cannot be combined with "
                             "curriculum or epochs (max_steps is then only an upper bound)")
        if self.scheduler == "cosine_time" and 0 < self.warmup < 1:
            raise InputError("warmup: with cosine_time, give warmup as a number of steps, not a fraction")
        if self.device not in ("auto", "cpu"):
            raise InputError(f"device: auto or cpu, got {self.device!r}")

    @property
    def output_dir(self) -> Path:
        return Path(self.out or f"runs/{self.task}-{self.method}")

    @property
    def train_lengths(self) -> tuple[int, int]:
        if self.lengths:
            return self.lengths
        return SKILL_LENGTHS if self.task == SKILLS else TASKS[self.task].train_lengths

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lengths"] = list(self.train_lengths)
        data["repeat_long"] = list(self.repeat_long) if self.repeat_long else None
        return data


FIELDS = {f.name: f for f in fields(TrainConfig)}


def _check_nothing_ignored(config: TrainConfig) -> None:
    """Refuse settings that another one makes moot: a run would record them, unused."""
    moot = []
    if config.data is not None:
        why = "data: the file's problems and weighting are trained on"
        moot += [(name, why) for name in ("problems", "reweight")]
    if config.init_adapter is not None:
        why = "init_adapter: that adapter goes on with its own LoRA settings"
        moot += [(name, why) for name in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")]
    if config.full:
        why = "full: every weight is trained, with no LoRA"
        moot += [(name, why) for name in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")]
    for name, why in moot:
        if getattr(config, name) != FIELDS[name].default:
            raise InputError(f"{name}: has no effect with {why}; leave {name} out")

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                                       "list": (list,), "tuple": (list, tuple)}


def _check_types(config: TrainConfig) -> None:
    """Recipe values of the wrong type are named, not left to fail later."""
    for f in fields(config):
        value = getattr(config, f.name)
        annotation = str(f.type)
        if value is None and "None" in annotation:
            continue
        kind = annotation.split("[")[0].split(" ")[0]
        allowed = _TYPES.get(kind, (object,))
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            raise InputError(f"{f.name}: expected {kind}, got {value!r}")
        if annotation.startswith("tuple[int, int]") and (
                len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
            raise InputError(f"{f.name}: expected two whole numbers like [2, 5], got {list(value)!r}")
        if annotation.startswith("list[str]") and any(not isinstance(v, str) for v in value):
            raise InputError(f"{f.name}: expected names (strings), got {value!r}")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe's fields (unknown fields are an error naming them)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read recipe {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"recipe {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InputError(f"recipe {path}: unknown field {unknown[0]!r}")
    return data


def build_config(recipe: str | Path | None = None, **flags: Any) -> TrainConfig:
    """Defaults, then the recipe, then every flag that was given (not None). A ``max_steps``
    flag also clears the recipe's ``epochs`` (which would otherwise set the steps: a quick
    try of a one-epoch recipe with ``--max-steps 50`` would train the whole epoch)."""
    values: dict[str, Any] = read_recipe(recipe) if recipe else {}
    given = {k: v for k, v in flags.items() if v is not None}
    if "max_steps" in given and "epochs" in given:
        raise InputError("max_steps, epochs: give one (epochs sets the steps)")
    if "max_steps" in given:
        values.pop("epochs", None)
    values.update(given)
    missing = [name for name, f in FIELDS.items() if f.default is MISSING and name not in values]
    if missing:
        raise InputError(f"{missing[0]}: required")
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise InputError(f"bad training settings: {exc}") from None


def _default_base(init_adapter: str | None) -> str:
    """The base of the adapter a run continues (its manifest's, where that is here), else the bundled one."""
    from retune_tui.bundled import base_dir, base_for

    base = base_for(init_adapter) if init_adapter and Path(init_adapter).is_dir() else base_dir()
    if base is None:
        raise InputError("base: give a base model (--base) or an architecture config (--base-config); "
                         "the bundled base is not in assets/")
    return str(base)
