"""``shopfloor recommend MODEL``: settings that improve quality, from a trained ``process-optimisation`` model.

    shopfloor recommend model/ --fix 'material=PP,part=brick_12' --minimise warpage \\
        --constraint 'part_weight<=12.5' --bounds 'melt_temp=220:250' --n 5

Results (JSON) on stdout, a table on stderr. The search runs through the model's one inference path (its ONNX
graph); see :mod:`shopfloor.process.optimisation.recommend` for how it stays inside the data's support.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .output import check_output_dir, check_output_file, fail, say, setup_console, show, write_result
from .runs import load_model, user_errors


def recommend(
    model_dir: Path = typer.Argument(..., help="a process-optimisation model directory"),
    fix: Optional[str] = typer.Option(None, "--fix", help="context (and settings) held fixed: 'name=value,...'; "
                                      "a job/group name fills its context"),
    minimise: List[str] = typer.Option([], "--minimise", "--minimize", help="result to minimise (repeat or "
                                       "comma-separate for several objectives: NSGA-II Pareto front)"),
    maximise: List[str] = typer.Option([], "--maximise", "--maximize", help="result to maximise; for a class "
                                       "result name the class: 'quality=3' (its probability)"),
    constraint: List[str] = typer.Option([], "--constraint", help="'result<=value' or 'result>=value' (repeatable)"),
    bounds: Optional[str] = typer.Option(None, "--bounds", help="'setting=low:high,...' inside the training range"),
    n: int = typer.Option(5, "--n", help="how many recommendations"),
    trials: int = typer.Option(400, "--trials", help="candidates the optimiser scores"),
    penalty: float = typer.Option(1.0, "--penalty", help="uncertainty penalty: judge at mean ± penalty × model_std "
                                  "(0: trust the mean)"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the Pareto-front plot (several objectives)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the result as JSON to this file instead"),
    device: str = typer.Option("auto", help="auto | cpu | cuda: the ONNX Runtime execution provider"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also show library logs"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only results, warnings and errors"),
) -> None:
    """Recommend settings for a fixed context: predicted quality with intervals, expected improvement over the best
    recorded run of that context, and whether each point stays inside the data's support."""
    setup_console(verbose, quiet)
    with user_errors():
        check_output_file(json_path, "--json")
        check_output_dir(out, "--out")
        task = load_model(model_dir, device, quiet=quiet)
        if not hasattr(task, "recommend"):
            fail(f"{model_dir} holds a {task.name} model; recommend needs a process-optimisation model "
                 "(shopfloor train process-optimisation ...)")
        from shopfloor.process.optimisation.recommend import parse_assignments

        result = task.recommend(out_dir=out, fix=parse_assignments(fix, "--fix"), minimise=minimise,
                                maximise=maximise, constraints=constraint,
                                bounds=parse_assignments(bounds, "--bounds"), n=n, trials=trials, penalty=penalty,
                                seed=seed)
    table = Table(title=f"recommended settings ({', '.join(result['objectives'])})")
    rows = result["recommendations"]
    settings = list(rows[0]["settings"]) if rows else []
    for column in ["rank", *settings, "predicted", "interval", "improvement", "in support", "feasible"]:
        table.add_column(column)
    first = result["objectives"][0].split(" (")[0]
    for row in rows:
        predicted = row["predicted"]
        value = predicted.get(first)
        interval = predicted.get(f"{first}_interval")
        gain = row.get("expected_improvement")
        table.add_row(str(row["rank"]), *(f"{row['settings'][s]:.4g}" for s in settings),
                      f"{value:.4g}" if isinstance(value, float) else str(value),
                      f"{interval[0]:.4g}..{interval[1]:.4g}" if interval else "",
                      f"{gain:+.4g}" if gain is not None else "n/a", str(row["in_support"]), str(row["feasible"]))
    show(table)
    say(result["method"])
    if result.get("pareto_plot"):
        say(f"Pareto front: {len(result['pareto_front'])} points, plot at {result['pareto_plot']}")
    write_result(result, json_path)
