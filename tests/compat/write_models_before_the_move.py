"""Run by ``test_models_from_before_the_move.py`` with the code of an earlier commit (module paths of that time):
train one tiny model per task, save it, and record its predictions, so the current code can be checked against
what that code saved and predicted. Usage: ``python write_models_before_the_move.py OLD_SRC NEW_SRC OUT``."""

import json
import sys
from pathlib import Path

old_src, new_src, out = (Path(a).resolve() for a in sys.argv[1:4])
sys.path = [str(old_src)] + [p for p in sys.path if p and Path(p).resolve() != new_src]

import shopfloor.tasks as tasks  # noqa: E402

assert Path(tasks.__file__).resolve().is_relative_to(old_src), tasks.__file__

from shopfloor.data.degradation_simulator import write_degradation_dataset  # noqa: E402
from shopfloor.data.synthetic_images import make_anomaly_dataset, make_defect_classes  # noqa: E402
from shopfloor.data.synthetic_tabular import make_process_records  # noqa: E402
from shopfloor.data.vibration_simulator import write_bearing_dataset  # noqa: E402

QUIET = {"progress": False, "device": "cpu"}


def fit(name: str, train_data, inputs: list, **config) -> None:
    task = tasks.get_task(name)(**config)
    task.fit(str(train_data), out_dir=out / name / "model")
    predictions = task.predict([str(x) for x in inputs])
    record = {"inputs": [str(x) for x in inputs], "predictions": predictions}
    (out / name / "predictions.json").write_text(json.dumps(record, default=str))


def main() -> None:
    images = make_defect_classes(out / "defect-classification" / "train", n_per_class=8, size=64, seed=0)
    probes = sorted(Path(images).rglob("*.png"))[::6]
    fit("defect-classification", images, probes, image_size=64, feature_views=1,
        training={**QUIET, "epochs": 2, "batch_size": 16})

    good = make_anomaly_dataset(out / "anomaly-detection" / "data", n_train=12, n_test_good=2, n_test_per_defect=1,
                                size=64, seed=1)
    fit("anomaly-detection", good, sorted((Path(good) / "test").rglob("*.png")), image_size=64,
        training={**QUIET, "batch_size": 8})

    paths = write_degradation_dataset(out / "rul" / "data", n_train=10, n_test=3, seed=3, life_range=(50, 80))
    fit("rul", paths["train"], [paths["recent"]], window=15, ensemble=2,
        data={"setting_columns": ["setting_1", "setting_2"]}, training={**QUIET, "epochs": 1, "batch_size": 64})

    signals = write_bearing_dataset(out / "fault-diagnosis" / "data", recordings_per_class=1, duration_s=1.0, seed=0)
    fit("fault-diagnosis", signals, sorted(Path(signals).rglob("*.npy"))[:3], sampling_rate=12_000,
        segment_length=512, train_stride=64, eval_stride=256, training={**QUIET, "epochs": 1, "batch_size": 64})

    records = make_process_records(900, seed=0)
    (out / "failure-prediction").mkdir(parents=True, exist_ok=True)
    records.iloc[:800].to_csv(out / "failure-prediction" / "train.csv", index=False)
    records.iloc[800:].to_csv(out / "failure-prediction" / "probe.csv", index=False)
    fit("failure-prediction", out / "failure-prediction" / "train.csv", [out / "failure-prediction" / "probe.csv"],
        folds=2, training={**QUIET, "epochs": 2, "batch_size": 128})


main()
