"""Probe: which statistics should unsupervised adaptation (AdaBN) re-estimate, on models bench_cwru.py trained.

For each load pair, the source model's held-out target tail is scored after re-estimating, on the unlabelled rest
of the target recordings: nothing; every BatchNorm + the input standardisation on clean segments (plain AdaBN);
the same on segments passed through the training augmentation (noise and scaling, as the training batches that
set the BatchNorm statistics were); BatchNorm only (input standardisation kept); input standardisation only.
These figures choose the adapt defaults (they are the same cross-load tails the benchmark reports).

Usage: python benchmarks/probe_cwru_adapt.py --name cwru_choice_dataset
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_cwru import target_data  # noqa: E402
from common import ROOT, require_dataset, write_result  # noqa: E402

from shopfloor.maintenance.fault_diagnosis.adapt import adapt_batchnorm  # noqa: E402
from shopfloor.maintenance.fault_diagnosis.task import FaultDiagnosis  # noqa: E402
from shopfloor.maintenance.vibration import segment  # noqa: E402


def variants(task: FaultDiagnosis) -> dict:
    augment = task.augmentation()
    return {"none": None, "adabn_clean": {}, "adabn_augmented": {"transform": augment},
            "batchnorm_only_clean": {"input_statistics": False},
            "batchnorm_only_augmented": {"input_statistics": False, "transform": augment},
            "input_only": "input"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="cwru_choice_dataset", help="benchmarks/work/<name> of a bench_cwru run")
    parser.add_argument("--loads", default="0hp,1hp")
    args = parser.parse_args()
    root = require_dataset("cwru_bearing") / "12k_drive_end"
    loads = args.loads.split(",")
    rows = []
    for source in loads:
        for target in (t for t in loads if t != source):
            model_dir = ROOT / "benchmarks" / "work" / args.name / source / "model"
            task = FaultDiagnosis.load(model_dir)
            scored, unlabelled, _ = target_data(task, root / target)
            segments = torch.cat([torch.from_numpy(segment(r.signal, task.config.segment_length,
                                                           task.config.eval_stride)) for r in unlabelled]).numpy()
            row = {"train": source, "test": target}
            for name, options in variants(task).items():
                task = FaultDiagnosis.load(model_dir)
                model = task.require_model()
                torch.manual_seed(0)
                if options == "input":
                    x = torch.from_numpy(segments).double()
                    model.mean.copy_(x.mean(dim=(0, 2), keepdim=True).float())
                    model.std.copy_(x.std(dim=(0, 2), keepdim=True).float())
                elif options is not None:
                    adapt_batchnorm(model, segments, **options)
                task.export()
                row[name] = task.evaluate(scored, segments="test")["accuracy"]
                print(source, "->", target, name, round(row[name], 4), flush=True)
            rows.append(row)
    means = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k not in ("train", "test")}
    print(means)
    write_result(f"{args.name}_adapt_probe", {"models": f"benchmarks/work/{args.name}", "rows": rows, "means": means})


if __name__ == "__main__":
    main()
