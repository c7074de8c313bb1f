"""int8 static quantisation of a task's deployed graph, behind an accuracy gate (`shopfloor optimize --int8`).

What is quantised: ONNX Runtime's ``quantize_static`` in QDQ format, weights int8 per output channel (symmetric),
activations uint8 (MinMax ranges), on the *layers* only: Conv, MatMul and Gemm nodes whose weight is a constant.
The first layer (it sees raw pixels or signals) and the last one (it writes the scores) stay fp32, and when the
graph is a convolutional network so do its last Conv and every layer downstream of it: the features the output is
computed from, classifier heads, the nearest-neighbour search against a memory bank, anomaly-map upsampling and
normalisation are small next to the trunk and decide the output directly. So do the trunk layers that feed those
with no layer between (the tapped feature maps and the residual stream into them) and depthwise convolutions (few
FLOPs, per-channel ranges int8 represents badly, and no fast int8 kernel on our CPUs): on MPDD, PatchCore's int8
graph flipped the decision on every good image with them quantised, none without. Everything else (pooling,
resizing, thresholds) is left in fp32.

Calibration and the gate run on the graph inputs the task's own ``predict`` builds from the data given
(:meth:`shopfloor.core.task.Task.graph_feeds`), so they saw the deployed pre-processing. The inputs are split,
seeded: up to :data:`MAX_CALIBRATION` calibrate, the others (disjoint) are scored by both graphs on the CPU provider
and compared output by output (:func:`compare_outputs`). When the share of inputs on which they disagree is above
``max_disagreement``, the int8 graph is refused and the fp32 one kept, with a note giving the numbers.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, DataError
from .quiet import quiet_libraries
from .runtime import OnnxModel, ParallelRunner

Task = Any  # a shopfloor.core.task.Task (not imported: task.py imports this module)

LAYER_OPS = ("Conv", "MatMul", "Gemm")
MAX_CALIBRATION = 128  # calibration inputs at most; MinMax ranges settle well before
MIN_INPUTS = 4
CHECKS = ("top1", "decision", "value", "report")
VALUE_TOLERANCE = 0.05  # "value" outputs: a row disagrees when off by more than this share of the output's spread
REFUSED = "int8 graph refused by its accuracy gate"


# ----------------------------------------------------------------------------------------------- inputs
def collect_inputs(task: Task, data: Any, max_inputs: int, seed: int = 0) -> list[Any]:
    """The inputs to calibrate and gate on: folders are searched (recursively) for files the task reads
    (``task.input_suffixes``), files and in-memory inputs are kept; at most ``max_inputs``, a seeded sample."""
    items: list[Any] = []
    given = [data] if isinstance(data, (str, Path)) else list(data) if isinstance(data, (list, tuple)) else [data]
    for item in given:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            if not task.input_suffixes:
                raise ConfigError(f"{task.name} does not read folders of files; pass the inputs predict takes")
            found = sorted(p for p in Path(item).rglob("*") if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in task.input_suffixes)
            if not found:
                raise DataError(f"folder {item} holds no {task.input_kind} files ({', '.join(task.input_suffixes)}) "
                                "to calibrate on; pass the training or validation images of the model")
            items.extend(found)
        elif isinstance(item, (str, Path)) and not Path(item).exists():
            raise DataError(f"calibration data {item} does not exist; pass a folder of the model's training or "
                            "validation images")
        else:
            items.append(item)
    if len(items) > max_inputs:
        pick = np.sort(np.random.default_rng(seed).choice(len(items), max_inputs, replace=False))
        items = [items[i] for i in pick]
    return items


class _Recorder:
    """Wraps an :class:`OnnxModel`: runs it and keeps a copy of every feed (in call order)."""

    def __init__(self, model: OnnxModel):
        self.model = model
        self.feeds: list[dict[str, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.feeds.append({k: np.array(v, copy=True) for k, v in inputs.items()})
        return self.model.run(**inputs)

    def run_batches(self, batches):
        return OnnxModel.run_batches(self, batches)  # type: ignore[arg-type]


def record_feeds(task: Task, inputs: Sequence[Any]) -> list[dict[str, np.ndarray]]:
    """Run ``task.predict(inputs)`` on the fp32 graph (CPU) and return what it fed the graph, one dict of
    single-row arrays per row (every graph input's first axis is the batch)."""
    saved = task.precision, task.device
    task.precision, task.device = "fp32", "cpu"
    task.reset_runtime()
    graph, _ = task.deployed_graph()
    recorder = _Recorder(OnnxModel(graph, device="cpu"))
    runner = ParallelRunner(graph, device="cpu", workers=1, batch_model=recorder)  # type: ignore[arg-type]
    task._runtime, task._parallel = recorder, runner  # type: ignore[assignment]
    try:
        task.predict(list(inputs))
    finally:
        task.precision, task.device = saved
        task.reset_runtime()
    rows = []
    for feed in recorder.feeds:
        n = len(next(iter(feed.values())))
        rows.extend({k: v[i:i + 1] for k, v in feed.items()} for i in range(n))
    return rows


def stack(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Single-row feeds -> one batch."""
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def run_rows(graph: bytes, rows: Sequence[dict[str, np.ndarray]], device: str = "cpu",
             batch_size: int = 16) -> dict[str, np.ndarray]:
    """Outputs of ``graph`` on ``rows`` (batched), concatenated."""
    model = OnnxModel(graph, device=device)
    return model.run_batches(stack(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size))


# ----------------------------------------------------------------------------------------------- the graph
def select_layers(model: Any) -> tuple[list[str], dict[str, Any]]:
    """Names of the nodes to quantise in an ONNX ``ModelProto`` (see module docstring) and what was kept fp32."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    nodes = list(model.graph.node)
    layers = [n for n in nodes if n.op_type in LAYER_OPS and len(n.input) > 1 and n.input[1] in constants]
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    head: set[str] = set()
    if convs:  # the last Conv and the layers it feeds: features the output is computed from, head, post-processing
        head.add(nodes[convs[-1]].name)
        reached = set(nodes[convs[-1]].output)
        for n in nodes[convs[-1] + 1:]:
            if reached.intersection(n.input):
                reached.update(n.output)
                if n in layers:
                    head.add(n.name)
    ends = {layers[0].name, layers[-1].name} if layers else set()
    taps = _feature_taps(nodes, layers, head) if head else set()
    depthwise = {n.name for n in layers if n.op_type == "Conv" and _group(n) > 1}
    chosen = [n.name for n in layers if n.name not in head | ends | taps | depthwise]
    kept = {"first_and_last": sorted(ends), "last_conv_and_after": len(head), "feature_taps": len(taps),
            "depthwise": len(depthwise)}
    return chosen, {"layers": len(layers), "quantized": len(chosen), "kept_fp32": kept}


def _group(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _feature_taps(nodes: list, layers: list, head: set[str]) -> set[str]:
    """Trunk layers whose output reaches the fp32 head with no other layer in between: the feature maps the output
    is computed from (PatchCore's tapped blocks) and the residual stream that carries into them."""
    layer_names = {n.name for n in layers}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    taps = set()
    for layer in layers:
        if layer.name in head:
            continue
        frontier, seen = list(layer.output), set()
        while frontier:
            tensor = frontier.pop()
            for n in consumers.get(tensor, []):
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.name in head:
                    taps.add(layer.name)
                    frontier = []
                    break
                if n.name not in layer_names:
                    frontier.extend(n.output)
    return taps


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over single-row feeds."""

    def __init__(self, rows: Sequence[dict[str, np.ndarray]]):
        self.rows = iter(rows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.rows, None)


def quantize_graph(graph: bytes, calibration: Sequence[dict[str, np.ndarray]]) -> tuple[bytes, dict[str, Any]]:
    """int8 QDQ graph of ``graph`` calibrated on ``calibration`` rows; returns it and what was quantised."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (_Calibration, CalibrationDataReader), {})(calibration)
    with tempfile.TemporaryDirectory() as tmp, quiet_libraries(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        try:  # shape inference + basic fusions (Conv+BN...), as ONNX Runtime recommends before quantising
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optional: a graph it cannot process is quantised as exported
            pre = src
        model = onnx.load(str(pre))
        nodes, info = select_layers(model)
        if not nodes:
            raise ConfigError("this graph has no layers to quantise (Conv/MatMul/Gemm with constant weights besides "
                              "the first and the last); int8 would not make it faster: keep fp32")
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(LAYER_OPS), nodes_to_quantize=nodes,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return out.read_bytes(), info


# ----------------------------------------------------------------------------------------------- the gate
def check_kind(name: str, values: np.ndarray, declared: dict[str, str]) -> str:
    """How an output is compared: the task's :attr:`~shopfloor.core.task.Task.precision_checks`, else by name and
    shape: class probabilities/logits -> ``top1``; a ``score`` normalised so 0.5 is the decision threshold ->
    ``decision``; per-pixel maps (3 axes or more) -> ``report`` (measured, not gated); anything else -> ``value``."""
    if name in declared:
        if declared[name] not in CHECKS:
            raise ConfigError(f"precision check {declared[name]!r} for output {name!r}; use one of {', '.join(CHECKS)}")
        return declared[name]
    if name in ("probabilities", "logits") and values.ndim == 2 and values.shape[1] > 1:
        return "top1"
    if name == "score" and values.ndim == 1:
        return "decision"
    return "report" if values.ndim >= 3 else "value"


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    declared: dict[str, str] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-row disagreement of ``candidate`` (int8) with ``reference`` (fp32) and the figures of each output.

    ``top1``: the arg-max class differs. ``decision``: the score falls on the other side of 0.5 (also reported:
    Spearman rank correlation of the scores). ``value``: off by more than :data:`VALUE_TOLERANCE` of the reference's
    standard deviation. ``report``: share of elements whose 0.5 decision flips, not gated."""
    declared = declared or {}
    n = len(next(iter(reference.values())))
    disagree = np.zeros(n, dtype=bool)
    figures: dict[str, Any] = {}
    for name, ref in reference.items():
        ref = np.asarray(ref, np.float64)
        cand = np.asarray(candidate[name], np.float64)
        kind = check_kind(name, ref, declared)
        diff = np.abs(ref - cand).reshape(n, -1)
        entry: dict[str, Any] = {"check": kind, "max_abs_diff": float(diff.max()) if diff.size else 0.0}
        if kind == "top1":
            rows = ref.argmax(1) != cand.argmax(1)
        elif kind == "decision":
            rows = (ref >= 0.5) != (cand >= 0.5)
            entry["spearman"] = _spearman(ref, cand)
        elif kind == "value":
            scale = max(float(ref.std()), 1e-6)
            rows = diff.max(axis=1) > VALUE_TOLERANCE * scale
            entry["tolerance"] = VALUE_TOLERANCE * scale
        else:
            rows = np.zeros(n, dtype=bool)
            entry["flipped_element_share"] = float(np.mean((ref >= 0.5) != (cand >= 0.5)))
        if kind != "report":
            entry["disagreement"] = float(np.mean(rows))
            disagree |= rows
        figures[name] = entry
    return disagree, figures


def quantize_task(task: Task, data: Any, max_disagreement: float = 0.01, max_inputs: int = 512,
                  calibration_data: Any = None, seed: int = 0) -> dict[str, Any]:
    """Quantise ``task``'s graph to int8 and keep it only if it passes the gate (see module docstring).

    ``data``: inputs as ``predict`` takes them (files, folders, arrays), ideally the model's training/validation
    images; up to :data:`MAX_CALIBRATION` of them (at most half) calibrate and the rest are compared. With
    ``calibration_data`` that set calibrates and every input of ``data`` is compared. Sets ``state["quantization"]``
    (and on refusal a warning with the numbers) and returns it."""
    if not 0 <= max_disagreement < 1:
        raise ConfigError(f"max_disagreement must be a share in [0, 1), got {max_disagreement}")
    task.require_model()
    rng = np.random.default_rng(seed)
    rows = task.graph_feeds(collect_inputs(task, data, max_inputs, seed))
    if calibration_data is None:
        if len(rows) < MIN_INPUTS:
            raise DataError(f"{len(rows)} input(s) to calibrate and check int8 on; give at least {MIN_INPUTS} "
                            "(better a few hundred of the model's training or validation images)")
        order = rng.permutation(len(rows))
        n_cal = min(MAX_CALIBRATION, len(rows) // 2)
        calibration = [rows[i] for i in order[:n_cal]]
        validation = [rows[i] for i in order[n_cal:]]
    else:
        calibration = task.graph_feeds(collect_inputs(task, calibration_data, MAX_CALIBRATION, seed))
        validation = rows
        if not calibration or not validation:
            raise DataError("int8 needs calibration inputs and inputs to check it on; both sets must be non-empty")
    if task._onnx_bytes is None:
        task.export()
    fp32 = task._onnx_bytes
    assert fp32 is not None
    int8, layers = quantize_graph(fp32, calibration)
    disagree, figures = compare_outputs(run_rows(fp32, validation), run_rows(int8, validation),
                                        task.precision_checks)
    share = float(np.mean(disagree))
    accepted = share <= max_disagreement
    summary = (f"int8 and fp32 disagree on {int(disagree.sum())} of {len(validation)} validation inputs "
               f"({share:.2%}; gate {max_disagreement:.2%})")
    record = {"accepted": accepted, "disagreement": share, "max_disagreement": max_disagreement,
              "n_calibration": len(calibration), "n_validation": len(validation), "outputs": figures,
              "layers": layers, "format": "QDQ, weights int8 per channel, activations uint8 (MinMax)",
              "summary": summary}
    task.state["warnings"] = [w for w in task.state.get("warnings", []) if not w.startswith(REFUSED)]
    task.state["quantization"] = record
    task._int8_bytes = int8 if accepted else None
    task.reset_runtime()
    if not accepted:
        task.note_warning(f"{REFUSED}: {summary}; the fp32 graph is kept. Calibrate on more (and more typical) "
                          "images, or accept more disagreement with --max-disagreement")
    return record
