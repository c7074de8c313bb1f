"""The `shopfloor` command line: a thin Typer layer over the task API, printing with rich."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from shopfloor.core.errors import ShopfloorError  # noqa: E402
from shopfloor.core.quiet import is_verbose, set_verbose  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deep learning for the factory floor: train, evaluate, explain and deploy.")
console = Console(stderr=True)
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
VERBOSE_HELP = "also show library logs and warnings (Lightning banners and tips, deprecations)"
VERBOSE = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP)


def _console_logging(verbose: bool) -> None:
    """Show the task's notes (the ``shopfloor`` logger) on the console; with ``verbose``, library chatter too."""
    from rich.logging import RichHandler

    if verbose:
        set_verbose(True)
    logger = logging.getLogger("shopfloor")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=console, show_time=False, show_path=False, markup=False))
    logger.setLevel(logging.DEBUG if is_verbose() else logging.INFO)


@app.callback()
def _options(verbose: bool = VERBOSE) -> None:
    """Deep learning for the factory floor: train, evaluate, explain and deploy."""
    _console_logging(verbose)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


def _write_json(path: Optional[Path], payload: Any) -> None:
    from shopfloor.core.task import to_jsonable

    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_jsonable(payload), indent=2))
        console.print(f"wrote {path}")


def _metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, (int, str)) and key != "report":
            table.add_row(key, str(value))
    return table


def _per_class_table(per_class: dict[str, dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    columns = sorted({k for v in per_class.values() for k in v}, key=lambda c: (c == "support", c))
    table.add_column("class")
    for c in columns:
        table.add_column(c, justify="right")
    for name, values in per_class.items():
        table.add_row(name, *[f"{values[c]:.4f}" if isinstance(values.get(c), float) else str(values.get(c, ""))
                              for c in columns])
    return table


def print_metrics(metrics: dict[str, Any], title: str = "evaluation") -> None:
    """Scalar metrics as one table, then every per-group dict (per_class, per_type...) as another."""
    console.print(_metrics_table(metrics, title))
    for key, value in metrics.items():
        if key.startswith("per_") and isinstance(value, dict) and value and all(
                isinstance(v, dict) for v in value.values()):
            console.print(_per_class_table(value, key.replace("_", " ")))


@app.command(context_settings=EXTRA)
def train(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="task name, e.g. defect-classification (see `shopfloor tasks`)"),
    data: Path = typer.Option(..., "--data", help="training data (layout depends on the task)"),
    out: Path = typer.Option(..., "--out", help="model directory to write"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with task options"),
    epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="input size for image tasks"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    model: Optional[str] = typer.Option(None, help="model architecture (task specific)"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    devices: Optional[str] = typer.Option(None, help="devices per node (Lightning), e.g. 2 or auto"),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="nodes for multi-node DDP"),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy, e.g. ddp"),
    verbose: bool = VERBOSE,
) -> None:
    """Train TASK on --data and write a model directory to --out. Any task option works as --name value."""
    _console_logging(verbose)
    from shopfloor.core.config import load_yaml, parse_cli_overrides
    from shopfloor.core.registry import get_task

    try:
        task_cls = get_task(task)
        named = {"epochs": epochs, "image_size": image_size, "seed": seed, "model": model, "device": device,
                 "devices": int(devices) if devices and devices.isdigit() else devices,
                 "num_nodes": num_nodes, "strategy": strategy}
        flags = []
        for key, value in named.items():
            if value is not None:
                flags += [f"--{key}", str(value)]
        overrides = parse_cli_overrides(flags + list(ctx.args), task_cls.Config)
        instance = task_cls(load_yaml(config), **overrides)
        instance.fit(str(data), out_dir=out)
    except ShopfloorError as exc:
        _fail(exc)
    if getattr(instance, "is_global_zero", True):
        console.print(_metrics_table(instance.metrics, f"{task}: validation"))
        console.print(f"[green]model written to[/] {out}")


@app.command(context_settings=EXTRA)
def evaluate(
    ctx: typer.Context,
    model_dir: Path = typer.Argument(..., help="model directory written by `shopfloor train`"),
    data: Path = typer.Option(..., "--data", help="labelled test data"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write metrics as JSON here"),
    report: Optional[Path] = typer.Option(None, "--report", help="write report.html and PNGs here"),
    device: str = typer.Option("auto", help="auto | cpu | cuda (ONNX Runtime execution provider)"),
    verbose: bool = VERBOSE,
) -> None:
    """Score a model on labelled data through ONNX Runtime; print, and optionally write JSON and a report."""
    _console_logging(verbose)
    from shopfloor.core.config import build_config, parse_cli_overrides
    from shopfloor.core.registry import load

    try:
        task = load(model_dir, device=device)
        options = build_config(task.EvaluateOptions, parse_cli_overrides(list(ctx.args), task.EvaluateOptions))
        metrics = task.evaluate(str(data), report_dir=report, **options.model_dump())
    except ShopfloorError as exc:
        _fail(exc)
    print_metrics({k: v for k, v in metrics.items() if k != "confusion_matrix"}, f"{task.name}: test")
    _write_json(json_path, metrics)
    if report is not None:
        console.print(f"[green]report:[/] {metrics.get('report', report / 'report.html')}")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="model directory"),
    inputs: List[Path] = typer.Argument(..., help="input files or folders"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write predictions as JSON here"),
    explain: bool = typer.Option(False, "--explain", help="also write explanations (e.g. Grad-CAM overlays)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for explanation / mask files"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    verbose: bool = VERBOSE,
) -> None:
    """Predict on new inputs through the exported ONNX model."""
    _console_logging(verbose)
    from shopfloor.core.registry import load

    try:
        task = load(model_dir, device=device)
        results = task.predict([str(p) for p in inputs], out_dir=out or Path(model_dir) / "predictions",
                               explain=explain)
    except ShopfloorError as exc:
        _fail(exc)
    table = Table(title=f"{task.name}: predictions")
    keys = [k for k in results[0] if isinstance(results[0][k], (str, int, float))] if results else []
    for k in keys:
        table.add_column(k)
    for r in results:
        table.add_row(*[f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys])
    console.print(table)
    if json_path is None:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    _write_json(json_path, results)


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="model directory"),
    fmt: str = typer.Option("onnx", "--format", help="export format (onnx)"),
    output: Optional[Path] = typer.Option(None, "--output", help="file to write (default MODEL_DIR/export/model.onnx)"),
    verbose: bool = VERBOSE,
) -> None:
    """Re-export the model from its safetensors weights and check it against the stored ONNX graph."""
    _console_logging(verbose)
    from shopfloor.core.export import export_artifact

    try:
        result = export_artifact(model_dir, fmt, output)
    except ShopfloorError as exc:
        _fail(exc)
    console.print(f"[green]exported[/] {result['path']} (max |difference| vs stored graph: "
                  f"{result['max_abs_diff']:.2e})")


@app.command()
def info(model_dir: Path = typer.Argument(..., help="model directory")) -> None:
    """Show what a model directory holds: task, classes, preprocessing, metrics, versions; verifies hashes."""
    from shopfloor.core.artifact import read_artifact

    try:
        artifact = read_artifact(model_dir)
    except ShopfloorError as exc:
        _fail(exc)
    m = artifact.manifest
    table = Table(title=f"{model_dir}", show_header=False)
    table.add_row("task", m["task"])
    table.add_row("created", m.get("created", ""))
    table.add_row("data fingerprint", str(m.get("data_fingerprint")))
    for key, value in m.get("state", {}).items():
        text = json.dumps(value)
        table.add_row(key, text if len(text) < 200 else text[:197] + "...")
    for key, value in m.get("metrics", {}).items():
        table.add_row(f"metric {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    table.add_row("files", ", ".join(m.get("files", {})))
    console.print(table)
    console.print("[green]all file hashes verified[/]")


@app.command()
def tasks() -> None:
    """List the available tasks and their options."""
    from shopfloor.core.registry import get_task, task_names

    for name in task_names():
        cls = get_task(name)
        console.print(f"[bold]{name}[/]: {(cls.__doc__ or '').strip().splitlines()[0]}")
        fields = ", ".join(f"--{f.replace('_', '-')}" for f in cls.Config.model_fields if f != "training")
        console.print(f"  options: {fields}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="folder for data, models and reports"),
    only: Optional[List[str]] = typer.Option(None, "--only", help="run only these tasks"),
    verbose: bool = VERBOSE,
) -> None:
    """Run every task end to end on built-in synthetic data and print where the reports are."""
    _console_logging(verbose)
    from shopfloor.demo import run_demo

    try:
        summaries = run_demo(out, only)
    except ShopfloorError as exc:
        _fail(exc)
    table = Table(title="shopfloor demo (synthetic data; test figures on held-out synthetic data)")
    table.add_column("task")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for s in summaries:
        figures = ", ".join(f"{k}={v:.3f}" for k, v in s.items() if isinstance(v, float) and k != "seconds")
        table.add_row(s["task"], figures, f"{s['seconds']:.0f}")
    console.print(table)
    for s in summaries:
        model = f"  model: {s['model']}" if s.get("model") else ""
        console.print(f"[bold]{s['task']}[/] report: {s.get('report')}{model}", soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
