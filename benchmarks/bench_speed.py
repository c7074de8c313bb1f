"""CPU speed of the deployed graphs: fp32 vs int8 (behind its accuracy gate) vs OpenVINO, in one run.

NEU defect classification (stratified 80/20 split, seed 0, defaults) and MPDD anomaly detection at 256 px
(``--auto false``; ``--with-auto`` adds the auto-configured model). Each model is trained once, quantised with
``task.quantize`` on its own training images (gate: 1 % top-1 disagreement / anomaly decision flips), then every
variant (precision x execution provider) is timed end to end on the test images in a fresh subprocess (so each
has the machine to itself and its own ONNX Runtime build): ``predict`` (classification) / ``score_images``
(anomaly) on the file paths, decode included, best of 3 passes, plus the graph alone on pre-decoded batches.
Achieved GFLOP/s = the fp32 graph's multiply-adds x 2 per image (Conv, MatMul, Gemm, from ONNX shape inference)
x images/s of the graph alone, next to the 2048^2 fp32 matmul peak measured in the same run.

OpenVINO runs in a separate interpreter (the ``onnxruntime-openvino`` wheel replaces ``onnxruntime``): set
``SHOPFLOOR_OPENVINO_PYTHON`` to a Python whose environment has it (see README "Deploy"); absent, the OpenVINO
rows are skipped with the reason. Writes benchmarks/results/speed.json.

    python benchmarks/bench_speed.py [--with-auto] [--reuse]   (--reuse: quantise and time the models a previous
                                                               run trained, instead of training them again)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine, matmul_gflops, require_dataset, write_result  # noqa: E402

WORK = ROOT / "benchmarks" / "work" / "speed"
MAX_DISAGREEMENT = 0.01


# ----------------------------------------------------------------------------------------------- graph FLOPs
def graph_flops(graph: bytes, feeds: dict) -> dict[str, float]:
    """Floating-point operations per input row of Conv, Gemm and MatMul nodes (2 per multiply-add), from the tensor
    shapes of one real run (ONNX shape inference cannot follow the backbone's computed "same" padding)."""
    import numpy as np
    import onnx

    from shopfloor.core.runtime import OnnxModel

    model = onnx.load_from_string(graph)
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    known = {o.name for o in model.graph.output}
    wanted = {t for n in layers for t in (n.input[0], n.input[1], n.output[0])} - set(weights) - known
    wanted -= {i.name for i in model.graph.input}
    for name in sorted(wanted):
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    outputs = OnnxModel(model.SerializeToString(), device="cpu").run(**{k: np.asarray(v)[:1] for k, v in feeds.items()})
    shapes = {**weights, **{k: list(v.shape) for k, v in outputs.items()},
              **{k: list(np.asarray(v)[:1].shape) for k, v in feeds.items()}}
    flops = {"Conv": 0.0, "MatMul": 0.0, "Gemm": 0.0}
    for node in layers:
        if node.op_type == "Conv":
            out, w = shapes[node.output[0]], shapes[node.input[1]]
            flops["Conv"] += 2 * float(np.prod(out)) * float(np.prod(w[1:]))
        else:
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            trans_b = any(at.name == "transB" and at.i for at in node.attribute)
            rows = a[-1] if trans_a else float(np.prod(a[:-1]))
            k, n = (b[-1], b[-2]) if trans_b else (b[-2], b[-1])
            flops[node.op_type] += 2 * float(rows) * k * n
    return flops


# ----------------------------------------------------------------------------------------------- one variant
def measure(spec: dict) -> dict:
    """Time one model variant (runs in its own subprocess)."""
    import numpy as np

    from shopfloor.core.registry import load

    task = load(spec["model"], device=spec["device"], precision=spec["precision"])
    task.training.progress = False
    graph, precision = task.deployed_graph()
    paths = spec["paths"]
    kind = spec["kind"]
    run = (lambda: task.predict(paths)) if kind == "classification" else (lambda: task.score_images(paths))
    run()  # warm-up: sessions, page cache
    seconds = min(_timed(run) for _ in range(3))
    # the graph alone, on decoded batches of 32 handed to the multi-threaded session
    from shopfloor.inspection.images import read_images, to_model_input

    batch = to_model_input(read_images(paths[:32], task.image_spec))
    name = task.runtime.input_names[0]
    task.runtime.run(**{name: batch})
    graph_seconds = min(_timed(lambda: task.runtime.run(**{name: batch})) for _ in range(5))
    result = {"precision": precision, "device": spec["device"], "providers": task.runtime.providers,
              "n_images": len(paths), "images_per_s": len(paths) / seconds,
              "graph_images_per_s_batch32": 32 / graph_seconds}
    if kind == "classification":
        metrics = task.evaluate(spec["test"])
        result.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"])
    else:
        metrics = task.evaluate(spec["test"])
        result.update(image_auroc=metrics["image_auroc"], pixel_auroc=metrics["pixel_auroc"])
    if spec.get("flops"):
        fp32_graph = task._onnx_bytes
        result["graph_gflop_per_image"] = {k: v / 1e9 for k, v in graph_flops(fp32_graph, {name: batch[:1]}).items()}
        total = sum(result["graph_gflop_per_image"].values())
        result["achieved_gflops_fp32_equivalent"] = total * result["graph_images_per_s_batch32"]
        result["achieved_gflops_backbone"] = result["graph_gflop_per_image"]["Conv"] * result[
            "graph_images_per_s_batch32"]
    del np
    return result


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_variant(spec: dict, python: str = sys.executable) -> dict:
    """``measure(spec)`` in a fresh interpreter; its JSON result."""
    out = subprocess.run([python, __file__, "--measure", json.dumps(spec)], capture_output=True, text=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def variants(model: Path, kind: str, paths: list[str], test: str, accepted: bool) -> dict[str, dict]:
    base = {"model": str(model), "kind": kind, "paths": paths, "test": test}
    rows = {"fp32_cpu": run_variant({**base, "device": "cpu", "precision": "fp32", "flops": True})}
    if accepted:
        rows["int8_cpu"] = run_variant({**base, "device": "cpu", "precision": "int8", "flops": True})
    ov = os.environ.get("SHOPFLOOR_OPENVINO_PYTHON")
    if ov:
        rows["fp32_openvino"] = run_variant({**base, "device": "openvino", "precision": "fp32", "flops": True}, ov)
        if accepted:
            rows["int8_openvino"] = run_variant({**base, "device": "openvino", "precision": "int8", "flops": True},
                                                ov)
    else:
        rows["openvino"] = {"skipped": "SHOPFLOOR_OPENVINO_PYTHON is not set (onnxruntime-openvino replaces "
                                       "onnxruntime, so it runs from its own environment)"}
    reference = rows["fp32_cpu"].get("images_per_s")
    for row in rows.values():
        if reference and "images_per_s" in row:
            row["speedup_vs_fp32_cpu"] = row["images_per_s"] / reference
    return rows


# ----------------------------------------------------------------------------------------------- data sets
def _fitted(model: Path, fit):
    """``fit()``, or with ``--reuse`` the model already in ``model`` (fit seconds then time the load only)."""
    if "--reuse" in sys.argv and (model / "manifest.json").is_file():
        from shopfloor.core.registry import load

        task = load(model, device="cpu", precision="fp32")
        task.training.progress = False
        return task
    return fit()


def neu() -> dict:
    from shopfloor.core.split import stratified_split
    from shopfloor.inspection.classification.task import DefectClassification, LabelledImages

    root = require_dataset("neu_surface_defects") / "images"
    data = LabelledImages.from_folder(root)
    train_idx, test_idx = stratified_split(data.labels, 0.2, seed=0)
    test_dir = WORK / "neu_test"
    if not test_dir.is_dir():  # evaluate reads a class-folder tree: link the test split into one
        for i in test_idx:
            target = test_dir / data.classes[data.labels[i]] / data.paths[i].name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(data.paths[i])
    model = WORK / "neu_model"
    start = time.perf_counter()
    task = _fitted(model, lambda: DefectClassification(training={"seed": 0, "progress": False}).fit(
        data.subset(train_idx), out_dir=model))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    record = task.quantize([str(data.paths[i]) for i in train_idx], max_disagreement=MAX_DISAGREEMENT,
                           out_dir=model)
    paths = [str(data.paths[i]) for i in test_idx]
    return {"protocol": "stratified 80/20 split of the 1,800 images, seed 0; int8 calibrated and gated on the "
                        "training 80 %; speed and accuracy on the test 20 %",
            "fit_seconds": fit_seconds, "quantize_seconds": time.perf_counter() - start, "gate": record,
            "variants": variants(model, "classification", paths, str(test_dir), record["accepted"])}


def mpdd(auto: bool) -> dict:
    from shopfloor.inspection.anomaly.task import AnomalyDetection

    root = require_dataset("mpdd_metal_plate")
    model = WORK / f"mpdd_model_auto_{str(auto).lower()}"
    start = time.perf_counter()
    options = {"auto": auto, "training": {"seed": 0, "progress": False}}
    if not auto:
        options["image_size"] = 256
    task = _fitted(model, lambda: AnomalyDetection(**options).fit(root, out_dir=model))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    record = task.quantize(root / "train", max_disagreement=MAX_DISAGREEMENT, out_dir=model)
    paths = sorted(str(p) for p in (root / "test").rglob("*.png"))
    return {"protocol": f"fit on train/good (auto {auto}); int8 calibrated and gated on the training images; speed "
                        "and AUROC on the test set", "image_size": task.config.image_size,
            "fit_seconds": fit_seconds, "quantize_seconds": time.perf_counter() - start, "gate": record,
            "variants": variants(model, "anomaly", paths, str(root), record["accepted"])}


def add_flops(path: Path) -> None:
    """Fill the FLOP figures of an existing result from the same model directories (the graphs do not change):
    GFLOP per image of each layer kind and the achieved GFLOP/s of every variant's measured graph speed."""
    import numpy as np

    results = json.loads(path.read_text())
    for name, model in (("neu", "neu_model"), ("mpdd_auto_false", "mpdd_model_auto_false"),
                        ("mpdd_auto_true", "mpdd_model_auto_true")):
        if "variants" not in results.get(name, {}):
            continue
        from shopfloor.core.registry import load

        task = load(WORK / model, device="cpu", precision="fp32")
        spec = task.image_spec
        feeds = {task.runtime.input_names[0]: np.zeros((1, 3, spec.height, spec.width), np.float32)}
        flops = {k: v / 1e9 for k, v in graph_flops(task._onnx_bytes, feeds).items()}
        results[name]["graph_gflop_per_image"] = flops
        for row in results[name]["variants"].values():
            if "graph_images_per_s_batch32" in row:
                row["graph_gflop_per_image"] = flops
                row["achieved_gflops_fp32_equivalent"] = sum(flops.values()) * row["graph_images_per_s_batch32"]
                row["achieved_gflops_backbone"] = flops["Conv"] * row["graph_images_per_s_batch32"]
        results[name]["flops_note"] = "counted after the run from the same model directories (--add-flops)"
    path.write_text(json.dumps(results, indent=2))


def main() -> None:
    if "--add-flops" in sys.argv:
        add_flops(ROOT / "benchmarks" / "results" / "speed.json")
        return
    if "--measure" in sys.argv:
        print(json.dumps(measure(json.loads(sys.argv[sys.argv.index("--measure") + 1]))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    peak_start = matmul_gflops()
    runs = {"neu": neu, "mpdd_auto_false": lambda: mpdd(False)}
    if "--with-auto" in sys.argv:
        runs["mpdd_auto_true"] = lambda: mpdd(True)
    results: dict = {}
    for name, run in runs.items():  # one data set failing does not lose the others' figures
        try:
            results[name] = run()
        except Exception as exc:  # noqa: BLE001 - recorded in the result
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    results.update(matmul_gflops_start=peak_start, matmul_gflops_end=matmul_gflops(),
                   load_1min_start=load_start, load_1min_end=os.getloadavg()[0], machine=machine(),
                   max_disagreement=MAX_DISAGREEMENT)
    path = write_result("speed", results)
    for name in runs:
        if "variants" in results[name]:
            for variant, row in results[name]["variants"].items():
                print(name, variant, {k: v for k, v in row.items() if not isinstance(v, (dict, list))})
    print(f"written {path}")


if __name__ == "__main__":
    main()
