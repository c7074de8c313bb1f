"""The `shopfloor` command line: a thin Typer layer over the task API.

stdout carries only results (``predict``: JSON, JSONL or CSV; ``info --json``; ``--json -``); tables, notes,
warnings and progress go to stderr. Errors caused by input are one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from shopfloor.core.quiet import is_verbose  # noqa: E402

from .output import (  # noqa: E402
    RESULT_FORMATS,
    check_output_dir,
    check_output_file,
    fail,
    metrics_table,
    parse_devices,
    rows_table,
    say,
    setup_console,
    show,
    show_metrics,
    write_result,
)
from .runs import (check_served_models, load_model, predict_on_ray_engine, stream_opcua, task_help,  # noqa: E402
                   user_errors)
from .recommend import recommend as recommend_command  # noqa: E402
from .check import check as check_command  # noqa: E402
from .suggest import fold_in_labels, suggest as suggest_command  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deep learning for the factory floor: train, evaluate, explain and deploy.")
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
app.command(name="recommend")(recommend_command)
app.command(name="check")(check_command)
app.command(name="suggest")(suggest_command)
VERBOSE = typer.Option(False, "--verbose", "-v", help="also show library logs and warnings (Lightning banners and "
                       "tips, deprecations) and tracebacks of internal errors")
QUIET = typer.Option(False, "--quiet", "-q", help="only results, warnings and errors (no tables or notes)")
STRICT = typer.Option(False, "--strict", help="refuse inputs far outside the training ranges instead of warning")
DEVICE = typer.Option("auto", help="auto | cpu | cuda | tensorrt | openvino (openvino:GPU, openvino:NPU): the ONNX "
                      "Runtime execution provider; one that is not installed is an error saying what to install")
PRECISION = typer.Option("auto", help="auto | fp32 | int8: auto runs the int8 graph when `shopfloor optimize --int8` "
                         "added one that passed its accuracy gate")
KEY_FILE = typer.Option(None, "--key-file", help="refuse the model directory unless its signature verifies with "
                        "this key (default: $SHOPFLOOR_KEY_FILE; see `shopfloor sign`)")


def _version() -> str:
    from shopfloor import __version__

    return __version__


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"shopfloor {_version()}\n")
        raise typer.Exit(0)


@app.callback()
def _options(verbose: bool = VERBOSE, quiet: bool = QUIET,
             version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                          help="print the version and exit")) -> None:
    """Deep learning for the factory floor: train, evaluate, explain and deploy."""
    setup_console(verbose, quiet, fresh=True)


@app.command(context_settings={**EXTRA, "help_option_names": []})
def train(
    ctx: typer.Context,
    task: Optional[str] = typer.Argument(None, help="task name, e.g. defect-classification (see `shopfloor tasks`)"),
    data: Optional[Path] = typer.Option(None, "--data", help="training data (layout depends on the task)"),
    out: Optional[Path] = typer.Option(None, "--out", help="model directory to write"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with task options"),
    epochs: Optional[int] = typer.Option(None, help="maximum epochs"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="input size for image tasks"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    model: Optional[str] = typer.Option(None, help="model architecture (task specific)"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda"),
    devices: Optional[str] = typer.Option(None, help="devices per node (Lightning): a number, auto, or -1"),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="nodes for multi-node DDP"),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy, e.g. ddp"),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="sign the written model directory with this "
                                            "key file (see `shopfloor sign`)"),
    add_labels: Optional[Path] = typer.Option(None, "--add-labels", help="a CSV (path,label) filled in from "
                                              "`shopfloor suggest`: these items join the training data"),
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
    show_help: bool = typer.Option(False, "--help", "-h", help="show this help; with TASK, every option of TASK"),
) -> None:
    """Train TASK on --data and write a model directory to --out. Any task option works as --name value
    (`shopfloor train TASK --help` lists them)."""
    setup_console(verbose, quiet)
    from shopfloor.core.config import load_yaml, parse_cli_overrides
    from shopfloor.core.registry import get_task

    with user_errors():
        if show_help or task is None:
            sys.stdout.write(ctx.get_help() + "\n")
            if task is not None:
                task_help(task)
            raise typer.Exit(0)
        task_cls = get_task(task)
        if (data is None and not task_cls.data_optional) or out is None:
            raise_missing = "--out" if out is None else "--data"
            fail(f"train needs {raise_missing}; see `shopfloor train {task} --help`")
        check_output_dir(out, "--out")
        named = {"epochs": epochs, "image_size": image_size, "seed": seed, "model": model, "device": device,
                 "devices": parse_devices(devices), "num_nodes": num_nodes, "strategy": strategy}
        flags = [item for key, value in named.items() if value is not None for item in (f"--{key}", str(value))]
        if quiet and "--progress" not in ctx.args:
            flags += ["--progress", "false"]
        overrides = parse_cli_overrides(flags + list(ctx.args), task_cls.Config)
        instance = task_cls(load_yaml(config), **overrides)
        if key_file is not None:
            from shopfloor.core.artifact import read_key

            read_key(key_file)  # a bad key file is refused before training, not after
        fit_data = None if data is None else fold_in_labels(task_cls, data, add_labels) if add_labels else str(data)
        instance.fit(fit_data, out_dir=out)
        if key_file is not None and getattr(instance, "is_global_zero", True):
            from shopfloor.core.artifact import sign_artifact

            sign_artifact(out, key_file)
    if getattr(instance, "is_global_zero", True):
        show(metrics_table(instance.metrics, f"{task}: validation"))
        for warning in instance.state.get("warnings", []):
            say(f"warning kept in the model: {warning}", style="yellow")
        say(f"model written to {out}", style="green")


@app.command(context_settings=EXTRA)
def evaluate(
    ctx: typer.Context,
    model_dir: Path = typer.Argument(..., help="model directory written by `shopfloor train`"),
    data: Optional[Path] = typer.Option(None, "--data", help="labelled test data (tasks that evaluate in a "
                                        "simulator, e.g. control, take none)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write metrics as JSON here (- for stdout)"),
    report: Optional[Path] = typer.Option(None, "--report", help="write report.html and PNGs here"),
    device: str = DEVICE,
    precision: str = PRECISION,
    strict: bool = STRICT,
    key_file: Optional[Path] = KEY_FILE,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Score a model on labelled data through ONNX Runtime; print, and optionally write JSON and a report."""
    setup_console(verbose, quiet)
    from shopfloor.core.config import build_config, parse_cli_overrides

    with user_errors():
        check_output_file(json_path, "--json")
        check_output_dir(report, "--report")
        task = load_model(model_dir, device, strict, quiet, key_file, precision)
        if data is None and not task.data_optional:
            fail(f"evaluate needs --data for {task.name} models")
        options = build_config(task.EvaluateOptions, parse_cli_overrides(list(ctx.args), task.EvaluateOptions))
        metrics = task.evaluate(None if data is None else str(data), report_dir=report, **options.model_dump())
    show_metrics({k: v for k, v in metrics.items() if k != "confusion_matrix"}, f"{task.name}: test")
    if json_path is not None:
        write_result(metrics, json_path)
    if report is not None:
        say(f"report: {metrics.get('report', report / 'report.html')}", style="green")


@app.command()
def adapt(
    model_dir: Path = typer.Argument(..., help="model directory written by `shopfloor train`"),
    data: List[Path] = typer.Option(..., "--data", help="unlabelled recordings of the new operating condition "
                                    "(folders or files; labels are never read)"),
    out: Path = typer.Option(..., "--out", help="model directory to write (the source model is kept)"),
    method: str = typer.Option("adabn", help="adaptation method (adabn)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable inputs instead of refusing"),
    key_file: Optional[Path] = KEY_FILE,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Adapt a model to a new operating condition from unlabelled data (no retraining, no labels) and write the
    adapted model to --out; evaluate it like any model."""
    setup_console(verbose, quiet)
    with user_errors():
        if Path(out).resolve() == Path(model_dir).resolve():
            fail("--out must differ from MODEL_DIR: the model of the training condition is kept")
        check_output_dir(out, "--out")
        task = load_model(model_dir, "auto", False, quiet, key_file)
        if not callable(getattr(task, "adapt", None)):
            fail(f"{task.name} models cannot be adapted without labels; `shopfloor adapt` is for fault-diagnosis")
        task.adapt([str(p) for p in data], out_dir=out, method=method, skip_bad=skip_bad)
        record = task.state["adaptation"]
    say(f"adapted ({record['method']}) on {record['n_recordings']} recording(s), {record['n_segments']} segments; "
        f"model written to {out}", style="green")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="model directory"),
    inputs: Optional[List[Path]] = typer.Argument(None, help="input files or folders (a generator takes none)"),
    n: Optional[int] = typer.Option(None, "--n", help="generators (defect-synthesis): images to make per class"),
    class_name: Optional[str] = typer.Option(None, "--class", help="generators: the class to make (default: all)"),
    fmt: str = typer.Option("json", "--format", help=f"results on stdout as {' | '.join(RESULT_FORMATS)}"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the results as JSON to this file instead"),
    explain: bool = typer.Option(False, "--explain", help="also write explanations (e.g. Grad-CAM overlays)"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for explanation / map / table files "
                                       "(nothing is written into the model directory)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable inputs (listed) instead of "
                                  "refusing the batch"),
    engine: str = typer.Option("local", "--engine", help="local | ray: score on a Ray cluster (large archives; "
                               "files and folders every node can read; pip install 'shopfloor[ray]')"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="with --engine ray: the cluster "
                                              "(ray://host:10001 or auto); default: a local Ray instance"),
    device: str = DEVICE,
    precision: str = PRECISION,
    strict: bool = STRICT,
    key_file: Optional[Path] = KEY_FILE,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Predict on new inputs through the exported ONNX model; results on stdout, everything else on stderr."""
    setup_console(verbose, quiet)
    with user_errors():
        if fmt not in RESULT_FORMATS:
            fail(f"unknown --format {fmt!r}; choose one of: {', '.join(RESULT_FORMATS)}")
        check_output_file(json_path, "--json")
        check_output_dir(out, "--out")
        if engine == "ray":
            if not inputs or n is not None or class_name is not None:
                fail("--engine ray scores input files or folders; give some, and run generators (--n, --class) "
                     "with --engine local")
            results, name = predict_on_ray_engine(model_dir, inputs, ray_address, explain, out, skip_bad, device, precision,
                                            strict, key_file, quiet)
        elif engine != "local":
            fail(f"unknown --engine {engine!r}; choose local or ray")
        else:
            if ray_address is not None:
                fail("--ray-address needs --engine ray")
            task = load_model(model_dir, device, strict, quiet, key_file, precision)
            options = {"skip_bad": True} if skip_bad else {}
            from .predict_options import predict_options

            options.update(predict_options(task, {"n": n, "class_name": class_name}, bool(inputs)))
            results = task.predict([str(p) for p in inputs or []], out_dir=out, explain=explain, **options)
            name = task.name
    skipped = sum(1 for r in results if r.get("skipped"))
    show(rows_table(results, f"{name}: predictions"))
    flagged = sum(1 for r in results if r.get("out_of_range"))
    say(f"{len(results) - skipped} prediction(s)" + (f", {skipped} input(s) skipped" if skipped else "")
        + (f", {flagged} out of the training range" if flagged else ""))
    write_result(results, json_path, "json" if json_path is not None else fmt)


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="model directory"),
    fmt: str = typer.Option("onnx", "--format", help="export format (onnx)"),
    output: Optional[Path] = typer.Option(None, "--output", help="file to write (default: ./<model dir name>.onnx)"),
    key_file: Optional[Path] = KEY_FILE,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Re-export the model from its safetensors weights and check it against the stored ONNX graph."""
    setup_console(verbose, quiet)
    from shopfloor.core.export import export_artifact

    path = output if output is not None else Path.cwd() / f"{Path(model_dir).resolve().name}.{fmt}"
    with user_errors():
        check_output_file(path, "--output")
        result = export_artifact(model_dir, fmt, path, key_file=key_file)
    say(f"exported {result['path']} (max |difference| vs stored graph: {result['max_abs_diff']:.2e})",
        style="green")


@app.command()
def optimize(
    model_dir: Path = typer.Argument(..., help="model directory (the int8 graph is added to it)"),
    int8: bool = typer.Option(False, "--int8", help="int8 static quantisation (QDQ, per channel) behind an "
                              "accuracy gate"),
    data: List[Path] = typer.Option(..., "--data", help="inputs like the deployed ones, ideally the model's training "
                                    "or validation images (folders are searched): part calibrates, the rest checks"),
    calibration: Optional[List[Path]] = typer.Option(None, "--calibration", help="calibrate on these instead; every "
                                                     "--data input is then checked"),
    max_disagreement: float = typer.Option(0.01, "--max-disagreement", min=0.0, max=0.99, help="refuse the int8 "
                                           "graph when it disagrees with fp32 on more than this share of the checked "
                                           "inputs (classes: top-1; anomaly scores: decisions)"),
    max_inputs: int = typer.Option(512, "--max-inputs", min=4, help="inputs read at most (a seeded sample)"),
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="verify the model directory with this key "
                                            "and sign it again after the change"),
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Make a model faster on the CPU: `--int8` adds an int8 graph (model.int8.onnx, hashed in the manifest) when it
    agrees with the fp32 graph on the --data inputs; predict, evaluate and serve then use it (--precision fp32 to
    opt out). A refused graph is not written; the fp32 one stays, with a note giving the numbers."""
    setup_console(verbose, quiet)
    with user_errors():
        if not int8:
            fail("nothing to do: give --int8 (int8 static quantisation behind an accuracy gate)")
        if key_file is not None:
            from shopfloor.core.artifact import read_key

            read_key(key_file)
        task = load_model(model_dir, "cpu", False, quiet, key_file, "fp32")
        signed = task._artifact is not None and task._artifact.signature != "unsigned"
        record = task.quantize([str(p) for p in data], max_disagreement=max_disagreement, max_inputs=max_inputs,
                               calibration_data=[str(p) for p in calibration] if calibration else None,
                               out_dir=model_dir)
        if key_file is not None:
            from shopfloor.core.artifact import sign_artifact

            sign_artifact(model_dir, key_file)
    layers = record["layers"]
    say(f"{record['summary']}; {layers['quantized']} of {layers['layers']} layers int8, calibrated on "
        f"{record['n_calibration']} input(s)")
    if record["accepted"]:
        say(f"int8 graph written to {Path(model_dir) / 'model.int8.onnx'}; used by default (--precision fp32 to "
            "opt out)", style="green")
    else:
        say("int8 graph refused: the fp32 graph is kept (the note is stored in the model)", style="yellow")
    if signed and key_file is None:
        say("the model directory was signed: the change removed the signature; sign it again with `shopfloor sign`",
            style="yellow")


@app.command()
def info(
    model_dir: Path = typer.Argument(..., help="model directory"),
    as_json: bool = typer.Option(False, "--json", help="print what the model holds as JSON on stdout"),
    key_file: Optional[Path] = KEY_FILE,
) -> None:
    """Show what a model directory holds: task, classes, preprocessing, metrics, versions; verifies hashes."""
    import json

    from shopfloor.core.artifact import read_artifact

    with user_errors():
        artifact = read_artifact(model_dir, key_file=key_file)
    m = artifact.manifest
    state = m.get("state", {})
    if as_json:
        keys = ("task", "created", "format_version", "data_fingerprint", "config", "state", "metrics", "versions",
                "files")
        write_result({**{k: m.get(k) for k in keys}, "warnings": state.get("warnings", []), "verified": True,
                      "signature": artifact.signature}, None)
        return
    table = Table(title=f"{model_dir}", show_header=False)
    table.add_row("task", m["task"])
    table.add_row("created", m.get("created", ""))
    table.add_row("data fingerprint", str(m.get("data_fingerprint")))
    for key, value in state.items():
        if key == "warnings":
            continue
        text = json.dumps(value)
        table.add_row(key, text if len(text) < 200 else text[:197] + "...")
    for key, value in m.get("metrics", {}).items():
        table.add_row(f"metric {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    table.add_row("files", ", ".join(m.get("files", {})))
    table.add_row("signature", artifact.signature)
    show(table)
    for warning in state.get("warnings", []):
        say(f"warning: {warning}", style="yellow")
    say("all file hashes verified", style="green")


@app.command()
def sign(
    model_dir: Path = typer.Argument(..., help="model directory to sign"),
    key_file: Path = typer.Option(..., "--key-file", help="secret key file (at least 16 bytes, e.g. "
                                  "`head -c 32 /dev/urandom > model.key`)"),
) -> None:
    """Sign a model directory (HMAC-SHA256 of its manifest, which lists every file's SHA-256); loading with
    --key-file or $SHOPFLOOR_KEY_FILE then refuses any change made after signing."""
    from shopfloor.core.artifact import sign_artifact

    with user_errors():
        path = sign_artifact(model_dir, key_file)
    say(f"signed: {path}", style="green")


@app.command()
def serve(
    model_dirs: List[str] = typer.Argument(..., help="model directories to serve, each as DIR (served under its "
                                           "folder name) or NAME=DIR"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback needs --api-key-file"),
    port: int = typer.Option(8000, help="TCP port"),
    db: str = typer.Option("sqlite:///shopfloor.db", help="record store: sqlite:///file.db or postgresql://..."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="accepted API keys, one per line "
                                                "(in clear, hashed at start, or sha256:<hex>); clients send "
                                                "'Authorization: Bearer <key>'"),
    workers: int = typer.Option(1, min=1, help="server processes"),
    max_upload_mb: float = typer.Option(32.0, "--max-upload-mb", min=0.01, help="largest request body"),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="micro-batch size (inputs per model call)"),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, help="longest wait for a micro-batch to fill"),
    runners: int = typer.Option(2, "--runners", min=1, max=8, help="micro-batches of one model in flight at once "
                                "(the next is scored while one is finished)"),
    inputs_dir: Optional[Path] = typer.Option(None, "--inputs-dir", help="keep each input (and heatmap) here, "
                                              "content-addressed"),
    keep_inputs: Optional[int] = typer.Option(None, "--keep-inputs", min=1, help="retention: stored inputs kept"),
    device: str = DEVICE,
    precision: str = PRECISION,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Serve models over HTTP (FastAPI): POST /v1/models/NAME/predict, GET /v1/models, /v1/records, /healthz,
    /readyz, /metrics, docs at /docs. Every prediction is recorded."""
    setup_console(verbose, quiet)
    import uvicorn

    from shopfloor.plant.server import SETTINGS_ENV, ServerSettings, create_app, is_loopback, read_api_key_file

    with user_errors():
        keys = read_api_key_file(api_key_file) if api_key_file is not None else []
        if not keys and not is_loopback(host):
            fail(f"binding to {host} makes the server reachable from the network: give --api-key-file "
                 "(clients then send 'Authorization: Bearer <key>'), or bind to 127.0.0.1")
        named = check_served_models(model_dirs, precision)
        settings = ServerSettings(model_dirs=[Path(d).resolve() for _, d in named], model_names=[n for n, _ in named],
                                  db=db, api_key_hashes=keys, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                                  max_batch=max_batch, max_wait_ms=max_wait_ms, runners=runners, device=device,
                                  precision=precision, inputs_dir=inputs_dir, keep_inputs=keep_inputs)
    say(f"serving {', '.join(n for n, _ in named)} on http://{host}:{port} (docs at /docs)")
    log_level = "info" if is_verbose() else "warning"
    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run("shopfloor.plant.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level)
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


@app.command()
def stream(
    model_dir: Path = typer.Argument(..., help="model directory"),
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help="read MQTT messages from this broker: "
                                       "mqtt://[user:pass@]host:port"),
    opcua: Optional[str] = typer.Option(None, "--opcua", help="poll OPC UA nodes on this server instead: "
                                        "opc.tcp://host:port (with --nodes, --every)"),
    subscribe: List[str] = typer.Option(["plant/+/camera/+"], "--subscribe", help="topic filter (repeatable)"),
    publish: Optional[str] = typer.Option(None, "--publish", help="result topic; with --mqtt {topic} is the input "
                                          "topic (default results/{topic}); with --opcua {model} is the model's name "
                                          "(default results/opcua/{model}, sent with --publish-mqtt)"),
    group: Optional[str] = typer.Option(None, "--group", help="shared-subscription group: N workers with the same "
                                        "group share the messages ($share/GROUP/filter)"),
    client_id: Optional[str] = typer.Option(None, "--client-id", help="stable client id (persistent session)"),
    nodes: List[str] = typer.Option([], "--nodes", help="OPC UA: input variables, 'COLUMN=NODE_ID,...' (a bare "
                                    "NODE_ID takes its BrowseName as column), e.g. 'Torque [Nm]=ns=2;s=Mill.Torque'"),
    every: str = typer.Option("1s", "--every", help="OPC UA: polling period (1s, 500ms, 2min)"),
    set_: List[str] = typer.Option([], "--set", help="OPC UA: constant column, COLUMN=VALUE (e.g. Type=L, unit=7)"),
    write: List[str] = typer.Option([], "--write", help="OPC UA: write result fields back, 'FIELD=NODE_ID,...' "
                                    "(label, score, record_id or a field of the result)"),
    publish_mqtt: Optional[str] = typer.Option(None, "--publish-mqtt", help="OPC UA: also publish each result to "
                                               "this MQTT broker"),
    db: str = typer.Option("sqlite:///shopfloor.db", help="record store: sqlite:///file.db or postgresql://..."),
    max_messages: Optional[int] = typer.Option(None, "--max-messages", min=1, help="stop after this many"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="OPC UA: stop after this many "
                                              "new samples"),
    device: str = DEVICE,
    strict: bool = STRICT,
    key_file: Optional[Path] = KEY_FILE,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Score a stream on the line and record every result once. --mqtt: messages at QoS 1 (acknowledged after the
    record is committed; a redelivery never makes a second record), each result published with its record id.
    --opcua: node values read every --every, each new sample predicted, recorded (a re-read is not recorded twice),
    written back to --write nodes and/or published to --publish-mqtt."""
    setup_console(verbose, quiet)
    if (mqtt is None) == (opcua is None):
        fail("give exactly one input: --mqtt mqtt://HOST:PORT (messages) or --opcua opc.tcp://HOST:PORT (node "
             "values, with --nodes)")
    other = {"--group": group, "--max-messages": max_messages} if opcua else {
        "--nodes": nodes, "--set": set_, "--write": write, "--publish-mqtt": publish_mqtt, "--max-samples": max_samples}
    misplaced = [name for name, value in other.items() if value]
    if misplaced:
        fail(f"{', '.join(misplaced)} {'is' if len(misplaced) == 1 else 'are'} for "
             f"{'--mqtt' if opcua else '--opcua'} streams; leave {'it' if len(misplaced) == 1 else 'them'} out")
    if opcua is not None:
        stream_opcua(model_dir, opcua, nodes, every, set_, write, publish_mqtt, publish, client_id, db,
                      max_samples, device, strict, key_file)
        return
    from shopfloor.plant.mqtt import MqttStream, StreamConfig
    from shopfloor.plant.records import RecordStore

    publish = publish or "results/{topic}"
    with user_errors():
        task = load_model(model_dir, device, strict, True, key_file)
        options = {"client_id": client_id} if client_id else {}
        config = StreamConfig(broker=mqtt, subscribe=list(subscribe), publish=publish, group=group, **options)
        store = RecordStore(db)
        say(f"streaming {task.name} from {mqtt} ({', '.join(subscribe)}) -> {publish}")
        try:
            stats = MqttStream(task, store, config).run(max_messages=max_messages)
        except KeyboardInterrupt:
            stats = None
        finally:
            store.close()
    if stats is not None:
        say(f"received {stats.received}, recorded {stats.recorded}, duplicates {stats.duplicates}, "
            f"refused {stats.refused}, published {stats.published}")


records_app = typer.Typer(no_args_is_help=True, help="The prediction records written by serve and stream.")
app.add_typer(records_app, name="records")


@records_app.command("export")
def records_export(
    out: Path = typer.Option(..., "--out", help="file to write"),
    db: str = typer.Option("sqlite:///shopfloor.db", help="record store URL"),
    fmt: str = typer.Option("csv", "--format", help="csv | parquet"),
    since: Optional[datetime] = typer.Option(None, help="only records at or after this time (ISO 8601)"),
    until: Optional[datetime] = typer.Option(None, help="only records before this time"),
    model: Optional[str] = typer.Option(None, help="only this model's records"),
) -> None:
    """Export prediction records to CSV or Parquet."""
    from shopfloor.plant.records import export_records

    with user_errors():
        check_output_file(out, "--out")
        n = export_records(db, out, fmt=fmt, since=since, until=until, model=model)
    say(f"wrote {n} record(s) to {out}", style="green")


@app.command()
def tasks() -> None:
    """List the available tasks and their options (`shopfloor train TASK --help` for types and defaults)."""
    from shopfloor.core.registry import get_task, task_names

    with user_errors():
        out = Console(highlight=False)
        for name in task_names():
            cls = get_task(name)
            out.print(f"[bold]{escape(name)}[/]: {escape((cls.__doc__ or '').strip().splitlines()[0])}")
            fields = ", ".join(f"--{f.replace('_', '-')}" for f in cls.Config.model_fields if f != "training")
            out.print(f"  options: {fields}", markup=False)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="folder for data, models and reports"),
    only: Optional[List[str]] = typer.Option(None, "--only", help="run only these tasks"),
    line: bool = typer.Option(True, "--line/--no-line", help="also serve the models and feed them a simulated line"),
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Run every task end to end on built-in synthetic data and print where the reports are."""
    setup_console(verbose, quiet)
    from shopfloor.demo import run_demo

    with user_errors():
        check_output_dir(out, "--out")
        summaries = run_demo(out, only, line=line)
    table = Table(title="shopfloor demo (synthetic data; test figures on held-out synthetic data)")
    table.add_column("task")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for s in summaries:
        figures = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()
                            if isinstance(v, (float, int)) and not isinstance(v, bool) and k not in ("seconds", "n_test"))
        table.add_row(s["task"], figures, f"{s['seconds']:.0f}")
    show(table)
    for s in summaries:
        model = f"  model: {s['model']}" if s.get("model") else ""
        say(f"{s['task']} report: {s.get('report')}{model}")


def main() -> None:  # pragma: no cover - the console script
    """The console script: like ``app()``, but an unexpected internal error is one message, not a traceback
    (``--verbose`` shows the traceback for a bug report)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the console script
        if is_verbose() or "--verbose" in sys.argv or "-v" in sys.argv:
            raise
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n"
                         "This is a bug in shopfloor, not in your input: run again with --verbose for the "
                         "traceback and report it.\n")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
