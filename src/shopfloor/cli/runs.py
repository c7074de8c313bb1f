"""What the longer commands do behind their options: loading a model directory, a task's option list, ``predict
--engine ray`` and ``stream --opcua``. Errors caused by input go through :func:`user_errors`."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from shopfloor.core.errors import ShopfloorError

from .output import fail, say


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors caused by input become one ``error:`` line and exit code 2, never a traceback."""
    try:
        yield
    except ShopfloorError as exc:
        fail(str(exc))


def task_help(task_name: str) -> None:
    """Every option of one task, with type, default and description, as plain text on stdout."""
    import textwrap

    from shopfloor.core.config import describe_options
    from shopfloor.core.registry import get_task

    task_cls = get_task(task_name)
    lines = [f"Options of {task_name} (shopfloor train {task_name} --data D --out M [options]):"]
    group = None
    for row in describe_options(task_cls.Config):
        if row["group"] != group:
            group = row["group"]
            lines.append(f"\n [{group}]" if group else "")
        lines.append(f"  {row['option']} {row['type']}  (default {row['default']})")
        if row["help"]:
            lines.extend(textwrap.wrap(row["help"], width=100, initial_indent="      ", subsequent_indent="      "))
    sys.stdout.write("\n".join(lines) + "\n")



def load_model(model_dir: Path, device: str, strict: bool = False, quiet: bool = False, key_file: Path | None = None,
          precision: str = "auto"):
    from shopfloor.core.registry import load

    task = load(model_dir, device=device, strict=strict, key_file=key_file, precision=precision)
    if quiet:
        task.training.progress = False
    return task


def check_served_models(model_dirs: List[str], precision: str) -> List[List[str]]:
    """``serve``'s models as ``[name, dir]`` pairs (``NAME=DIR`` or ``DIR``, named after its folder), each refused
    here, with a message, before the server starts: not a model directory, or (``precision`` other than auto) an
    unknown precision or a missing int8 graph."""
    from shopfloor.core.artifact import read_artifact

    named = [item.split("=", 1) if "=" in item else [Path(item).resolve().name, item] for item in model_dirs]
    for _, model_dir in named:
        read_artifact(model_dir)
        if precision != "auto":
            load_model(Path(model_dir), "cpu", False, True, None, precision)
    return named


def predict_on_ray_engine(model_dir: Path, inputs: List[Path], address: Optional[str], explain: bool, out: Optional[Path],
                    skip_bad: bool, device: str, precision: str, strict: bool, key_file: Optional[Path], quiet: bool):
    """``predict --engine ray``: the rows and the task name (see :mod:`shopfloor.plant.ray_engine`); ``--device
    auto`` runs the CPU provider on the workers (Ray actors hold CPUs, not GPUs)."""
    from shopfloor.core.registry import load
    from shopfloor.plant.ray_engine import predict_on_ray

    if explain or out is not None:
        fail("--explain and --out write files on the Ray workers; run them with --engine local")
    name = load(model_dir, device="cpu", key_file=key_file).name
    rows = predict_on_ray(model_dir, [str(p) for p in inputs], address=address,
                          device="cpu" if device == "auto" else device, precision=precision, strict=strict,
                          key_file=key_file, skip_bad=skip_bad, progress=not quiet)
    return rows, name


def stream_opcua(model_dir: Path, endpoint: str, nodes: List[str], every: str, constants: List[str],
                  write: List[str], publish_mqtt: Optional[str], publish: Optional[str], client_id: Optional[str],
                  db: str, max_samples: Optional[int], device: str, strict: bool, key_file: Optional[Path]) -> None:
    """`stream --opcua`: poll the nodes, predict, record, write back and/or publish (see shopfloor.plant.opcua)."""
    from shopfloor.plant.opcua import OpcuaConfig, OpcuaStream
    from shopfloor.plant.records import RecordStore

    with user_errors():
        config = OpcuaConfig(endpoint=endpoint, nodes=list(nodes), every=every, constants=list(constants),
                             write=list(write), mqtt=publish_mqtt, publish=publish or "results/opcua/{model}",
                             client_id=client_id)
        task = load_model(model_dir, device, strict, True, key_file)
        store = RecordStore(db)
        try:
            stream = OpcuaStream(task, store, config)
            outputs = [f"{len(config.write)} node(s)"] if config.write else []
            outputs += [f"MQTT {publish_mqtt}"] if publish_mqtt else []
            say(f"streaming {task.name} from {stream.source} ({len(config.nodes)} node(s) every {config.every:g} s)"
                f" -> records{''.join(', ' + o for o in outputs)}")
            try:
                stats = stream.run(max_samples=max_samples)
            except KeyboardInterrupt:
                stats = None
        finally:
            store.close()
    if stats is not None:
        say(f"samples {stats.samples}, recorded {stats.recorded}, duplicates {stats.duplicates}, skipped "
            f"{stats.skipped}, refused {stats.refused}, written {stats.written}, published {stats.published}, "
            f"reconnects {stats.reconnects}")
