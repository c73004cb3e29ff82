"""`retune train`: one flag per training setting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from retune_tui.cli import app, guarded
from retune_tui.errors import InputError

# --- train ------------------------------------------------------------------------------


def _train_options() -> list:
    """One --flag per TrainConfig field (help from the field), all defaulting to "not given"."""
    import inspect
    from dataclasses import MISSING
    from dataclasses import fields as dc_fields

    from retune_tui.train.config import TrainConfig

    params = [
        inspect.Parameter(
            "task",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[str | None, typer.Argument(
                help="addition, parity or dp; skills pre-trains a base on copying (or set in the recipe).")],
            default=None,
        )
    ]
    for f in dc_fields(TrainConfig):
        if f.name == "task":
            continue
        help_text = f.metadata.get("help", "").replace("[", "\\[")  # not rich markup
        default = f.default if f.default is not MISSING else None  # what a run gets when neither sets it
        if default not in (None, "", (), []):
            help_text += f" \\[default: {default}]"
        kind = str(f.type).split("[")[0].split(" ")[0]
        flag = "--" + f.name.replace("_", "-")
        if kind == "bool":
            option = typer.Option(f"{flag}/--no-{f.name.replace('_', '-')}", help=help_text, show_default=False)
            annotation = Annotated[bool | None, option]
        else:
            python_type = {"int": int, "float": float}.get(kind, str)
            if f.name == "lengths":
                help_text += "; on the command line LO-HI"
            if f.name == "repeat_long":
                help_text += "; on the command line SIZE,TIMES"
            if f.name == "lora_targets":
                help_text += " (comma-separated)"
            annotation = Annotated[python_type | None, typer.Option(flag, help=help_text, show_default=False)]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None))
    params += [
        inspect.Parameter(
            "recipe",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[Path | None, typer.Option(help="A recipe (TOML); flags beat it.")],
        ),
        inspect.Parameter(
            "restart",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option(help="Discard the checkpoints in --out and start over.")],
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[
                bool,
                typer.Option(help="Insist on continuing from the last checkpoint in --out "
                                  "(re-running resumes anyway)."),
            ],
        ),
    ]
    return params


def train(**options: Any) -> None:
    """Train a LoRA adapter (or with --full, a whole model) on oracle data or a `retune data` file.

    Re-running with the same --out resumes from its last checkpoint."""
    from retune_tui.data import parse_lengths
    from retune_tui.train.config import build_config
    from retune_tui.train.run import train as run_training

    recipe, restart, resume = options.pop("recipe"), options.pop("restart"), options.pop("resume")
    if restart and resume:
        raise InputError("--resume and --restart contradict each other")
    if options.get("lengths") is not None:
        options["lengths"] = parse_lengths(options["lengths"])
    if options.get("repeat_long") is not None:
        options["repeat_long"] = _size_and_times(options["repeat_long"])
    if options.get("lora_targets") is not None:
        options["lora_targets"] = [t.strip() for t in options["lora_targets"].split(",") if t.strip()]
    config = build_config(recipe, **options)
    result = run_training(config, restart=restart, require_checkpoint=resume)
    if result.already_done:
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        typer.echo(f"{result.out} already holds this run, trained for {result.steps} steps (final loss {loss}); "
                   "nothing to do (--restart trains it again, --max-steps trains it further)")
        return
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    steps = f"to step {result.steps} ({result.new_steps} now)" if result.resumed_from else f"{result.steps} steps"
    typer.echo(
        f"trained {steps} in {result.seconds:.1f}s "
        f"({result.tokens / max(result.seconds, 1e-9):,.0f} tokens/s), final loss {loss}{resumed}; "
        f"wrote {result.out}"
    )


def _size_and_times(text: str) -> tuple[int, int]:
    """``--repeat-long 18,4`` → (18, 4)."""
    try:
        size, times = (int(v) for v in text.replace(":", ",").split(","))
    except ValueError:
        raise InputError(f"bad --repeat-long {text!r}; expected SIZE,TIMES like 18,4") from None
    return size, times


def _register_train() -> None:
    import inspect

    train.__signature__ = inspect.Signature(_train_options())  # type: ignore[attr-defined]
    app.command("train")(guarded(train))


_register_train()


# --- average ------------------------------------------------------------------------------


@app.command("average")
@guarded
def average(
    adapters: Annotated[list[Path], typer.Argument(help="Two or more adapter folders made by `retune train`.")],
    out: Annotated[Path, typer.Option(help="Folder for the averaged adapter.")],
    weights: Annotated[str | None, typer.Option(help="One weight per adapter, like 1,3 (default: equal).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the adapter files already in --out.")] = False,
) -> None:
    """Average LoRA adapters of one start exactly, as one adapter; it can beat each of them.

    One start: one fresh LoRA trained on (the ends of its stages, a run and its continuation).

    Adapters whose manifests name different fresh starts are refused (manifests written before
    2026-11-28 name none); task, method, base and layers are checked too."""
    from retune_tui.train.average import average_adapters

    parsed = None
    if weights is not None:
        try:
            parsed = [float(w) for w in weights.split(",")]
        except ValueError:
            raise InputError(f"bad --weights {weights!r}; expected numbers like 1,3") from None
    result = average_adapters(adapters, out, parsed, overwrite=overwrite)
    shares = ", ".join(f"{w:.3g}" for w in result.weights)
    typer.echo(f"averaged {len(adapters)} adapters (weights {shares}) into {result.out}, rank {result.rank}")
