"""`shopfloor suggest MODEL --pool DIR --n 50`: what to label next; and `train --add-labels` folding it back in."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any, Optional

import typer

from .output import check_output_dir, say, setup_console
from .runs import load_model, user_errors

CSV_NAME = "to_label.csv"


def suggest(
    model_dir: Path = typer.Argument(..., help="model directory written by `shopfloor train`"),
    pool: Path = typer.Option(..., "--pool", help="folder of unlabelled items (searched recursively)"),
    n: int = typer.Option(50, "--n", min=1, help="how many items to suggest"),
    out: Path = typer.Option(Path("to_label"), "--out", help=f"write {CSV_NAME} and a copy of each item here"),
    diverse: bool = typer.Option(True, "--diverse/--no-diverse", help="spread the picks over the pool (k-means on "
                                 "embeddings among the most uncertain) instead of the n most uncertain"),
    seed: int = typer.Option(0, "--seed", help="seed of the clustering"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="embedding cache folder (see `shopfloor check`)"),
    device: str = typer.Option("auto", help="ONNX Runtime execution provider"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="library logs and tracebacks of internal errors"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only results, warnings and errors"),
) -> None:
    """Rank unlabelled items by the value of labelling them (model uncertainty, with diversity so the n are not
    near-copies) and write a CSV a labeller fills in (label column), with copies of the items named by rank.
    Then `shopfloor train TASK --data ROOT --add-labels OUT/to_label.csv --out NEW_MODEL` folds them in."""
    setup_console(verbose, quiet)
    from shopfloor.core.quality.active import margin_uncertainty, select_for_labelling

    with user_errors():
        check_output_dir(out, "--out")
        task = load_model(model_dir, device, quiet=quiet)
        options: dict[str, Any] = {"cache_dir": cache, "progress": not quiet} if task.input_kind == "image" else {}
        names, probs, embeddings = task.labelling_candidates(str(pool), **options)
        chosen = select_for_labelling(probs, embeddings, n, seed=seed, diverse=diverse)
        path = write_suggestions(out, names, probs, margin_uncertainty(probs), chosen, list(task.classes))
    say(f"{len(chosen)} of {len(names)} pool items to label: {path} (fill in the label column, then `shopfloor "
        f"train {task.name} --data ROOT --add-labels {path} --out NEW_MODEL`)", style="green")


def write_suggestions(out: Path, names: list[str], probs: Any, uncertainty: Any, chosen: Any,
                      classes: list[str]) -> Path:
    """``out/to_label.csv`` (rank, path, the model's guess, its confidence, uncertainty, an empty label column)
    and ``out/items/<rank>_<name>`` copies, so the labeller can go through them in order."""
    out.mkdir(parents=True, exist_ok=True)
    items = out / "items"
    items.mkdir(exist_ok=True)
    path = out / CSV_NAME
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "path", "model_guess", "confidence", "uncertainty", "copy", "label"])
        for rank, i in enumerate(chosen, start=1):
            source = Path(names[i])
            copy = items / f"{rank:04d}_{source.name}"
            if source.is_file():
                shutil.copyfile(source, copy)
            k = int(probs[i].argmax())
            writer.writerow([rank, str(source.resolve()), classes[k], f"{probs[i][k]:.4f}", f"{uncertainty[i]:.4f}",
                             str(copy.relative_to(out)), ""])
    return path


def fold_in_labels(task_cls: Any, data: Path, labels_csv: Path) -> Any:
    """`train --add-labels`: the training data with the labelled rows of ``labels_csv`` folded in."""
    from shopfloor.core.quality.active import read_label_csv

    rows = read_label_csv(labels_csv)
    merged = task_cls.with_added_labels(str(data), rows)
    say(f"added {len(rows)} labelled item(s) from {labels_csv}")
    return merged
