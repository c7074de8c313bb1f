"""`predict --engine ray`: the same rows as the local engine, scored by Ray Data actors on a local Ray instance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra (part of the dev extra)")

from shopfloor.core.errors import DataError  # noqa: E402
from shopfloor.core.registry import load  # noqa: E402
from shopfloor.inspection.anomaly.task import AnomalyDetection  # noqa: E402
from shopfloor.inspection.synthetic import make_anomaly_dataset  # noqa: E402
from shopfloor.plant.ray_engine import list_inputs, predict_on_ray  # noqa: E402

SMALL = dict(auto=False, image_size=64, feature_blocks=[2], max_bank_size=64,
             training={"batch_size": 8, "progress": False})


@pytest.fixture(scope="module")
def model_and_folder(tmp_path_factory):
    root = make_anomaly_dataset(tmp_path_factory.mktemp("ray_ad"), n_train=12, n_test_good=6, n_test_per_defect=4,
                                size=64, seed=3)
    model = tmp_path_factory.mktemp("ray_model")
    AnomalyDetection(**SMALL).fit(root, out_dir=model)
    folder = tmp_path_factory.mktemp("archive")
    for kind in sorted(p.name for p in (root / "test").iterdir()):
        for f in sorted((root / "test" / kind).iterdir()):
            shutil.copy(f, folder / f"{kind}_{f.name}")
    return model, folder


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_rows_equal_the_local_engine(model_and_folder, local_ray):
    model, folder = model_and_folder
    local = load(model, device="cpu").predict([str(folder)])
    # batches of 5 over 2 actors: several batches per actor, the last one short
    remote = predict_on_ray(model, [folder], batch_size=5, workers=2)
    assert len(remote) == len(local) == 18
    assert [r["input"] for r in remote] == [r["input"] for r in local]
    for a, b in zip(remote, local):
        assert a.keys() == b.keys()
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-6)
        assert a["anomalous_area"] == pytest.approx(b["anomalous_area"], abs=1e-6)
    assert {r["label"] for r in remote} == {"good", "anomalous"}  # neither all good nor all flagged


def test_ray_engine_refuses_bad_files_unless_skipped(model_and_folder, local_ray, tmp_path):
    model, folder = model_and_folder
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    (mixed / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        predict_on_ray(model, [mixed], batch_size=8, workers=1)
    rows = predict_on_ray(model, [mixed], batch_size=8, workers=1, skip_bad=True)
    skipped = [r for r in rows if r.get("skipped")]
    assert len(rows) == 19 and [Path(r["input"]).name for r in skipped] == ["broken.png"]


def test_inputs_are_listed_like_the_local_engine(tmp_path):
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [Path(p).name for p in list_inputs([tmp_path], (".png", ".jpg"))] == ["a.JPG", "b.png"]
    with pytest.raises(DataError, match="s3://bucket/x.*mount the bucket"):
        list_inputs(["s3://bucket/x"], (".png",))
    with pytest.raises(DataError, match="does not exist"):
        list_inputs([tmp_path / "missing"], (".png",))


def test_cli_engine_ray(model_and_folder, local_ray):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    model, folder = model_and_folder
    result = CliRunner().invoke(app, ["predict", str(model), str(folder), "--engine", "ray", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 18 and all("score" in r for r in rows)
    result = CliRunner().invoke(app, ["predict", str(model), str(folder), "--engine", "spark"])
    assert result.exit_code == 2 and "--engine" in result.output


def test_cli_engine_ray_needs_inputs(model_and_folder):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    model, folder = model_and_folder
    for extra in ([], ["--n", "3"], [str(folder), "--class", "good"]):
        result = CliRunner().invoke(app, ["predict", str(model), *extra, "--engine", "ray"])
        assert result.exit_code == 2, result.output
        assert "--engine ray scores input files" in result.output and "Traceback" not in result.output
