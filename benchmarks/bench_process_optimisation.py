"""process-optimisation on real and simulated data: the deep-ensemble surrogate beside gradient boosting, and
recommendations scored against known answers.

Parts (run them one at a time: each fits in one CPU-lock hold; each adds its section to the same JSON):
- ``lego_cv``: LEGO moulding DoE (60 geometries x 77 runs), 5-fold cross-validation **grouped by geometry** (every
  test part is unseen), surrogate (through its ONNX graph) vs gradient boosting, R2/MAE per result; then the
  surrogate refit on all records is kept in benchmarks/work as the judge of ``lego_recommend``.
- ``lego_recommend``: for the held-out geometries of the first ``--recommend-folds`` grouped folds, a model fitted
  without them recommends settings minimising warpage (context = the part's geometry, Volumenstrom bounded to the
  part's own DoE range, the other settings to the training range). Each recommendation's warpage is read (a) from
  the **nearest simulated run of that part** (standardised settings distance, reported) and (b) from the
  **surrogate refit on all data** (lego_cv), and compared with the best run recorded for that part.
- ``iguzzini``: real moulding line, 13 settings -> 4 quality classes, 5-fold cross-validation over records
  (accuracy, macro F1) vs gradient boosting.
- ``concrete``: UCI concrete, mix + age -> strength, 5-fold cross-validation over records (R2, MAE) vs gradient
  boosting.
- ``simulator``: the built-in process, 200 training records per seed; recommendation for wall thickness 2.5 under
  ``part_weight <= 13``; regret = true warpage of the recommendation minus the true optimum, as a share of the
  warpage range.

Usage: python benchmarks/bench_process_optimisation.py [--part all|lego_cv|lego_recommend|iguzzini|concrete|simulator]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import RESULTS, ROOT, require_dataset, write_result  # noqa: E402

from shopfloor.core.tables import read_table  # noqa: E402
from shopfloor.process.optimisation.task import ProcessOptimisation  # noqa: E402

NAME = "process_optimisation"
WORK = ROOT / "benchmarks" / "work" / "process_optimisation"
LEGO_SETTINGS = ["Kuehlzeit", "Nachdruck", "Nachdruckzeit", "Schmelzetemperatur", "Wandtemperatur", "Volumenstrom"]
LEGO_RESULTS = ["Max_Verzug", "Max_Volumenschwindung", "Max_Deformation", "Bauteilgewicht"]
LEGO_CONTEXT = ["Laenge", "Breite", "Hoehe", "Volumen", "Mittlere_Wanddicke", "Max_Wanddicke", "Min_Wanddicke",
                "Fliessweglaenge", "Oberflaeche", "Ration_Oberflaeche_Volumen", "Fliesswegwanddickenverhaeltnis",
                "Ration_Min_Wanddicke_Max_Wanddicke", "theoretische_Kuehlzeit", "Plastifizierleistung", "PACYNA1",
                "PACYNA2", "PACYNA3", "Haupttraegheitsmomente1", "Haupttraegheitsmomente2",
                "Haupttraegheitsmomente3", "N_Noppen_Reihe", "N_Reihen", "Sockelhoehe", "Noppenhoehe"]
LEGO_GROUP = "Legobaustein"
TRAINING = {"progress": False, "seed": 0}


def lego_config(cv_folds: int) -> dict:
    return {"data": {"results": LEGO_RESULTS, "settings": LEGO_SETTINGS, "context": LEGO_CONTEXT, "group": LEGO_GROUP},
            "cv_folds": cv_folds, "training": {**TRAINING, "batch_size": 128}}


def lego_table() -> pd.DataFrame:
    return read_table(require_dataset("injection_molding_lego_doe") / "injection_molding_lego_data_full.csv")


def part_lego_cv() -> dict:
    frame = lego_table()
    task = ProcessOptimisation(lego_config(5))
    start = time.perf_counter()
    task.fit(frame, out_dir=WORK / "lego_all")
    return {"lego_cv": {"seconds_cv_and_refit": time.perf_counter() - start, "records": len(frame),
                        "geometries": int(frame[LEGO_GROUP].nunique()),
                        "cross_validation": task.state["cross_validation"], "notes": task.state["schema"]["notes"],
                        "warnings": task.state.get("warnings", [])}}


def _nearest_run(part_runs: pd.DataFrame, settings: dict, scale: pd.Series) -> tuple[float, float]:
    x = np.array([settings[s] for s in LEGO_SETTINGS])
    runs = part_runs[LEGO_SETTINGS].to_numpy(dtype=np.float64)
    d = np.sqrt((((runs - x) / scale.to_numpy()) ** 2).sum(axis=1))
    i = int(np.argmin(d))
    return float(part_runs["Max_Verzug"].iloc[i]), float(d[i])


def part_lego_recommend(folds: int, trials: int) -> dict:
    from sklearn.model_selection import GroupKFold

    import shopfloor

    frame = lego_table()
    judge_dir = WORK / "lego_all"
    if not (judge_dir / "manifest.json").is_file():
        raise SystemExit("run --part lego_cv first: its all-data model judges the recommendations")
    judge = shopfloor.load(judge_dir, device="cpu")
    scale = frame[LEGO_SETTINGS].std()
    rows = []
    splits = list(GroupKFold(n_splits=5).split(frame, groups=frame[LEGO_GROUP]))[:folds]
    seconds = 0.0
    for k, (train, test) in enumerate(splits):
        task = ProcessOptimisation(lego_config(0))
        start = time.perf_counter()
        task.fit(frame.iloc[train])
        for part, runs in frame.iloc[test].groupby(LEGO_GROUP):
            context = {c: float(runs[c].iloc[0]) for c in LEGO_CONTEXT}
            flow = (float(runs["Volumenstrom"].min()), float(runs["Volumenstrom"].max()))
            low, high = task.state["input_ranges"]["low"], task.state["input_ranges"]["high"]
            k_flow = task.state["input_ranges"]["columns"].index("Volumenstrom")
            flow = (max(flow[0], low[k_flow]), min(flow[1], high[k_flow]))
            advice = task.recommend(fix=context, minimise=["Max_Verzug"], bounds={"Volumenstrom": f"{flow[0]}:{flow[1]}"},
                                    n=1, trials=trials)
            best = advice["recommendations"][0]
            nearest, distance = _nearest_run(runs, best["settings"], scale)
            judged = judge.predict([pd.DataFrame([{**best["settings"], **context}])])[0]["Max_Verzug"]
            recorded_best = float(runs["Max_Verzug"].min())
            rows.append({"fold": k, "part": part, "best_recorded": recorded_best,
                         "median_recorded": float(runs["Max_Verzug"].median()),
                         "predicted": best["predicted"]["Max_Verzug"], "nearest_run": nearest,
                         "nearest_run_distance": distance, "refit_surrogate": float(judged),
                         "in_support": best["in_support"], "settings": best["settings"]})
        seconds += time.perf_counter() - start
    table = pd.DataFrame(rows)

    def summary(column: str) -> dict:
        ratio = table[column] / table["best_recorded"]
        return {"median_ratio_to_best_recorded": float(ratio.median()),
                "share_within_10pct_of_best": float((ratio <= 1.10).mean()),
                "share_at_or_below_best": float((ratio <= 1.0 + 1e-9).mean()),
                "share_below_median_run": float((table[column] <= table["median_recorded"]).mean())}

    return {"lego_recommend": {"parts": len(table), "folds": folds, "trials": trials, "seconds": seconds,
                               "nearest_run": summary("nearest_run"), "refit_surrogate": summary("refit_surrogate"),
                               "median_nearest_run_distance": float(table["nearest_run_distance"].median()),
                               "share_in_support": float(table["in_support"].mean()),
                               "per_part": rows}}


def _cv_only(frame: pd.DataFrame, config: dict) -> dict:
    task = ProcessOptimisation(config)
    start = time.perf_counter()
    task.fit(frame)
    return {"seconds_cv_and_refit": time.perf_counter() - start, "records": len(frame),
            "cross_validation": task.state["cross_validation"], "notes": task.state["schema"]["notes"],
            "warnings": task.state.get("warnings", [])}


def part_iguzzini() -> dict:
    frame = read_table(require_dataset("injection_molding_iguzzini") / "data.csv")
    return {"iguzzini": _cv_only(frame, {"data": {"results": ["quality"]}, "cv_folds": 5, "training": TRAINING})}


def part_concrete() -> dict:
    frame = read_table(require_dataset("concrete_uci") / "Concrete_Data.csv")
    target = "Concrete compressive strength"
    return {"concrete": _cv_only(frame, {"data": {"results": [target]}, "cv_folds": 5, "training": TRAINING})}


def part_simulator(seeds: list[int], trials: int) -> dict:
    from shopfloor.process.optimisation.simulator import RESULTS as SIM_RESULTS
    from shopfloor.process.optimisation.simulator import regret, simulate_records

    runs = []
    for seed in seeds:
        task = ProcessOptimisation({"data": {"results": list(SIM_RESULTS), "context": ["wall_thickness"],
                                             "steps": {"hold_pressure": 10.0}}, "cv_folds": 0,
                                    "training": {**TRAINING, "seed": seed}})
        start = time.perf_counter()
        task.fit(simulate_records(200, seed=seed))
        advice = task.recommend(fix={"wall_thickness": 2.5}, minimise=["warpage"], constraints=["part_weight<=13"],
                                n=1, trials=trials, seed=seed)
        best = advice["recommendations"][0]
        runs.append({"seed": seed, "regret": regret(best["settings"], 2.5, 13.0), "settings": best["settings"],
                     "predicted_warpage": best["predicted"]["warpage"], "seconds": time.perf_counter() - start})
    values = [r["regret"] for r in runs]
    return {"simulator": {"records": 200, "trials": trials, "mean_regret": float(np.mean(values)),
                          "max_regret": float(np.max(values)), "runs": runs}}


PARTS = ("lego_cv", "lego_recommend", "iguzzini", "concrete", "simulator")  # lego_recommend reads lego_cv's model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="all", choices=["all", *PARTS],
                        help="all (the default, what `make bench` runs): every part in turn, lego_cv first")
    parser.add_argument("--recommend-folds", type=int, default=1)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    for part in PARTS if args.part == "all" else [args.part]:
        run_part(part, args)


def run_part(part: str, args: argparse.Namespace) -> None:
    """Run one part and merge its figures into the results file (the other parts' stay)."""
    load_start = os.getloadavg()[0]
    if part == "lego_cv":
        figures = part_lego_cv()
    elif part == "lego_recommend":
        figures = part_lego_recommend(args.recommend_folds, args.trials)
    elif part == "iguzzini":
        figures = part_iguzzini()
    elif part == "concrete":
        figures = part_concrete()
    else:
        figures = part_simulator([int(s) for s in args.seeds.split(",")], args.trials)
    for section in figures.values():
        section["load_average_at_start"] = load_start
        section["load_average_at_end"] = os.getloadavg()[0]
    previous = RESULTS / f"{NAME}.json"
    merged = {}
    if previous.is_file():
        merged = {k: v for k, v in json.loads(previous.read_text()).items()
                  if k not in ("benchmark", "date", "machine")}
    merged.update(figures)
    merged["protocol"] = __doc__.split("Usage")[0].strip()
    write_result(NAME, merged)


if __name__ == "__main__":
    main()
