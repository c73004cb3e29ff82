"""`retune`: generate data, solve problems, inspect traces.

Commands stay thin: parse options, build a config, call one function. Heavy modules
(torch, transformers, rich's live display) are imported inside the commands that need
them, so `retune --help` answers at once.
"""

from __future__ import annotations

import functools
import sys
import time
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
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    global _debug
    _debug = debug


# --- shared options ---------------------------------------------------------------------

TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="addition, parity or dp (default: recognised from the text).")]
MethodOpt = Annotated[str, typer.Option("--method", "-m", help="baseline, scratchpad or retuning.")]
MaxDepth = Annotated[int | None, typer.Option(help="Deepest context allowed (default: from the problem size).")]
MaxCalls = Annotated[int | None, typer.Option(help="Calls allowed per problem (default: from the problem size).")]
MaxSegTokens = Annotated[int | None, typer.Option(help="Tokens per segment before it must stop (default: from the problem).")]
MaxTotalTokens = Annotated[int | None, typer.Option(help="Tokens per problem (default: from the problem size).")]
MaxSeconds = Annotated[float | None, typer.Option(help="Wall time per problem in seconds (default: none).")]


def _limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds):
    from retune_tui.engine.limits import Limits

    try:
        return Limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds)
    except ValueError as exc:
        raise InputError(str(exc)) from None


# --- data -------------------------------------------------------------------------------


@app.command()
@guarded
def data(
    task: Annotated[str, typer.Argument(help="addition, parity or dp.")],
    method: MethodOpt = "retuning",
    lengths: Annotated[str | None, typer.Option(help="Problem sizes LO-HI (default: the paper's training sizes).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of top-level problems.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the random problems.")] = 0,
    out: Annotated[Path | None, typer.Option(help="File to write (JSONL, or JSON with --format paper).")] = None,
    problem: Annotated[str | None, typer.Option(help="Print one problem's examples to stdout instead.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (records with metadata) or paper (the paper's JSON list).")] = "jsonl",
    reweight: Annotated[bool, typer.Option("--reweight/--no-reweight", help="Thin long problems and repeat short sub-problems, as the paper did.")] = True,
    dedup: Annotated[bool, typer.Option(help="Drop examples identical to an earlier one.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes making examples (default: one per CPU).")] = None,
) -> None:
    """Make training examples from oracle traces: one per segment of every context."""
    from retune_tui import data as datasets
    from retune_tui.tasks import get_method, get_task

    the_task, the_method = get_task(task), get_method(method)
    if problem is not None:
        examples = the_task.oracle_examples(the_task.parse(problem), the_method)
        if fmt == "paper":
            typer.echo("[" + ",\n".join(datasets.paper_record(ex) for ex in examples) + "]")
        else:
            sys.stdout.write("".join(datasets.example_line(ex) for ex in examples))
        return
    if out is None:
        raise InputError("give --out FILE to write a data set, or --problem TEXT to print one problem's examples")
    spec = datasets.DataSpec(
        task=the_task.name,
        method=the_method,
        lengths=datasets.parse_lengths(lengths) if lengths else the_task.train_lengths,
        n=n,
        seed=seed,
        weighting=datasets.Weighting.paper(the_task.name) if reweight else datasets.Weighting(),
    )
    from retune_tui.render import progress_bar

    start = time.perf_counter()
    with progress_bar("problems") as bar:
        job = bar.add_task("data", total=spec.n)
        stats = datasets.write_dataset(spec, out, fmt=fmt, dedup=dedup, workers=workers,
                                       progress=lambda k: bar.advance(job, k))
    seconds = time.perf_counter() - start
    dropped = f", {stats.duplicates:,} duplicates dropped" if dedup else ""
    typer.echo(f"wrote {stats.examples:,} examples from {stats.problems:,} problems to {out} "
               f"in {seconds:.1f}s ({stats.examples / max(seconds, 1e-9):,.0f} examples/s, "
               f"{stats.bytes / 1e6:,.0f} MB){dropped}")


# --- solve ------------------------------------------------------------------------------


BaseOpt = Annotated[str | None, typer.Option("--base", "--model", help="Base model: a local directory or a hub name; 'oracle' writes the correct segments with no model (default: the bundled model).")]
AdapterOpt = Annotated[Path | None, typer.Option(help="A LoRA adapter directory made by `retune train`.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 on capable GPUs, else float32), float32, bfloat16, float16.")]
PickleOpt = Annotated[bool, typer.Option(help="Allow pickled .bin checkpoints (they can run code when loaded).")]
RemoteOpt = Annotated[bool, typer.Option(help="Allow model code shipped with the checkpoint to run.")]


def _backend(base, adapter, device, dtype, allow_pickle, trust_remote_code, temperature=0.0, top_p=1.0, seed=0):
    """The oracle (--model oracle), a given model, or by default the bundled one."""
    from retune_tui.engine.loading import ModelSpec
    from retune_tui.solving import Backend

    if base == "oracle":
        if adapter is not None:
            raise InputError("--adapter needs a --base model (the oracle takes no adapter)")
        return Backend()
    if base is None:
        if adapter is not None:
            raise InputError("--adapter needs the --base model it was trained on")
        return Backend(bundled=True, device=device, dtype=dtype, temperature=temperature, top_p=top_p, seed=seed)
    spec = ModelSpec(base, str(adapter) if adapter else None, device, dtype, allow_pickle, trust_remote_code)
    return Backend(spec, device=device, dtype=dtype, temperature=temperature, top_p=top_p, seed=seed)


@app.command()
@guarded
def solve(
    problem: Annotated[str | None, typer.Argument(help="The problem, as you would type it: '123 + 456', '1 0 1', '[3, -2, 5]'.")] = None,
    task: TaskOpt = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="baseline, scratchpad or retuning (default: the adapter's, else retuning).")] = None,
    base: BaseOpt = None,
    adapter: AdapterOpt = None,
    file: Annotated[Path | None, typer.Option(help="Solve every problem in this file (one a line), batched.")] = None,
    out: Annotated[Path | None, typer.Option(help="With --file: write all traces here (JSONL).")] = None,
    save: Annotated[Path | None, typer.Option(help="Save the trace (JSONL events) to this file.")] = None,
    temperature: Annotated[float, typer.Option(help="0 decodes greedily; above 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold (with --temperature).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    allow_pickle: PickleOpt = False,
    trust_remote_code: RemoteOpt = False,
    max_depth: MaxDepth = None,
    max_calls: MaxCalls = None,
    max_segment_tokens: MaxSegTokens = None,
    max_total_tokens: MaxTotalTokens = None,
    max_seconds: MaxSeconds = None,
) -> None:
    """Solve a problem recursively and draw its call tree while it grows."""
    from retune_tui import solving

    limits = _limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds)
    backend = _backend(base, adapter, device, dtype, allow_pickle, trust_remote_code, temperature, top_p, seed)
    if (problem is None) == (file is None):
        raise InputError("give a problem, or --file FILE with one problem a line")
    if file is not None:
        solving.solve_file(file, out or save, task=task, method=method, backend=backend, limits=limits)
    else:
        solving.solve_one(problem, save, task=task, method=method, backend=backend, limits=limits)


# --- train ------------------------------------------------------------------------------


def _train_options() -> list:
    """One --flag per TrainConfig field (help from the field), all defaulting to "not given"."""
    import inspect
    from dataclasses import fields as dc_fields

    from retune_tui.train.config import TrainConfig

    params = [inspect.Parameter("task", inspect.Parameter.KEYWORD_ONLY,
                                annotation=Annotated[str | None, typer.Argument(help="addition, parity or dp (or set in the recipe).")],
                                default=None)]
    for f in dc_fields(TrainConfig):
        if f.name == "task":
            continue
        help_text = f.metadata.get("help", "")
        kind = str(f.type).split("[")[0].split(" ")[0]
        flag = "--" + f.name.replace("_", "-")
        if kind == "bool":
            option = typer.Option(f"{flag}/--no-{f.name.replace('_', '-')}", help=help_text, show_default=False)
            annotation = Annotated[bool | None, option]
        else:
            python_type = {"int": int, "float": float}.get(kind, str)
            if f.name == "lengths":
                help_text += " as LO-HI"
            if f.name == "lora_targets":
                help_text += " (comma-separated)"
            annotation = Annotated[python_type | None, typer.Option(flag, help=help_text, show_default=False)]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None))
    params += [
        inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[Path | None, typer.Option(help="A recipe (TOML); flags beat it.")]),
        inspect.Parameter("restart", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(help="Discard the checkpoints in --out and start over.")]),
    ]
    return params


def train(**options: Any) -> None:
    """Train a LoRA adapter (or with --full, a whole model) on oracle data or a `retune data` file.

    Re-running with the same --out resumes from its last checkpoint."""
    from retune_tui.data import parse_lengths
    from retune_tui.train.config import build_config
    from retune_tui.train.run import train as run_training

    recipe, restart = options.pop("recipe"), options.pop("restart")
    if options.get("lengths") is not None:
        options["lengths"] = parse_lengths(options["lengths"])
    if options.get("lora_targets") is not None:
        options["lora_targets"] = [t.strip() for t in options["lora_targets"].split(",") if t.strip()]
    config = build_config(recipe, **options)
    result = run_training(config, restart=restart)
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    typer.echo(f"trained {result.steps} steps in {result.seconds:.1f}s "
               f"({result.tokens / max(result.seconds, 1e-9):,.0f} tokens/s), final loss {loss}{resumed}; "
               f"wrote {result.out}")


def _register_train() -> None:
    import inspect

    train.__signature__ = inspect.Signature(_train_options())  # type: ignore[attr-defined]
    app.command("train")(guarded(train))


_register_train()


# --- eval / report ------------------------------------------------------------------------


def _show_results(runs, settings: dict[str, Any], plot: Path | None, details: bool = True) -> None:
    from rich.console import Console

    from retune_tui.evaluate.report import accuracy_tables, faults_table, plot_results, teacher_table

    console = Console()
    for table in accuracy_tables(runs):
        console.print(table)
    if details:
        for run in runs:
            for table in (faults_table(run), teacher_table(run)):
                if table is not None:
                    console.print(table)
    if plot is not None:
        plot_results(runs, plot, title=settings.get("title"))
        console.print(f"[dim]plot: {plot}[/dim]")


@app.command("eval")
@guarded
def eval_command(
    adapter: Annotated[list[Path] | None, typer.Option(help="An adapter directory; repeat for several.")] = None,
    base: Annotated[str | None, typer.Option("--base", "--model", help="The base model the adapters sit on.")] = None,
    oracle: Annotated[bool, typer.Option(help="Evaluate the oracle too (needs --task).")] = False,
    task: TaskOpt = None,
    methods: Annotated[str, typer.Option(help="With --oracle: methods, comma-separated.")] = "retuning",
    sizes: Annotated[str | None, typer.Option(help="Sizes, e.g. '2-60' or '5,10,20' (default: the task's range).")] = None,
    n: Annotated[int, typer.Option("--n", help="Problems per size.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the problems (the same for every adapter).")] = 0,
    batch: Annotated[int, typer.Option(help="Problems solved together.")] = 256,
    teacher: Annotated[bool, typer.Option(help="Also score every oracle context teacher-forced.")] = True,
    out: Annotated[Path, typer.Option(help="Results JSON.")] = Path("results.json"),
    plot: Annotated[Path | None, typer.Option(help="Accuracy plot (PNG); default next to --out.")] = None,
    failures: Annotated[Path | None, typer.Option(help="Save a few failed traces per size here (for retune-tui).")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    max_depth: MaxDepth = None,
    max_calls: MaxCalls = None,
    max_segment_tokens: MaxSegTokens = None,
    max_total_tokens: MaxTotalTokens = None,
    max_seconds: MaxSeconds = None,
) -> None:
    """Accuracy by problem size, in and beyond the trained sizes, and where wrong answers went wrong."""
    import time

    from retune_tui.evaluate import EvalConfig, run_eval
    from retune_tui.evaluate.report import write_results
    from retune_tui.render import progress_bar

    config = EvalConfig(
        adapters=[str(a) for a in adapter or []], base=base, oracle=oracle, task=task,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        sizes=_int_list(sizes, "sizes") if sizes else None, n=n, seed=seed, batch=batch,
        limits=_limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds),
        teacher=teacher, device=device, dtype=dtype,
    )
    start = time.perf_counter()
    with progress_bar("evaluating") as bar:
        job = bar.add_task("eval", total=None)
        runs = run_eval(config, on_done=lambda trace: bar.advance(job), failures_dir=failures)
    if int(__import__("os").environ.get("RANK", 0)) != 0:
        return
    settings = {"n": n, "seed": seed, "base": base, "sizes": config.sizes, "seconds": round(time.perf_counter() - start, 1),
                "limits": {k: v for k, v in vars(config.limits).items() if v is not None}}
    write_results(out, runs, settings)
    _show_results(runs, settings, plot or out.with_suffix(".png"))
    typer.echo(f"wrote {out}")


@app.command("report")
@guarded
def report_command(
    results: Annotated[list[Path], typer.Argument(help="Results files written by `retune eval`.")],
    plot: Annotated[Path | None, typer.Option(help="Write the plot of all of them here (PNG).")] = None,
    details: Annotated[bool, typer.Option(help="Also the fault and teacher-forced tables.")] = True,
) -> None:
    """Render saved results again; several files are compared side by side."""
    from retune_tui.evaluate.report import read_results

    runs, settings = [], {}
    for path in results:
        these, settings = read_results(path)
        runs += these
    _show_results(runs, settings, plot, details)


# --- bench ------------------------------------------------------------------------------

bench_app = typer.Typer(help="Benchmarks: print ratios, write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _int_list(text: str, what: str) -> list[int]:
    """``"1,64,256"`` or ``"2-5"`` (a range) → a list of ints."""
    from retune_tui.data import parse_lengths

    try:
        if "," in text:
            return [int(v) for v in text.split(",") if v.strip()]
        lo, hi = parse_lengths(text)
        return list(range(lo, hi + 1))
    except ValueError:
        raise InputError(f"bad {what} {text!r}; expected a list like '1,64,256' or a range like '2-5'") from None


def _write_json(path: Path, data: Any) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@bench_app.command("memory")
@guarded
def bench_memory(
    task: Annotated[str, typer.Argument(help="addition, parity or dp.")],
    base: Annotated[str | None, typer.Option(help="Base model weights (a directory or hub name).")] = None,
    base_config: Annotated[str | None, typer.Option(help="Or an architecture config.json: random weights, no download.")] = None,
    tokenizer: Annotated[str, typer.Option(help="Tokenizer: 'char' (a digit per token) or a path/hub name.")] = "char",
    sizes: Annotated[str, typer.Option(help="Problem sizes, e.g. '15,60'.")] = "15",
    methods: Annotated[str, typer.Option(help="Methods to measure, comma-separated.")] = "baseline,scratchpad,retuning",
    micro_batch: Annotated[int, typer.Option(help="Copies of the longest example in the batch.")] = 4,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (alpha = rank).")] = 64,
    device: DeviceOpt = "auto",
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("bench-memory.json"),
) -> None:
    """Peak GPU memory of one LoRA training step per method (on a CPU: the sequence lengths)."""
    from rich.console import Console
    from rich.table import Table

    from retune_tui.bench.memory import memory_benchmark
    from retune_tui.tasks import get_method

    if (base is None) == (base_config is None):
        raise InputError("give --base (weights) or --base-config (an architecture config.json)")
    method_list = [get_method(m).value for m in methods.split(",") if m.strip()]
    result = memory_benchmark(task, sizes=_int_list(sizes, "sizes"), methods=method_list, base=base,
                              base_config=base_config, tokenizer_source=tokenizer, micro_batch=micro_batch,
                              lora_r=lora_r, device=device)
    table = Table(title=f"{task}: one LoRA step, micro-batch {micro_batch} — {result['device']}")
    for col in ("method", "size", "tokens", "examples", "peak GiB", "seconds"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        peak = "—" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        secs = "—" if r["seconds"] is None else f"{r['seconds']:.2f}"
        table.add_row(r["method"], str(r["size"]), str(r["tokens"]), str(r["examples"]), peak, secs)
    Console().print(table)
    _write_json(out, result)
    typer.echo(f"wrote {out}")


@bench_app.command("inference")
@guarded
def bench_inference(
    base: BaseOpt = None,
    adapter: AdapterOpt = None,
    task: TaskOpt = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Default: the adapter's.")] = None,
    sizes: Annotated[str, typer.Option(help="Problem sizes, cycled over the problems, e.g. '8' or '5-10'.")] = "8",
    counts: Annotated[str, typer.Option(help="Numbers of problems solved together.")] = "1,64,256",
    seed: Annotated[int, typer.Option(help="Seed of the problems.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("bench-inference.json"),
) -> None:
    """Problems/s of the engine against the paper's loop (one context at a time, parents
    re-encoded after each return), same model, greedy; checks both give the same traces."""
    import platform

    import torch
    from rich.console import Console
    from rich.table import Table

    from retune_tui.bench.inference import inference_benchmark
    from retune_tui.engine.loading import load_model
    from retune_tui.tasks import get_task

    backend = _backend(base, adapter, device, dtype, False, False)
    if backend.model is None and not backend.bundled:
        raise InputError("the benchmark needs a model, not the oracle")
    task_name, the_method = backend.defaults(task or ("addition" if backend.bundled else None), method)
    if task_name is None:
        raise InputError("give --task (the adapter has no manifest to say it)")
    loaded = load_model(backend.spec(get_task(task_name), the_method), task=task_name, method=the_method.value)
    console = Console()
    table = Table(title=f"{task_name} · {the_method} — {loaded.name} on {loaded.device}")
    for col in ("problems", "paper loop /s", "engine /s", "ratio", "identical", "engine correct"):
        table.add_column(col, justify="right")

    def show(row):
        console.print(f"[dim]{row.problems} problems: paper {row.paper_seconds:.2f}s, engine {row.engine_seconds:.2f}s[/dim]")

    rows = inference_benchmark(get_task(task_name), the_method, loaded.model, loaded.tokenizer,
                               sizes=_int_list(sizes, "sizes"), counts=_int_list(counts, "counts"), seed=seed,
                               progress=show)
    for r in rows:
        table.add_row(str(r.problems), f"{r.paper_per_s:.2f}", f"{r.engine_per_s:.2f}", f"{r.ratio:.1f}x",
                      f"{r.identical}/{r.problems}", f"{r.correct_engine}/{r.problems}")
    console.print(table)
    from dataclasses import asdict

    device_name = torch.cuda.get_device_name() if loaded.device.type == "cuda" else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    _write_json(out, {"benchmark": "inference", "task": task_name, "method": the_method.value, "model": loaded.name,
                      "device": device_name, "sizes": _int_list(sizes, "sizes"), "seed": seed,
                      "rows": [asdict(r) for r in rows]})
    typer.echo(f"wrote {out}")


# --- trace ------------------------------------------------------------------------------


@trace_app.command("show")
@guarded
def trace_show(
    path: Annotated[Path, typer.Argument(help="A trace file written by --save or --out.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the trees as JSON instead.")] = False,
    tree: Annotated[int | None, typer.Option(help="Only the problem with this tree id.")] = None,
) -> None:
    """Draw a saved trace again (or print it as JSON)."""
    import json

    from retune_tui.trace import read_traces

    traces = read_traces(path)
    if tree is not None:
        traces = [t for t in traces if t.tree == tree]
        if not traces:
            raise InputError(f"{path} holds no tree {tree}")
    if as_json:
        typer.echo(json.dumps([t.to_json() for t in traces], indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    from retune_tui.render import trace_view

    console = Console()
    for t in traces:
        console.print(trace_view(t))


def main() -> None:
    app(prog_name="retune")


if __name__ == "__main__":
    main()
