"""GAN defect synthesis, few-shot ablation on NEU: does the generator help the classifier on rare classes?

Protocol (fixed before any run): NEU's 1,800 images split 80/20 stratified with seed 0 (the split of bench_neu);
the 20 % test split is never touched by anything but the final scoring. From the 80 % pool, two classes are made
rare (``RARE``: crazing and inclusion, chosen a priori) by keeping k random images of each (per seed); the other
four keep all 240. Per (k, seed), three classifiers, the defect-classification task at its cheapest honest setting
(pretrained EfficientNet-Lite0, frozen features + linear head, 128 px, no auto):

- ``none``: no augmentation (original images only);
- ``classic``: the task's classic augmentation (flips, rotation, shift, zoom, brightness; 3 augmented views);
- ``synthetic``: classic augmentation plus ``--synthetic-per-class`` images of each rare class from a
  defect-synthesis generator trained (fixed step budget, 64x64 grayscale) on that same few-shot training set.

The classifier takes its validation split (early stopping, temperature) from the real training images only; the
generated images join its training split. Generator quality (KID, precision/recall on EfficientNet-Lite0 features,
memorisation ratio) is measured against the rare classes' unused pool images (never the test split).

Runs are cached per (k, seed, condition) in benchmarks/work/synthesis/ (the generator and its classifier under
the generator's ``--name``), so the grid can be run in pieces (``--k 10 --seeds 0``) and summarised with
``--summarise`` into benchmarks/results/synthesis.json, where each generator keeps its own entry (``generators``).

``--part mpdd``: on MPDD metal_plate, an anomaly model's image threshold chosen (a0) by the task itself from its
training images, (a) on the held-out validation good images only (the task's default rule: 1 % false alarms,
normal fit when too few images), (b) for maximum F1 on good images plus the
same images with synthetic defects pasted (:func:`shopfloor.inspection.synthesis.paste.paste_defects`, textures
sampled from a NEU defect-synthesis generator), (c) for maximum F1 on good images plus half of the real defective
test images (an oracle a plant without defects does not have); all three scored on the other half of the defective
test images and every good test image. The validation good images are held out of the anomaly model's training
images (54: 40 fit, 14 validation; seed 0).
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
from common import ROOT, matmul_gflops, require_dataset, write_result  # noqa: E402

from shopfloor.core.split import stratified_split  # noqa: E402
from shopfloor.inspection.classification.task import DefectClassification, LabelledImages  # noqa: E402

RARE = ("crazing", "inclusion")
WORK = ROOT / "benchmarks" / "work" / "synthesis"
CLASSIFIER = {"image_size": 128, "auto": False, "training": {"progress": False}}
CONDITIONS = ("none", "classic", "synthetic")
# earlier generator variants whose cached runs are kept beside the current one (condition synthetic_<name>)
VARIANTS = {"v1": "the generator before the minibatch-standard-deviation layer in the discriminator (commit c1b077d): "
                  "its samples collapsed to one image per class"}
PLAIN = "plain-d2e07fb"  # the first generators' entry in results/synthesis.json (from scratch discriminator)


def few_shot(pool: LabelledImages, k: int, seed: int) -> tuple[LabelledImages, LabelledImages]:
    """(training set with k images of each rare class and every image of the others, the unused rare images)."""
    rng = np.random.default_rng(1000 + seed)
    labels = np.asarray(pool.labels)
    keep, unused = [], []
    for c, name in enumerate(pool.classes):
        idx = np.flatnonzero(labels == c)
        if name in RARE:
            idx = rng.permutation(idx)
            keep += list(idx[:k])
            unused += list(idx[k:])
        else:
            keep += list(idx)
    return pool.subset(sorted(keep)), pool.subset(sorted(unused))


def link_folder(data: LabelledImages, root: Path) -> Path:
    """A class-folder tree of symlinks to ``data``'s images (what the synthesis task reads)."""
    for path, label in zip(data.paths, data.labels):
        target = root / data.classes[label] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(path.resolve(), target)
    return root


def train_generator(train: LabelledImages, unused: LabelledImages, run_dir: Path, args) -> dict:
    """Train the defect-synthesis GAN on the few-shot set; measure it on the unused rare images."""
    from shopfloor.inspection.synthesis.task import DefectSynthesis

    gen_dir = run_dir / args.name
    model_dir = gen_dir / "generator"
    record_path = gen_dir / "generator.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    train_root = link_folder(train, run_dir / "train")
    unused_root = link_folder(unused, run_dir / "unused")
    gan = DefectSynthesis(steps=args.gan_steps, holdout_fraction=0.0, generator_width=args.gan_width,
                          discriminator=args.discriminator,
                          discriminator_width=args.gan_width, sample_every=max(args.gan_steps // 4, 1),
                          training={"batch_size": args.gan_batch, "seed": args.seed_now, "progress": False})
    start, cpu = time.perf_counter(), time.process_time()
    gan.fit(train_root, out_dir=model_dir)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    quality = gan.evaluate(unused_root, report_dir=gen_dir / "generator_report", training_data=str(train_root))
    record = {"model_dir": str(model_dir), "fit_seconds": seconds, "fit_cpu_seconds": cpu_seconds,
              "steps": gan.metrics["steps"], "quality": quality, "load_after": os.getloadavg()}
    record_path.write_text(json.dumps(record, indent=2, default=float))
    return record


def train_classifier(condition: str, train: LabelledImages, test: LabelledImages, run_dir: Path, generator: str | None,
                     args) -> dict:
    # another --per-class than the protocol's 100 is its own condition (synthetic_n<N>)
    suffix = f"_n{args.per_class}" if condition == "synthetic" and args.per_class != 100 else ""
    path = (run_dir / args.name if condition == "synthetic" else run_dir) / f"classifier_{condition}{suffix}.json"
    if path.exists():
        return json.loads(path.read_text())
    config = json.loads(json.dumps(CLASSIFIER))
    config["training"]["seed"] = args.seed_now
    if condition == "none":
        config.update({"augment": {"enabled": False}, "feature_views": 0})
    if condition == "synthetic":
        config.update({"synthetic": generator, "synthetic_per_class": args.per_class, "synthetic_classes": list(RARE)})
    task = DefectClassification(config)
    start = time.perf_counter()
    task.fit(train)
    seconds = time.perf_counter() - start
    metrics = task.evaluate(test)
    per_class = metrics["per_class"]
    record = {"condition": condition, "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
              "rare_recall": float(np.mean([per_class[c]["recall"] for c in RARE])),
              "rare_recall_per_class": {c: per_class[c]["recall"] for c in RARE},
              "rare_precision_per_class": {c: per_class[c]["precision"] for c in RARE},
              "n_test": metrics["n_test"], "fit_seconds": seconds, "sampling": task.state.get("sampling"),
              "synthetic": task.state.get("synthetic"), "load_after": os.getloadavg()}
    path.write_text(json.dumps(record, indent=2, default=float))
    print(f"  {condition}: rare recall {record['rare_recall']:.3f} {record['rare_recall_per_class']}, "
          f"macro F1 {record['macro_f1']:.4f} ({seconds:.0f} s)", flush=True)
    return record


def run(args) -> None:
    root = require_dataset("neu_surface_defects") / "images"
    data = LabelledImages.from_folder(root)
    pool_idx, test_idx = stratified_split(data.labels, 0.2, seed=0)
    pool, test = data.subset(pool_idx), data.subset(test_idx)
    for k in args.k:
        for seed in args.seeds:
            args.seed_now = seed
            run_dir = WORK / f"k{k}_seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            train, unused = few_shot(pool, k, seed)
            print(f"k={k} seed={seed}: {len(train.paths)} training images ({k} of each of {RARE}); "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            generator = None
            if "synthetic" in args.conditions:
                record = train_generator(train, unused, run_dir, args)
                generator = record["model_dir"]
                q = record["quality"]
                print(f"  generator: {record['steps']} steps in {record['fit_seconds']:.0f} s; KID "
                      f"{q['kid_mean']:.4f}, precision {q['precision_mean']:.3f}, recall {q['recall_mean']:.3f}, "
                      f"memorisation ratio {q['memorisation_ratio_mean']:.3f}", flush=True)
            for condition in args.conditions:
                train_classifier(condition, train, test, run_dir, generator, args)


def summarise(args) -> None:
    """Table per k over the cached runs of generator ``args.name``: every classifier condition, generator quality,
    and synthetic minus classic (paired by seed). Other generators' entries in the results file are kept."""
    rows, table = [], {}
    for run_dir in sorted(WORK.glob("k*_seed*")):
        k, seed = (int(x) for x in run_dir.name[1:].split("_seed"))
        for path in sorted(run_dir.glob("classifier_*.json")) + sorted((run_dir / args.name).glob("classifier_*.json")):
            rows.append({"k": k, "seed": seed, **json.loads(path.read_text()),
                         "condition": path.stem.removeprefix("classifier_")})
        for gen in sorted((run_dir / args.name).glob("generator.json")):
            record = json.loads(gen.read_text())
            rows.append({"k": k, "seed": seed, "condition": gen.stem, "quality": record["quality"],
                         "fit_seconds": record["fit_seconds"], "steps": record["steps"]})
    for k in sorted({r["k"] for r in rows}):
        entry: dict = {}
        for condition in sorted({r["condition"] for r in rows if r["k"] == k}):
            runs = [r for r in rows if r["k"] == k and r["condition"] == condition]
            if condition == "generator":
                entry[condition] = {"seeds": sorted(r["seed"] for r in runs), **{
                    key: float(np.mean([g["quality"][key] for g in runs]))
                    for key in ("kid_mean", "precision_mean", "recall_mean", "memorisation_ratio_mean")},
                    "fit_seconds_mean": float(np.mean([g["fit_seconds"] for g in runs]))}
                continue
            entry[condition] = {"seeds": sorted(r["seed"] for r in runs),
                                "rare_recall_mean": float(np.mean([r["rare_recall"] for r in runs])),
                                "rare_recall_std": float(np.std([r["rare_recall"] for r in runs])),
                                "macro_f1_mean": float(np.mean([r["macro_f1"] for r in runs])),
                                "macro_f1_std": float(np.std([r["macro_f1"] for r in runs]))}
        for condition in [c for c in entry if c.startswith("synthetic")]:
            paired = [(s, c) for s in rows for c in rows if s["k"] == c["k"] == k and s["seed"] == c["seed"]
                      and s["condition"] == condition and c["condition"] == "classic"]
            if paired:
                entry[f"{condition}_minus_classic"] = {
                    "seeds": sorted(s["seed"] for s, _ in paired),
                    "rare_recall_points": 100 * float(np.mean([s["rare_recall"] - c["rare_recall"]
                                                               for s, c in paired])),
                    "macro_f1_points": 100 * float(np.mean([s["macro_f1"] - c["macro_f1"] for s, c in paired]))}
        table[str(k)] = entry
    for k, entry in table.items():
        for name, value in entry.items():
            print(f"k={k} {name}: {value}")
    target = table.get("10", {}).get("synthetic_minus_classic")
    path = ROOT / "benchmarks" / "results" / "synthesis.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    generators = old.get("generators", {})
    if not generators and "table" in old:  # the file before per-generator entries: the plain discriminator's runs
        generators[PLAIN] = {key: old[key] for key in ("date", "generator", "variants", "table", "runs", "target_met")
                             if key in old}
    generators[args.name] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "generator": {"discriminator": args.discriminator, "steps": args.gan_steps, "width": args.gan_width,
                      "batch_size": args.gan_batch, "image_size": 64, "color": "gray",
                      "synthetic_per_class": args.per_class},
        "table": table, "runs": rows,
        "target_met": bool(target and len(target["seeds"]) == 3 and target["rare_recall_points"] >= 5
                           and target["macro_f1_points"] >= 0)}
    write_result("synthesis", {
        "protocol": __doc__, "rare_classes": list(RARE), "classifier": CLASSIFIER, "current": args.name,
        "target": "rare-class recall at k=10 >= +5 points over classic augmentation (mean of 3 seeds), macro F1 "
                  "not lower",
        "target_met": generators[args.name]["target_met"], "table": table, "generators": generators,
        **({"mpdd_threshold": old["mpdd_threshold"]} if "mpdd_threshold" in old else {}),
        "matmul_gflops_at_summary": matmul_gflops()})


def _logits(scores: np.ndarray) -> np.ndarray:
    """Normalised anomaly scores (sigmoid((raw - t) / s)) back to (raw - t) / s: affine in the raw score, so the
    threshold rules give the same decisions as on raw scores."""
    p = np.clip(np.asarray(scores, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _read(paths) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _at_threshold(threshold: float, scores: np.ndarray, labels: np.ndarray) -> dict:
    flagged = scores >= threshold
    tp, fp = int((flagged & (labels == 1)).sum()), int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    return {"threshold": float(threshold), "f1": 2 * tp / max(2 * tp + fp + fn, 1), "recall": tp / max(tp + fn, 1),
            "false_positive_rate": fp / max(int((labels == 0).sum()), 1), "precision": tp / max(tp + fp, 1)}


def run_mpdd(generator_dir: str, results_path: Path, models=("patchcore", "padim"), per_good: int = 3) -> None:
    """The threshold comparison of ``--part mpdd`` (see the module docstring); result in ``mpdd_threshold``."""
    from sklearn.metrics import roc_auc_score

    from shopfloor.core.registry import load
    from shopfloor.inspection.anomaly.metrics import f1_optimal_threshold, false_alarm_threshold
    from shopfloor.inspection.anomaly.task import AnomalyDetection
    from shopfloor.inspection.synthesis.paste import paste_defects

    root = require_dataset("mpdd_metal_plate")
    rng = np.random.default_rng(0)
    good = sorted((root / "train" / "good").glob("*.png"))
    order = rng.permutation(len(good))
    fit_paths, val_paths = [good[i] for i in sorted(order[14:])], [good[i] for i in sorted(order[:14])]
    defects = sorted((root / "test" / "defect").glob("*.png"))
    d_order = rng.permutation(len(defects))
    half = len(defects) // 2
    cal_defects, eval_defects = [defects[i] for i in sorted(d_order[:half])], [defects[i] for i in sorted(d_order[half:])]
    eval_paths = sorted((root / "test" / "good").glob("*.png")) + eval_defects
    eval_labels = np.r_[np.zeros(len(eval_paths) - len(eval_defects), int), np.ones(len(eval_defects), int)]
    generator = load(generator_dir)
    textures, _ = generator.generate(64, None, seed=7)  # every NEU class, 64 each
    val_good = _read(val_paths)
    pasted, masks = paste_defects(np.repeat(val_good, per_good, axis=0), textures[..., 0].astype(np.float32), rng)
    out: dict = {"dataset": "MPDD metal_plate", "generator": generator_dir, "n_fit_good": len(fit_paths),
                 "n_validation_good": len(val_paths), "n_pasted": len(pasted),
                 "pasted_defect_area_share_mean": float(masks.mean()), "n_calibration_defects": len(cal_defects),
                 "n_eval_good": int((eval_labels == 0).sum()), "n_eval_defects": int(eval_labels.sum()),
                 "models": {}}
    for model in models:
        start = time.perf_counter()
        task = AnomalyDetection(model=model, training={"progress": False}).fit(_read(fit_paths))
        z = {name: _logits(task.score_images(items)[0]) for name, items in
             (("val_good", list(val_good)), ("pasted", list(pasted)), ("cal", cal_defects), ("eval", eval_paths))}
        rate = task.config.false_alarm_rate
        thresholds = {
            "a0_task_default": 0.0,  # the task's own threshold, from its training images (cross-fitted or held out)
            "a_good_only": false_alarm_threshold(z["val_good"], rate)[0],
            "b_synthetic_defects": f1_optimal_threshold(np.r_[np.zeros(len(val_paths)), np.ones(len(pasted))],
                                                        np.r_[z["val_good"], z["pasted"]]),
            "c_real_defects_oracle": f1_optimal_threshold(np.r_[np.zeros(len(val_paths)), np.ones(len(cal_defects))],
                                                          np.r_[z["val_good"], z["cal"]])}
        out["models"][model] = {
            "seconds": time.perf_counter() - start,
            "eval_image_auroc": float(roc_auc_score(eval_labels, z["eval"])),
            "pasted_vs_validation_good_auroc": float(roc_auc_score(
                np.r_[np.zeros(len(val_paths)), np.ones(len(pasted))], np.r_[z["val_good"], z["pasted"]])),
            "pasted_detected_at_a": float((z["pasted"] >= thresholds["a_good_only"]).mean()),
            "at_threshold": {name: _at_threshold(t, z["eval"], eval_labels) for name, t in thresholds.items()},
            "threshold_rule_of_task": task.state["calibration"]["image_rule"],
            "score_units": "(raw - task threshold) / task scale (logit of the normalised score)",
            "scores": {name: np.round(values, 3).tolist() for name, values in z.items()}}
        print(model, json.dumps({k: v for k, v in out["models"][model].items() if k != "scores"}, indent=1),
              flush=True)
    out.update({"date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "load_average": os.getloadavg()})
    doc = json.loads(results_path.read_text())
    doc["mpdd_threshold"] = out
    results_path.write_text(json.dumps(doc, indent=2, default=float))
    print(f"wrote {results_path} (mpdd_threshold)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[10, 5, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--gan-steps", type=int, default=800)
    parser.add_argument("--gan-width", type=int, default=16)
    parser.add_argument("--gan-batch", type=int, default=16)
    parser.add_argument("--per-class", type=int, default=100, help="generated images per rare class")
    parser.add_argument("--name", default="projected-msgan", help="the generator's name (cache and results entry)")
    parser.add_argument("--discriminator", default="projected", choices=("projected", "plain"))
    parser.add_argument("--summarise", action="store_true", help="only write results/synthesis.json from the cache")
    parser.add_argument("--part", default="all", choices=("all", "ablation", "mpdd"),
                        help="all (the default, what `make bench` runs): the ablation, then mpdd (with its k=10 "
                        "seed-0 generator)")
    parser.add_argument("--mpdd-generator", default=str(WORK / "k10_seed0" / "projected-msgan" / "generator"),
                        help="--part mpdd: the defect-synthesis model whose samples are pasted")
    args = parser.parse_args()
    if args.part in ("all", "ablation"):
        if not args.summarise:
            run(args)
        summarise(args)
    if args.part in ("all", "mpdd"):
        run_mpdd(args.mpdd_generator, ROOT / "benchmarks" / "results" / "synthesis.json")


if __name__ == "__main__":
    main()
