"""`retune train`: setup → train → save, with transformers' Trainer and peft.

Runs unchanged on a CPU, one GPU, or several under ``accelerate launch`` / ``torchrun``
(the Trainer does DDP; an FSDP config ships in ``training/``). Checkpoints go to
``OUT/checkpoints``; re-running with the same ``--out`` resumes from the last complete
one with the same data order. The result in ``OUT`` is peft's adapter files (never a
copy of the base), the tokenizer, a manifest, the loss log and its curve.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from retune_tui.engine.decoding import max_positions
from retune_tui.engine.hf import base_model_of
from retune_tui.errors import InputError, Stopped, UserError
from retune_tui.files import STAGING_NAME, atomic_write_text, check_folder, staged_into
from retune_tui.manifest import MANIFEST_NAME, Manifest, config_fingerprint, package_versions
from retune_tui.train import dataset as ds
from retune_tui.train.callbacks import LossLog, ProgressBar, StopOnInterrupt, TimeCosine, TimeLimit
from retune_tui.train.config import FIELDS, TrainConfig
from retune_tui.train.model import build_model, load_training_tokenizer

CONFIG_NAME = "train_config.json"
START_KEY = "start"  # kept with the settings: the fresh start a resumed run goes on with
# Settings a resumed run may change (how long it runs, how it reports), unlike what it learns.
RESUMABLE_CHANGES = {"max_steps", "epochs", "max_minutes", "save_steps", "save_limit", "logging_steps", "out"}


@dataclass
class TrainResult:
    out: Path
    steps: int  # the run's, resumed ones included
    final_loss: float | None
    seconds: float  # of this call
    tokens: int  # of this call
    resumed_from: str | None
    already_done: bool = False  # the run in --out had finished; nothing was trained or rewritten
    new_steps: int = 0  # made by this call


def last_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint whose trainer state was fully written (a crash mid-save leaves one without)."""
    if not directory.is_dir():
        return None
    found = []
    for path in directory.glob("checkpoint-*"):
        try:
            step = int(path.name.split("-")[1])
            json.loads((path / "trainer_state.json").read_text())
        except (ValueError, OSError, IndexError):
            continue
        found.append((step, path))
    return max(found)[1] if found else None


#: What a finished run made beside its settings and manifest, which a restarted run stopped
#: before its end must not leave to pass for its own (the loss plot, the weights).
RESULT_FILES = ("loss.png", "adapter_model.safetensors", "adapter_config.json", "model.safetensors")

#: What a run leaves in its folder, even one killed before its end.
RUN_FILES = (CONFIG_NAME, MANIFEST_NAME, "checkpoints", "loss.jsonl", STAGING_NAME)


def _check_is_a_run(out: Path) -> None:
    """``out`` is a folder that is empty, missing or a run's: nothing else is written over."""
    if out.is_file():
        raise InputError(f"--out {out} is a file; give a folder")
    check_folder(out, "--out")  # under a file, say
    if out.is_dir() and not any((out / name).exists() for name in RUN_FILES) and any(out.iterdir()):
        raise InputError(f"--out {out} holds files that are not a retune run; choose another folder")


def _saved_settings(out: Path) -> dict[str, Any]:
    """The settings the run in ``out`` saved; {} if there are none, or they are unreadable
    (written by an older or interrupted run: they are rewritten)."""
    try:
        saved = json.loads((out / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _check_previous_run(config: TrainConfig, out: Path) -> None:
    before = _saved_settings(out)
    if not before:
        return
    now = config.to_dict()
    # a field the saved run does not name is one added since: it ran with the field's default
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and before.get(k, FIELDS[k].default) != now[k])
    if changed:
        raise InputError(f"{out} holds a run with other settings ({changed[0]}: {before.get(changed[0])!r} there, "
                         f"{now[changed[0]]!r} now); choose another --out, or --restart to replace it")


class ReTrainer:
    """Builds the Trainer subclass lazily (transformers is imported only when training)."""

    @staticmethod
    def make(sampler: ds.CurriculumSampler, lr_factor: TimeCosine | None = None, **kwargs: Any) -> Any:
        from transformers import Trainer

        class _Trainer(Trainer):
            def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001 - Trainer's signature
                return sampler

            def create_scheduler(self, num_training_steps, optimizer=None):  # noqa: ANN001
                if lr_factor is None or self.lr_scheduler is not None:
                    return super().create_scheduler(num_training_steps, optimizer)
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, lr_factor)
                return self.lr_scheduler

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
                """Cross-entropy averaged over each example's completion tokens, then over
                examples: a one-token answer weighs as much as a long scratchpad."""
                labels = inputs.pop("labels")
                outputs = model(**inputs)
                logits = outputs.logits[:, :-1].float()  # (B, T-1, vocab)
                target = labels[:, 1:].to(logits.device)  # (B, T-1)
                losses = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=ds.IGNORE, reduction="none"
                ).view(target.shape)
                counted = target != ds.IGNORE
                per_example = (losses * counted).sum(1) / counted.sum(1).clamp(min=1)
                loss = per_example[counted.any(1)].mean()
                return (loss, outputs) if return_outputs else loss

        from transformers.trainer_callback import PrinterCallback

        trainer = _Trainer(**kwargs)
        trainer.remove_callback(PrinterCallback)  # our LossLog and ProgressBar report instead
        trainer.model_accepts_loss_kwargs = False
        trainer.loss_is_scaled_for_ga = False  # a per-micro-batch mean: the Trainer divides by accumulation
        return trainer


def _precision(config: TrainConfig) -> tuple[bool, bool, Any]:
    """(bf16, fp16, dtype to load the base in)."""
    cuda = torch.cuda.is_available() and config.device != "cpu"
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    fp16 = config.precision == "fp16"
    if (bf16 or fp16) and not cuda and config.precision != "auto":
        raise InputError(f"precision: {config.precision} needs a GPU here; use fp32 on the CPU")
    # A LoRA base can sit in bf16 (it is frozen); full training keeps float32 master weights.
    dtype = torch.bfloat16 if bf16 and not config.full else torch.float32
    return bf16, fp16, dtype


def train(config: TrainConfig, *, restart: bool = False, require_checkpoint: bool = False,
          progress: bool = True) -> TrainResult:
    """Train an adapter (or a whole model with ``full``) as ``config`` says."""
    from transformers import TrainingArguments, set_seed

    out = config.output_dir
    checkpoints = out / "checkpoints"
    _check_is_a_run(out)
    resume = None if restart else last_checkpoint(checkpoints)
    if not restart:
        _check_previous_run(config, out)
        if resume is None and (out / MANIFEST_NAME).exists():
            raise InputError(f"{out} holds a finished adapter and no checkpoint to continue from; choose another "
                             "--out, or --restart to train it again in its place")
    if require_checkpoint and resume is None:
        raise InputError(f"--resume: {checkpoints} holds no complete checkpoint to continue from")

    tokenizer = load_training_tokenizer(config)
    if config.data:
        examples = ds.file_examples(config.data, config.task, config.method)
        stage_lengths = ds.problem_sizes(examples, config.task)
        (lo, hi), (file_lo, file_hi) = config.lengths or stage_lengths, stage_lengths
        if not lo <= file_lo <= file_hi <= hi:
            raise InputError(f"lengths: {config.data} holds problems of sizes {file_lo}-{file_hi}, "
                             f"outside {lo}-{hi}; with data, lengths only checks the "
                             "file's sizes (write a data set of the sizes wanted, or leave lengths out)")
    else:
        stage_lengths = config.train_lengths
        examples = ds.oracle_examples(config.task, config.method, config.train_lengths, config.problems,
                                      config.data_seed, config.reweight)
    if config.repeat_long:
        examples = ds.with_long_repeated(examples, *config.repeat_long)
    examples = ds.with_perturbed_returns(examples, config.task, config.perturbed_returns, config.data_seed)
    examples = ds.with_skills_replay(examples, config.skills_replay, config.data_seed)
    examples = ds.with_prompt_filler(examples, config.prompt_filler, config.data_seed)
    bf16, fp16, dtype = _precision(config)
    use_cpu = config.device == "cpu" or not torch.cuda.is_available()
    device = torch.device("cpu" if use_cpu else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    set_seed(config.seed)  # the adapter's (or a random base's) initial weights
    model = build_model(config, tokenizer, device, dtype)
    limit = max_positions(base_model_of(model).config)
    train_set = ds.TokenizedExamples(examples, tokenizer, limit)
    if config.position_stride > 1 and not any("rotary" in type(m).__name__.lower() for m in model.modules()):
        raise InputError("position_stride: needs rotary position embeddings (fractional position ids); "
                         f"{config.base or config.base_config} has none")
    longest = int(train_set.lengths().max()) if len(train_set) else 0
    if limit is not None and (longest + config.position_gap) * config.position_stride > limit:
        raise InputError(f"position_gap, position_stride: the longest example ({longest} tokens) moved on by "
                         f"{config.position_gap} and spaced by {config.position_stride} passes the model's "
                         f"{limit} positions")

    if restart and out.exists():  # every check has passed: the run before goes, with what it made
        shutil.rmtree(checkpoints, ignore_errors=True)
        for name in (CONFIG_NAME, MANIFEST_NAME, *RESULT_FILES):
            (out / name).unlink(missing_ok=True)

    world = int(os.environ.get("WORLD_SIZE", 1))
    per_step = config.micro_batch * config.accumulation * world
    if config.epochs is not None:
        config.max_steps = max(1, math.ceil(config.epochs * len(examples) / per_step))
    if _step_of(resume) > config.max_steps:
        raise InputError(f"{out} holds a run already trained for {_step_of(resume)} steps, past "
                         f"max_steps {config.max_steps}; give more steps, or --restart to train it again")
    total = config.max_steps * per_step
    lengths = [len(ex.prompt) + len(ex.completion) for ex in examples]
    sampler = ds.CurriculumSampler([ex.size for ex in examples], lengths, total, seed=config.seed,
                                   curriculum=config.curriculum, batch=config.micro_batch,
                                   group=64 if config.group_by_length else 1)
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.micro_batch,
        gradient_accumulation_steps=config.accumulation,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant" if config.scheduler == "cosine_time" else config.scheduler,
        warmup_steps=config.warmup if config.warmup < 1 else int(config.warmup),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.max_steps,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_limit,
        bf16=bf16,
        fp16=fp16,
        use_cpu=use_cpu,
        seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
    )
    log = LossLog(out / "loss.jsonl", resume_step=_step_of(resume))
    lr_factor = TimeCosine(config.max_minutes, int(config.warmup)) if config.scheduler == "cosine_time" else None
    interrupt = StopOnInterrupt()
    # TimeLimit and StopOnInterrupt first: the log sees when they stop the run, and logs that last step
    time_limit = TimeLimit(config.max_minutes, lr_factor)
    callbacks = [time_limit, interrupt, log]
    callbacks += [ProgressBar(lr_factor)] if progress else []
    collator = ds.collate(tokenizer.pad_token_id, config.position_gap, config.data_seed, config.position_stride)
    trainer = ReTrainer.make(sampler, lr_factor, model=model, args=args, train_dataset=train_set,
                             data_collator=collator, callbacks=callbacks)
    start_id = _start(config, out, resume)
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / CONFIG_NAME, json.dumps({**config.to_dict(), START_KEY: start_id}, indent=2) + "\n")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), interrupt.watching() if world == 1 else contextlib.nullcontext():
            # peft says at every checkpoint of an adapter on lm_head that it keeps the base's
            # lm_head too; that is what a checkpoint to resume from needs, not the user's concern
            # (the finished adapter is saved without it, _save_result).
            warnings.filterwarnings("ignore", message="Setting `save_embedding_layers` to `True`")
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except torch.cuda.OutOfMemoryError:
        raise UserError("out of GPU memory; lower --micro-batch (and raise --accumulation), or use "
                        "--gradient-checkpointing") from None
    finally:
        for callback in callbacks:
            if isinstance(callback, ProgressBar):
                callback.close()
    seconds = time.perf_counter() - start
    state = trainer.state
    if interrupt.requested and state.global_step < config.max_steps and not time_limit.reached:
        again = "the same command without --restart" if restart else "the same command"
        raise Stopped(f"interrupted at step {state.global_step} of {config.max_steps}, saved as a checkpoint "
                      f"in {checkpoints}; {again} goes on from there")
    final_loss = log.last_loss
    earlier = _manifest_or_none(out) if resume is not None and state.global_step == _step_of(resume) else None
    if earlier is not None and earlier.steps == state.global_step:
        # Re-run of a finished run: its adapter and manifest stay as they were.
        return TrainResult(out, earlier.steps, earlier.final_loss, seconds, 0, str(resume), already_done=True)
    if trainer.is_world_process_zero():
        _save_result(trainer.model, tokenizer, config, out, state.global_step, final_loss, stage_lengths, start_id)
        log.plot(out / "loss.png", title=f"{config.task} · {config.method}")
    tokens = int(state.num_input_tokens_seen or 0) - log.tokens_at_start
    return TrainResult(out, state.global_step, final_loss, seconds, tokens, str(resume) if resume else None,
                       new_steps=state.global_step - _step_of(resume))


def _manifest_or_none(out: Path) -> Manifest | None:
    """The manifest in ``out``; None if it is missing or unreadable (it is then rewritten)."""
    try:
        return Manifest.read(out)
    except UserError:
        return None


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[1]) if checkpoint else 0


def _trained_sizes(config: TrainConfig, stage: tuple[int, int]) -> tuple[int, int]:
    """The sizes the adapter has been trained on: this run's (``stage``), widened by those of
    the adapter it continued."""
    lo, hi = stage
    earlier = Manifest.read(config.init_adapter) if config.init_adapter else None
    if earlier is not None:
        lo, hi = min(lo, earlier.train_lengths[0]), max(hi, earlier.train_lengths[1])
    return lo, hi


def _start(config: TrainConfig, out: Path, resume: Path | None) -> str | None:
    """Which fresh start the weights descend from: the continued adapter's for a later stage
    (None where its manifest predates these ids), the run's own when it resumes, else a new id.
    `retune average` refuses adapters of different starts."""
    if config.init_adapter:
        earlier = Manifest.read(config.init_adapter)
        return earlier.extra.get("start") if earlier is not None else None
    if resume is not None:
        kept = _saved_settings(out).get(START_KEY)
        if isinstance(kept, str):
            return kept
        earlier = _manifest_or_none(out)  # a run from before the id was kept with its settings
        if earlier is not None and isinstance(earlier.extra.get("start"), str):
            return earlier.extra["start"]
    import uuid

    return uuid.uuid4().hex[:12]


def _lora_settings(model: Any) -> dict[str, Any]:
    """The adapter's rank, alpha, dropout and targets as peft holds them ({} for a full model)."""
    lora = getattr(model, "peft_config", {}).get("default")
    if lora is None:
        return {}
    targets = lora.target_modules
    return {"r": lora.r, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout,
            "targets": sorted(targets) if isinstance(targets, (set, list)) else targets}


def _save_result(model: Any, tokenizer: Any, config: TrainConfig, out: Path, steps: int, loss: float | None,
                 stage_lengths: tuple[int, int], start_id: str | None) -> None:
    """Write the adapter (or full model), tokenizer and manifest via a staging folder, then move
    them in. ``stage_lengths``: the sizes this run trained on (a data file's own, when it has one)."""

    with staged_into(out) as staging:
        if hasattr(model, "peft_config"):
            # Only the LoRA weights: with lm_head adapted, peft would also save the frozen base
            # lm_head, which a bf16 run stores rounded, and loading the adapter would swap it in.
            model.save_pretrained(staging, save_embedding_layers=False)
        else:
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        base_model = base_model_of(model)
        versions = package_versions("torch", "transformers", "peft", "accelerate", "retune")
        settings = config.to_dict()
        manifest = Manifest(
            task=config.task,
            method=config.method,
            base=config.base or f"random:{config.base_config}",
            base_fingerprint=config_fingerprint(base_model.config.to_dict()),
            tokenizer=config.tokenizer or config.base or "",
            train_lengths=_trained_sizes(config, stage_lengths),
            weighting={k: settings[k] for k in ("reweight", "problems", "data", "curriculum", "repeat_long",
                                                "skills_replay", "perturbed_returns", "prompt_filler",
                                                "position_gap", "position_stride")
                       if not (config.data and k in ("reweight", "problems"))},  # the file made those choices
            lora=_lora_settings(model),
            steps=steps,
            final_loss=loss,
            versions=versions,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            extra={"full": config.full, "init_adapter": config.init_adapter,
                   "stage_lengths": list(stage_lengths), "start": start_id},
        )
        manifest.write(staging)
