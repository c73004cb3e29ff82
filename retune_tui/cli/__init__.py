"""`retune`: generate data, train, solve, evaluate, benchmark, inspect traces.

Commands stay thin: parse options, build a config, call one function. Heavy modules
(torch, transformers, rich's live display) are imported inside the commands that need
them, so `retune --help` answers at once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from retune_tui.errors import InputError, UserError

app = typer.Typer(
    name="retune",
    help="Re-Tuning: recursive tuning of LLMs. Generate data, solve problems, inspect traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
trace_app = typer.Typer(help="Saved traces: show them again.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")
bench_app = typer.Typer(help="Benchmarks: print ratios, write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

_debug = False
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: F) -> F:
    """Expected failures become one line on stderr and an exit code (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if _debug:
                raise
            _fail(str(exc), exc.exit_code)
        except OSError as exc:
            if _debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}", 1)
        except UnicodeDecodeError as exc:
            if _debug:
                raise
            _fail(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            if type(exc).__name__ != "OutOfMemoryError" or _debug:  # torch.cuda.OutOfMemoryError
                raise
            _fail("out of GPU memory: solve fewer problems at once (--batch of eval and solve --file), "
                  "use a smaller model, or --device cpu", 1)

    return wrapper  # type: ignore[return-value]


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors, and debug logs.")] = False,
) -> None:
    global _debug
    _debug = debug
    if debug:  # and what the code logs on the way (why a model goes to transformers, say)
        import logging

        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("retune_tui").setLevel(logging.DEBUG)


# --- shared options ---------------------------------------------------------------------

TaskOpt = Annotated[
    str | None, typer.Option("--task", "-t", help="addition, parity or dp (default: recognised from the text).")
]
MethodOpt = Annotated[str, typer.Option("--method", "-m", help="baseline, scratchpad or retuning.")]
MaxDepth = Annotated[int | None, typer.Option(help="Deepest context allowed (default: from the problem size).")]
MaxCalls = Annotated[int | None, typer.Option(help="Calls allowed per problem (default: from the problem size).")]
MaxSegTokens = Annotated[
    int | None, typer.Option(help="Tokens per segment before it must stop (default: from the problem).")
]
MaxTotalTokens = Annotated[int | None, typer.Option(help="Tokens per problem (default: from the problem size).")]
MaxSeconds = Annotated[float | None, typer.Option(help="Wall time per problem in seconds (default: none).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace output files that already exist.")]


def _limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds):
    from retune_tui.engine.limits import Limits

    try:
        return Limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds)
    except ValueError as exc:  # "max_seconds must …", named as the flag the user typed: --max-seconds
        field, rest = str(exc).split(" ", 1)
        raise InputError(f"--{field.replace('_', '-')} {rest}") from None


# --- model options ------------------------------------------------------------------------------


BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base",
        "--model",
        help="Base model: a local directory or a hub name; 'oracle' writes the correct segments with no model "
        "(default: the bundled model).",
    ),
]
AdapterOpt = Annotated[Path | None, typer.Option(help="A LoRA adapter directory made by `retune train`.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", "--precision", help=(
    "auto (the bundled model: float32; another: bf16 on capable GPUs, else float32), float32, bfloat16, "
    "float16 (or fp32, bf16, fp16, as train's --precision)."))]
PickleOpt = Annotated[bool, typer.Option(help="Allow pickled .bin checkpoints (they can run code when loaded).")]
RemoteOpt = Annotated[bool, typer.Option(help="Allow model code shipped with the checkpoint to run.")]


def _backend(base, adapter, device, dtype, allow_pickle, trust_remote_code, temperature=0.0, top_p=1.0, seed=0):
    """The oracle (--model oracle), a given model, or by default the bundled one."""
    from retune_tui.engine.loading import ModelSpec
    from retune_tui.solving import Backend

    if base == "oracle":
        from retune_tui.engine.loading import check_device_name, dtype_name

        check_device_name(device)  # the oracle runs on neither, but a typo is still one
        dtype_name(dtype)
        if adapter is not None:
            raise InputError("--adapter needs a --base model (the oracle takes no adapter)")
        if temperature != 0.0 or top_p != 1.0:
            raise InputError("--temperature and --top-p are for a model; the oracle writes the correct segments")
        return Backend()
    if not 0 <= temperature < math.inf:  # nan is a sampling traceback; inf samples uniformly, noise
        raise InputError(f"--temperature must be a number >= 0, got {temperature}")
    from retune_tui import bundled
    from retune_tui.engine.loading import check_adapter_folder

    if adapter is not None:
        check_adapter_folder(adapter)
    if base is None and adapter is not None:
        base = bundled.base_for(adapter)
        if base is None:
            raise InputError("--adapter needs the --base model it was trained on")
    if base is None:
        return Backend(bundled=True, device=device, dtype=dtype, temperature=temperature, top_p=top_p, seed=seed)
    dtype = bundled.dtype_on(base, dtype)  # the bundled base with an adapter named runs as the bundled model
    spec = ModelSpec(base, str(adapter) if adapter else None, device, dtype, allow_pickle, trust_remote_code)
    return Backend(spec, device=device, dtype=dtype, temperature=temperature, top_p=top_p, seed=seed)


def _int_list(text: str, what: str) -> list[int]:
    """``"1,64,256"`` or ``"2-5"`` (a range) → a list of positive ints."""
    from retune_tui.data import check_size, parse_lengths

    try:
        if "," in text:
            values = [int(v) for v in text.split(",") if v.strip()]
        else:
            lo, hi = parse_lengths(text)
            values = list(range(lo, hi + 1))
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise InputError(f"bad {what} {text!r}; expected positive numbers like '1,64,256' or a range like '2-5'")
    if what == "sizes":
        check_size(max(values))
    return values


PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".eps", ".ps", ".webp", ".tif", ".tiff")  # matplotlib's


def _plot_path(path: Path | None, overwrite: bool) -> Path | None:
    """Where a plot goes (a name without a suffix gets ``.png``), checked before any work."""
    from retune_tui.files import check_output

    if path is None:
        return None
    if path.is_dir():
        raise InputError(f"--plot {path} is a directory; give a file name")
    if not path.suffix:
        path = path.with_suffix(".png")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"--plot {path}: a plot is written as .png, .svg, .pdf, .jpg or another of matplotlib's "
                         "formats")
    check_output(path, overwrite=overwrite, option="--plot")
    return path


def _write_json(path: Path, data: Any) -> None:
    import json

    from retune_tui.files import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def main() -> None:
    import signal
    import sys

    # `kill` and `timeout` send SIGTERM: exit as after Ctrl-C, through every cleanup on the way
    # (a half-written output's temporary file is removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(run_cli(sys.argv[1:]))


def run_cli(args: list[str]) -> int:
    """Run ``retune ARGS``; a usage error (unknown option, missing argument) is one line."""
    from typer.exceptions import TyperException

    options = args[: args.index("--")] if "--" in args else args
    if "--debug" in options[1:]:  # `retune solve … --debug` as well as `retune --debug solve …`
        args = ["--debug"] + [a for i, a in enumerate(args) if not (a == "--debug" and i < len(options))]
    try:
        code = app(args, prog_name="retune", standalone_mode=False)
    except TyperException as exc:  # typer's own click raises these for the command line
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            return 0
        message = exc.format_message()
        if message.startswith("No such option: -") and message[len("No such option: -"):][:1].isdigit():
            message += " (a problem that starts with '-': put -- before it)"
        if message.startswith("Got unexpected extra argument"):
            message += " (put a problem with spaces in quotes)"
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {message}{where}", err=True)
        return 2 if ctx is not None else exc.exit_code
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


# The commands register themselves on `app` when imported.
from retune_tui.cli import bench, datasets, evaluation, solving_commands, training  # noqa: E402,F401
