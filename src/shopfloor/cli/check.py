"""`shopfloor check TASK --data ROOT [--model DIR] --report DIR [--json FILE]`: the data-quality report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .output import check_output_dir, check_output_file, fail, say, setup_console, show, write_result
from .runs import load_model, user_errors

SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def check(
    task: str = typer.Argument(..., help="task whose data to check, e.g. defect-classification"),
    data: Path = typer.Option(..., "--data", help="the data as `train` takes it; for images also a root with "
                              "train/ and test/ class folders (leakage between them is looked for)"),
    report: Path = typer.Option(..., "--report", help="write report.html (with pictures) and its PNGs here"),
    model: Optional[Path] = typer.Option(None, "--model", help="a trained model directory of TASK: its own "
                                         "features are used (after training)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write every finding as JSON here (- for "
                                             "stdout), label issues as suspected_label_errors"),
    folds: int = typer.Option(5, "--folds", min=2, help="folds of the out-of-fold probabilities"),
    seed: int = typer.Option(0, "--seed", help="seed of the folds"),
    image_size: int = typer.Option(224, "--image-size", help="images: backbone input size for the embeddings"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="keep embeddings here by file content, so a second "
                                         "check or a suggest over the same images does not recompute them"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="library logs and tracebacks of internal errors"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only results, warnings and errors"),
) -> None:
    """Data-quality report before training (and after, with --model): duplicates (also across train/test),
    suspected label errors, class balance, image sizes / bit depths / colour, blur and exposure outliers, and for
    tables constant, drifting and mostly-missing columns and duplicate rows; each finding says what to do."""
    setup_console(verbose, quiet)
    from shopfloor.core.quality.check import run_checks
    from shopfloor.core.quality.report import write_quality_report
    from shopfloor.core.registry import get_task

    with user_errors():
        task_cls = get_task(task)
        check_output_dir(report, "--report")
        check_output_file(json_path, "--json")
        fitted = None
        if model is not None:
            fitted = load_model(model, "cpu", quiet=quiet)
            if fitted.name != task_cls.name:
                fail(f"--model {model} holds a {fitted.name!r} model, not {task!r}; pass a model of the checked task")
        options = {"image_size": image_size, "cache_dir": cache, "progress": not quiet} \
            if task_cls.input_kind == "image" else {}
        quality = task_cls.quality_data(str(data), model=fitted, **options)
        result = run_checks(quality, folds=folds, seed=seed)
        html = write_quality_report(result, report, f"{task}: data quality of {data}")
    table = Table(title=f"{task}: data quality ({len(quality.names)} items)")
    for column in ("severity", "check", "count", "summary"):
        table.add_column(column)
    for finding in result.findings:
        table.add_row(f"[{SEVERITY_STYLE.get(finding.severity, '')}]{finding.severity}", finding.check,
                      str(len(finding.items)), finding.summary)
    show(table)
    if not result.findings:
        say("no problems found", style="green")
    if json_path is not None:
        write_result(result.to_json(), json_path)
    say(f"report: {html}", style="green")
