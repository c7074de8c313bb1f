"""NEU surface defects: stratified 80/20 split (seed 0), train on the 80, test on the 20.

Records accuracy, macro F1, the calibration error (ECE) before and after the fitted temperature, training time,
what the auto-configuration chose, and classification throughput (ONNX Runtime vs torch eager, batch 1 and 32, at
the chosen input size, measured in the same run) in benchmarks/results/neu.json (``--auto false``:
neu_fixed.json, the fixed pipeline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import (  # noqa: E402
    cpu_ms_per_item,
    fit_evaluate_classification,
    matmul_gflops,
    require_dataset,
    throughput,
    write_result,
)

from shopfloor.core.runtime import OnnxModel  # noqa: E402
from shopfloor.core.split import stratified_split  # noqa: E402
from shopfloor.inspection.classification.task import LabelledImages  # noqa: E402
from shopfloor.inspection.images import read_images, to_model_input  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auto", default="true", choices=["true", "false"], help="false: the fixed pipeline")
    auto = parser.parse_args().auto == "true"
    root = require_dataset("neu_surface_defects") / "images"
    data = LabelledImages.from_folder(root)
    train_idx, test_idx = stratified_split(data.labels, 0.2, seed=0)
    gflops_at_start = matmul_gflops()
    task, metrics, timing = fit_evaluate_classification(data.subset(train_idx), data.subset(test_idx),
                                                        "neu" if auto else "neu_fixed", {"auto": auto})
    train_seconds, train_cpu_seconds = timing["train_seconds"], timing["train_cpu_seconds"]
    errors = int(round((1 - metrics["accuracy"]) * metrics["n_test"]))
    print(f"NEU test accuracy {metrics['accuracy']:.4f} ({errors} errors / {metrics['n_test']}), "
          f"macro F1 {metrics['macro_f1']:.4f}, ECE {metrics['ece_uncalibrated']:.4f} -> {metrics['ece']:.4f}, "
          f"training {train_seconds:.0f} s; {task.state['summary']}")

    images = read_images([data.paths[i] for i in test_idx[:32]], task.image_spec)
    batch32 = to_model_input(images)
    batch1 = batch32[:1]
    runtime = task.runtime
    eager = task.export_module().eval()
    speed = {}
    with torch.inference_mode():
        for name, batch in (("batch1", batch1), ("batch32", batch32)):
            x = torch.from_numpy(batch)
            speed[f"onnxruntime_{name}_img_per_s"] = throughput(lambda: runtime.run(image=batch), len(batch))
            speed[f"torch_eager_{name}_img_per_s"] = throughput(lambda: eager(x), len(batch))
    # Load-independent cost: CPU time of one thread per image, ONNX Runtime and torch eager.
    single = OnnxModel(task._onnx_bytes, device="cpu", threads=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.inference_mode():
        x32 = torch.from_numpy(batch32)
        speed["onnxruntime_cpu_ms_per_image_1thread"] = cpu_ms_per_item(lambda: single.run(image=batch32), 32)
        speed["torch_eager_cpu_ms_per_image_1thread"] = cpu_ms_per_item(lambda: eager(x32), 32)
    torch.set_num_threads(threads)
    speed["onnxruntime_estimated_img_per_s_2cores_batch32"] = 2000 / speed["onnxruntime_cpu_ms_per_image_1thread"]
    speed["onnx_vs_eager_batch32"] = speed["onnxruntime_batch32_img_per_s"] / speed["torch_eager_batch32_img_per_s"]
    speed["onnx_vs_eager_batch1"] = speed["onnxruntime_batch1_img_per_s"] / speed["torch_eager_batch1_img_per_s"]
    print({k: round(v, 2) for k, v in speed.items()})
    write_result("neu" if auto else "neu_fixed", {
        "dataset": str(root), "protocol": "stratified 80/20 split of all 1,800 images, seed 0; the model holds "
        "out 20% of the 80 for early stopping; test = the 20", "model": task.config.model,
        "image_size": task.config.image_size, "n_train": len(train_idx), "n_test": metrics["n_test"],
        "accuracy": metrics["accuracy"], "errors": errors, "macro_f1": metrics["macro_f1"],
        "per_class": metrics["per_class"], "ece_uncalibrated": metrics["ece_uncalibrated"], "ece": metrics["ece"],
        "nll_uncalibrated": metrics["nll_uncalibrated"], "nll": metrics["nll"], "temperature": metrics["temperature"],
        "tta_flips": metrics["tta_flips"], "auto": auto, "summary": task.state["summary"],
        "training_depth": task.state.get("training_depth"), "autoconfig": task.state.get("autoconfig"),
        "calibration": task.state.get("calibration"), "sampling": task.state.get("sampling"),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds, "epochs_run": task.metrics["epochs_run"],
        **speed, "matmul_gflops_at_start": gflops_at_start,
    })


if __name__ == "__main__":
    main()
