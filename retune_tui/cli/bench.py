"""`retune bench memory`, `inference`, `solve` and `eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retune_tui.cli import (
    AdapterOpt,
    DeviceOpt,
    DtypeOpt,
    OverwriteOpt,
    TaskOpt,
    _backend,
    _int_list,
    _write_json,
    bench_app,
    guarded,
)
from retune_tui.errors import InputError

# --- bench ------------------------------------------------------------------------------


@bench_app.command("memory")
@guarded
def bench_memory(
    task: Annotated[str, typer.Argument(help="addition, parity or dp.")],
    base: Annotated[str | None, typer.Option(
        help="Base model weights (a directory or hub name; default: the bundled base).")] = None,
    base_config: Annotated[
        str | None, typer.Option(help="Or an architecture config.json: random weights, no download.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer: 'char' (a digit per token) or a path/hub name "
                                      "(default: the --base model's own, else 'char').")
    ] = None,
    sizes: Annotated[str, typer.Option(help="Problem sizes, e.g. '15,60'.")] = "15",
    methods: Annotated[
        str, typer.Option(help="Methods to measure, comma-separated.")
    ] = "baseline,scratchpad,retuning",
    micro_batch: Annotated[int, typer.Option(help="Copies of the longest example in the batch.")] = 4,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (alpha = rank).")] = 64,
    device: DeviceOpt = "auto",
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("bench-memory.json"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Peak GPU memory of one LoRA training step per method (on a CPU: the sequence lengths)."""
    from rich.console import Console
    from rich.table import Table

    from retune_tui.bench.memory import memory_benchmark
    from retune_tui.files import check_output
    from retune_tui.tasks import get_method

    check_output(out, overwrite=overwrite)
    if micro_batch < 1 or lora_r < 1:
        raise InputError("--micro-batch and --lora-r must be at least 1")

    if base is not None and base_config is not None:
        raise InputError("give --base (weights) or --base-config (an architecture config.json), not both")
    if base is None and base_config is None:
        from retune_tui.bundled import base_dir

        if base_dir() is None:
            raise InputError("give --base (weights) or --base-config (an architecture config.json); "
                             "the bundled base is not in assets/")
        base = str(base_dir())
    if base is not None:
        from retune_tui.engine.loading import check_exists

        check_exists(base)  # before any work, on a CPU too (where no weights are loaded)
    else:
        from retune_tui.train.model import architecture

        architecture(base_config)  # read on a CPU too, where no model is built from it
    tokenizer = tokenizer or base or "char"
    method_list = [get_method(m).value for m in methods.split(",") if m.strip()]
    if not method_list:
        raise InputError(f"--methods names none: give some of baseline, scratchpad, retuning, got {methods!r}")
    result = memory_benchmark(
        task,
        sizes=_int_list(sizes, "sizes"),
        methods=method_list,
        base=base,
        base_config=base_config,
        tokenizer_source=tokenizer,
        micro_batch=micro_batch,
        lora_r=lora_r,
        device=device,
    )
    table = Table(title=f"{task}: one LoRA step, micro-batch {micro_batch} — {result['device']}")
    for col in ("method", "size", "tokens", "examples", "peak GiB", "seconds"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        peak = "out of memory" if r.get("out_of_memory") else "—" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        secs = "—" if r["seconds"] is None else f"{r['seconds']:.2f}"
        table.add_row(r["method"], str(r["size"]), str(r["tokens"]), str(r["examples"]), peak, secs)
    Console().print(table)
    _write_json(out, result)
    typer.echo(f"wrote {out}")


@bench_app.command("inference")
@guarded
def bench_inference(
    base: Annotated[str | None, typer.Option(
        "--base", "--model", help="Base model: a local directory or a hub name (default: the bundled model).")] = None,
    adapter: AdapterOpt = None,
    task: Annotated[str | None, typer.Option(
        "--task", "-t",
        help="addition, parity or dp (default: the adapter's; addition for the bundled model).")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Default: the adapter's.")] = None,
    sizes: Annotated[str, typer.Option(help="Problem sizes, cycled over the problems, e.g. '8' or '5-10'.")] = "8",
    counts: Annotated[str, typer.Option(help="Numbers of problems solved together.")] = "1,64,256",
    seed: Annotated[int, typer.Option(help="Seed of the problems.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("bench-inference.json"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Problems/s of the engine against the paper's loop (one context at a time, parents
    re-encoded after each return), same model, greedy; checks both give the same traces."""
    import platform

    import torch
    from rich.console import Console
    from rich.table import Table

    from retune_tui.bench.inference import inference_benchmark
    from retune_tui.engine.loading import load_model
    from retune_tui.files import check_output
    from retune_tui.tasks import get_task

    check_output(out, overwrite=overwrite)
    size_list, count_list = _int_list(sizes, "sizes"), _int_list(counts, "counts")
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
        console.print(
            f"[dim]{row.problems} problems: paper {row.paper_seconds:.2f}s, engine {row.engine_seconds:.2f}s[/dim]"
        )

    rows = inference_benchmark(
        get_task(task_name),
        the_method,
        loaded.model,
        loaded.tokenizer,
        sizes=size_list,
        counts=count_list,
        seed=seed,
        progress=show,
    )
    for r in rows:
        table.add_row(
            str(r.problems),
            f"{r.paper_per_s:.2f}",
            f"{r.engine_per_s:.2f}",
            f"{r.ratio:.1f}x",
            f"{r.identical}/{r.problems}",
            f"{r.correct_engine}/{r.problems}",
        )
    console.print(table)
    from dataclasses import asdict

    device_name = (
        torch.cuda.get_device_name()
        if loaded.device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    _write_json(
        out,
        {
            "benchmark": "inference",
            "task": task_name,
            "method": the_method.value,
            "model": loaded.name,
            "device": device_name,
            "sizes": _int_list(sizes, "sizes"),
            "seed": seed,
            "rows": [asdict(r) for r in rows],
        },
    )
    typer.echo(f"wrote {out}")


@bench_app.command("solve")
@guarded
def bench_solve(
    problem: Annotated[str, typer.Argument(help="The problem, as `retune solve` takes it.")] = "48213 + 90771",
    base: Annotated[str | None, typer.Option(
        "--base", "--model", help="Base model: a local directory (default: the bundled model).")] = None,
    adapter: AdapterOpt = None,
    task: TaskOpt = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Default: the adapter's.")] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    repeats: Annotated[int, typer.Option(help="Runs per engine (the median is reported).")] = 3,
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("bench-solve.json"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Seconds from typing `retune solve PROBLEM` to its answer, in fresh processes: the numpy
    engine against transformers (RETUNE_ENGINE=torch); checks both write the same trace."""
    from rich.console import Console
    from rich.table import Table

    from retune_tui.bench.solve import solve_benchmark
    from retune_tui.files import check_output
    from retune_tui.manifest import package_versions
    from retune_tui.tasks import parse_problem

    check_output(out, overwrite=overwrite)
    if repeats < 1:
        raise InputError("--repeats must be at least 1")
    backend = _backend(base, adapter, device, dtype, False, False)
    if backend.is_oracle:
        raise InputError("the benchmark needs a model, not the oracle")
    task_name, the_method = backend.defaults(task, method)
    the_task, _ = parse_problem(problem, task_name)
    spec = backend.spec(the_task, the_method)
    _check_numpy_runs(spec, the_task.name, the_method.value, batched=False)
    args = [problem, "--task", the_task.name, "--method", the_method.value, "--device", device, "--dtype", dtype]
    args += ["--base", base] if base else []
    args += ["--adapter", str(adapter)] if adapter else []
    console = Console()
    rows, identical = solve_benchmark(
        args, repeats, lambda engine, wall: console.print(f"[dim]{engine}: {wall:.2f}s[/dim]"))
    table = Table(title=f"retune solve {problem!r} · {the_task.name} · {the_method} — {spec.base}")
    for col in ("engine", "wall median", "wall min", "solving", "answer"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r.engine, f"{r.wall_median:.2f}s", f"{r.wall_min:.2f}s", f"{r.solve_median:.3f}s",
                      f"{r.answer} {'correct' if r.correct else 'wrong'}")
    console.print(table)
    numpy_row, torch_row = rows
    ratio = round(torch_row.wall_median / numpy_row.wall_median, 2)
    sooner = f"{ratio}x sooner" if ratio >= 1 else f"{round(1 / ratio, 2)}x later"
    console.print(f"numpy answers {sooner}; the traces are {'identical' if identical else 'DIFFERENT'}")
    from dataclasses import asdict

    _write_json(out, {
        "benchmark": "solve", "problem": problem, "task": the_task.name, "method": the_method.value,
        "model": spec.name,
        "device": _cpu_name(),
        "versions": package_versions("numpy", "torch", "transformers", "peft"),
        "ratio": ratio, "identical": identical, "rows": [asdict(r) for r in rows],
    })
    typer.echo(f"wrote {out}")


def _cpu_name() -> str:
    """The machine a CPU benchmark ran on, as its JSON records it."""
    import os
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _check_numpy_runs(spec, task: str, method: str, *, batched: bool) -> None:
    """A benchmark of the two engines needs a model the numpy engine runs: else one line why."""
    import os

    from retune_tui.engine import numpy_llama
    from retune_tui.engine.decoding import Sampling

    switched_off = os.environ.pop(numpy_llama.ENGINE_ENV, None)  # the runs set it themselves
    try:
        numpy_llama.build(spec, task=task, method=method, sampling=Sampling(), batched=batched)
    except numpy_llama.Declined as reason:
        raise InputError(f"the numpy engine does not run {spec.base} ({reason}); nothing to compare") from None
    finally:
        if switched_off is not None:
            os.environ[numpy_llama.ENGINE_ENV] = switched_off


@bench_app.command("eval")
@guarded
def bench_eval(
    base: Annotated[str | None, typer.Option(
        "--base", "--model", help="Base model: a local directory (default: the bundled model).")] = None,
    adapter: AdapterOpt = None,
    task: Annotated[str | None, typer.Option(
        "--task", "-t", help="addition, parity or dp (default: the adapter's; with the bundled model, dp).")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Default: the adapter's, else retuning.")] = None,
    sizes: Annotated[str | None, typer.Option(help="Sizes, e.g. '2-5' (default: the trained sizes).")] = None,
    n: Annotated[int, typer.Option("--n", "--per-size", help="Problems per size.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the problems.")] = 0,
    batch: Annotated[int, typer.Option(help="Problems solved together.")] = 256,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("bench-eval.json"),
    overwrite: OverwriteOpt = False,
) -> None:
    """Problems/s of `retune eval` in fresh processes: the numpy engine's batch against
    transformers' (RETUNE_ENGINE=torch); checks both give the same results."""
    from rich.console import Console
    from rich.table import Table

    from retune_tui.bench.evaluation import eval_benchmark
    from retune_tui.files import check_output
    from retune_tui.manifest import package_versions
    from retune_tui.tasks import get_task

    check_output(out, overwrite=overwrite)
    if n < 1 or batch < 1:
        raise InputError("--n and --batch must be at least 1")
    backend = _backend(base, adapter, device, dtype, False, False)
    if backend.is_oracle:
        raise InputError("the benchmark needs a model, not the oracle")
    task_name, the_method = backend.defaults(task or ("dp" if backend.bundled else None), method)
    if task_name is None:
        raise InputError("give --task (the model has no manifest to say it)")
    the_task = get_task(task_name)
    spec = backend.spec(the_task, the_method)
    _check_numpy_runs(spec, the_task.name, the_method.value, batched=True)
    lo, hi = the_task.train_lengths
    sizes = sizes or f"{lo}-{hi}"
    size_list = _int_list(sizes, "sizes")
    args = ["--base", spec.base, "--sizes", sizes, "--n", str(n), "--seed", str(seed), "--batch", str(batch),
            "--device", device, "--dtype", dtype]
    if spec.adapter:
        args += ["--adapter", spec.adapter]
    else:
        args += ["--task", the_task.name, "--methods", the_method.value]
    console = Console()
    rows, identical = eval_benchmark(args, lambda row: console.print(
        f"[dim]{row.engine}: {row.problems} problems in {row.solving:.1f}s ({row.wall:.1f}s in all)[/dim]"))
    table = Table(title=f"retune eval · {the_task.name} · {the_method} · sizes {sizes}, {n} each — {spec.name}")
    for col in ("engine", "problems/s", "solving", "wall", "right", "tokens"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r.engine, f"{r.per_second:.2f}", f"{r.solving:.1f}s", f"{r.wall:.1f}s",
                      f"{r.correct}/{r.problems}", str(r.tokens))
    console.print(table)
    numpy_row, torch_row = rows
    ratio = round(numpy_row.per_second / torch_row.per_second, 2) if torch_row.per_second else None
    console.print(f"numpy solves {ratio}x as many problems a second; "
                  f"the results are {'identical' if identical else 'DIFFERENT'}")
    from dataclasses import asdict

    _write_json(out, {
        "benchmark": "eval", "task": the_task.name, "method": the_method.value, "model": spec.name,
        "sizes": size_list, "n": n, "seed": seed, "batch": batch,
        "device": _cpu_name(),
        "versions": package_versions("numpy", "torch", "transformers", "peft"),
        "ratio": ratio, "identical": identical,
        "rows": [{**asdict(r), "per_second": round(r.per_second, 3)} for r in rows],
    })
    typer.echo(f"wrote {out}")
