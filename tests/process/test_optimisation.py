"""process-optimisation end to end on the built-in simulator: a known optimum, so the recommendation is checked by
its regret, not only by running. One small model is trained per module (tiny budget)."""

import json

import numpy as np
import pandas as pd
import pytest

import shopfloor
from shopfloor.core.errors import ConfigError, DataError, NotFittedError
from shopfloor.process.optimisation import ProcessOptimisation
from shopfloor.process.optimisation.recommend import pareto_front
from shopfloor.process.optimisation.simulator import RESULTS, regret, simulate_records, true_optimum

QUIET = {"progress": False, "device": "cpu", "epochs": 80, "batch_size": 32}
WALL, LIMIT = 2.5, 13.0


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimisation")
    task = ProcessOptimisation(data={"results": list(RESULTS), "context": ["wall_thickness"],
                                     "steps": {"hold_pressure": 10.0}}, members=4, cv_folds=0, training=QUIET)
    task.fit(simulate_records(200, seed=0), out_dir=root / "model")
    return task, root


def test_registered_and_not_fitted():
    assert shopfloor.get_task("process-optimisation") is ProcessOptimisation
    with pytest.raises(NotFittedError, match=r"call fit\(\)"):
        ProcessOptimisation().recommend(minimise=["warpage"])


def test_simulator_optimum_has_zero_regret_and_a_poor_point_does_not():
    best = true_optimum(WALL, LIMIT)
    settings = {k: best[k] for k in ("melt_temp", "mould_temp", "hold_pressure", "cooling_time")}
    assert regret(settings, WALL, LIMIT) == pytest.approx(0.0, abs=1e-12)
    poor = {"melt_temp": 200.0, "mould_temp": 80.0, "hold_pressure": 300.0, "cooling_time": 5.0}
    assert regret(poor, WALL, LIMIT) > 0.3


def test_saved_model_predicts_like_the_fitted_one_with_intervals(fitted):
    task, root = fitted
    loaded = shopfloor.load(root / "model", device="cpu")
    rows = simulate_records(6, seed=3).drop(columns=list(RESULTS))
    a, b = task.predict([rows]), loaded.predict([rows])
    for x, y in zip(a, b):
        assert x["warpage"] == pytest.approx(y["warpage"], rel=1e-5)
        low, high = x["warpage_interval"]
        assert low < x["warpage"] < high and x["warpage_std"] > 0 and x["warpage_model_std"] >= 0
    import torch

    numeric = torch.tensor(rows[task.schema.numeric].to_numpy(dtype=np.float32))
    eager = task.torch_model.outputs(numeric, torch.zeros(len(rows), 1, dtype=torch.int64))
    assert np.allclose(eager["mean"].detach().numpy()[:, 0], [r["warpage"] for r in a], rtol=1e-4)


def test_recommendation_is_close_to_the_known_optimum(fitted):
    task, _ = fitted
    advice = task.recommend(fix={"wall_thickness": WALL}, minimise=["warpage"], constraints=[f"part_weight<={LIMIT}"],
                            n=3, trials=150)
    best = advice["recommendations"][0]
    assert best["feasible"] and "uncertainty penalty" in advice["method"]
    assert regret(best["settings"], WALL, LIMIT) < 0.25  # loose: 200 records, 80 epochs, 150 trials
    for row in advice["recommendations"]:
        assert row["settings"]["hold_pressure"] % 10 == pytest.approx(0, abs=1e-6)  # machine steps respected
        assert row["expected_improvement"] is not None and "in_support" in row


def test_bounds_and_fixed_settings_are_respected(fitted):
    task, _ = fitted
    advice = task.recommend(fix={"wall_thickness": 2.0, "cooling_time": 12.0}, minimise=["warpage"],
                            bounds={"melt_temp": "210:220"}, n=2, trials=40)
    for row in advice["recommendations"]:
        assert 210 <= row["settings"]["melt_temp"] <= 220 and row["settings"]["cooling_time"] == 12.0


def test_several_objectives_give_a_pareto_front_and_plot(fitted, tmp_path):
    task, _ = fitted
    advice = task.recommend(fix={"wall_thickness": WALL}, minimise=["warpage", "cycle_time"], n=4, trials=120,
                            out_dir=tmp_path)
    assert "NSGA-II" in advice["method"] and (tmp_path / "pareto.png").is_file()
    front = np.array([[p["predicted"]["warpage"], p["predicted"]["cycle_time"]] for p in advice["pareto_front"]])
    assert len(advice["recommendations"]) <= 4 and len(front) >= 2


def test_pareto_front_known_answer():
    values = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [4, 4]], dtype=float)
    assert pareto_front(values).tolist() == [True, True, False, True, False]


@pytest.mark.parametrize("options, words", [
    ({"fix": {"colour": "red"}, "minimise": ["warpage"]}, "does not know"),
    ({"fix": {}, "minimise": ["warpage"]}, "fix wall_thickness"),
    ({"fix": {"wall_thickness": 2}, "minimise": ["gloss"]}, "not a result"),
    ({"fix": {"wall_thickness": 2}, "minimise": ["warpage"], "bounds": {"melt_temp": "150:250"}}, "outside the training"),
    ({"fix": {"wall_thickness": 2}, "minimise": ["warpage"], "bounds": {"speed": "1:2"}}, "not a setting"),
    ({"fix": {"wall_thickness": 2, "melt_temp": 400}, "minimise": ["warpage"]}, "outside the training range"),
    ({"fix": {"wall_thickness": 2}, "minimise": ["warpage"], "constraints": ["part_weight=<3"]}, "result<=value"),
    ({"fix": {"wall_thickness": 2}}, "say what to optimise"),
])
def test_bad_requests_say_what_to_fix(fitted, options, words):
    task, _ = fitted
    with pytest.raises(ConfigError, match=words):
        task.recommend(trials=8, **options)


def _table(n=120, seed=0):
    return simulate_records(n, seed=seed)


@pytest.mark.parametrize("change, spec, words", [
    (lambda f: f, {"results": ["warpage"], "settings": ["melt_temp", "warpage"]}, "leakage"),
    (lambda f: f.assign(copy=f["warpage"] * 2), {"results": ["warpage"], "settings": ["melt_temp", "copy"]},
     "near copy"),
    (lambda f: f.assign(melt_temp=240.0), {"results": ["warpage"], "settings": ["melt_temp", "mould_temp"]},
     "constant"),
    (lambda f: f.head(12), {"results": ["warpage"]}, "too few"),
    (lambda f: f.assign(mould_temp="hot"), {"results": ["warpage"], "settings": ["melt_temp", "mould_temp"]},
     "hold text"),
    (lambda f: f.assign(warpage=np.where(np.arange(len(f)) == 3, np.nan, f["warpage"])), {"results": ["warpage"]},
     "missing"),
    (lambda f: f, {"results": ["gloss"]}, "not in the table"),
    (lambda f: f, {}, "--results"),
])
def test_table_checks(change, spec, words):
    task = ProcessOptimisation(data=spec, cv_folds=0, training=QUIET)
    with pytest.raises(DataError, match=words):
        task.fit(change(_table()))


def test_class_results_cross_validation_and_recommendation(tmp_path):
    frame = _table(160, seed=2)
    frame["grade"] = np.where(frame["warpage"] < frame["warpage"].median(), "A", "B")
    frame["material"] = np.where(np.arange(len(frame)) % 2 == 0, "PP", "ABS")
    frame = frame.drop(columns=["warpage", "cycle_time"])
    task = ProcessOptimisation(data={"results": ["grade", "part_weight"], "context": ["wall_thickness", "material"]},
                               members=2, cv_folds=2, training={**QUIET, "epochs": 5})
    task.fit(frame)
    cv = task.state["cross_validation"]
    assert cv["grouped"] and set(cv["results"]["grade"]) == {"surrogate", "gradient_boosting"}
    row = task.predict([frame.drop(columns=["grade", "part_weight"]).head(3)])[0]
    assert row["grade"] in ("A", "B") and sum(row["grade_probabilities"].values()) == pytest.approx(1, abs=1e-5)
    advice = task.recommend(fix={"material": "PP", "wall_thickness": 2.0}, maximise=["grade=A"], n=1, trials=16)
    assert advice["recommendations"][0]["best_observed"] is None or "value" in advice["recommendations"][0][
        "best_observed"]
    with pytest.raises(ConfigError, match="name the class"):
        task.recommend(fix={"material": "PP", "wall_thickness": 2.0}, maximise=["grade"], trials=8)
    with pytest.raises(DataError, match="never seen"):
        task.predict([frame.drop(columns=["grade", "part_weight"]).head(2).assign(material="PVC")])


def test_cli_recommend(fitted):
    from typer.testing import CliRunner

    from shopfloor.cli import app

    _, root = fitted
    result = CliRunner().invoke(app, ["recommend", str(root / "model"), "--fix", f"wall_thickness={WALL}",
                                      "--minimise", "warpage", "--constraint", f"part_weight<={LIMIT}",
                                      "--bounds", "melt_temp=220:250", "--n", "2", "--trials", "40", "--quiet"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert len(payload["recommendations"]) == 2
    assert all(220 <= r["settings"]["melt_temp"] <= 250 for r in payload["recommendations"])
    bad = CliRunner().invoke(app, ["recommend", str(root / "model"), "--fix", "wall_thickness=2", "--bounds",
                                   "nozzle=1:2", "--minimise", "warpage"])
    assert bad.exit_code == 2 and "not a setting" in bad.output


def test_served_by_the_generic_predict_endpoint(fitted, tmp_path):
    from fastapi.testclient import TestClient

    from shopfloor.plant.server import ServerSettings, create_app

    _, root = fitted
    rows = json.loads(simulate_records(3, seed=7).drop(columns=list(RESULTS)).to_json(orient="records"))
    app = create_app(ServerSettings(model_dirs=[root / "model"], db=f"sqlite:///{tmp_path / 'r.db'}", device="cpu"))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/models/model/predict", json={"rows": rows})
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 3 and "warpage_interval" in r.json()["predictions"][0]
        bad = client.post("/v1/models/model/predict", json={"rows": [{"melt_temp": 230}]})
        assert bad.status_code == 422 and "missing" in bad.text
        advice = client.post("/v1/models/model/recommend", json={
            "fix": {"wall_thickness": WALL}, "minimise": ["warpage"], "constraints": [f"part_weight<={LIMIT}"],
            "n": 2, "trials": 24})
        assert advice.status_code == 200, advice.text
        assert len(advice.json()["recommendations"]) == 2 and advice.json()["task"] == "process-optimisation"
        refused = client.post("/v1/models/model/recommend", json={"fix": {"colour": 1}, "minimise": ["warpage"]})
        assert refused.status_code == 400 and "does not know" in refused.json()["detail"]
        typo = client.post("/v1/models/model/recommend", json={"minimize": ["warpage"]})
        assert typo.status_code == 422


def test_frame_helpers_refuse_unknown_columns_in_evaluate(fitted):
    task, _ = fitted
    with pytest.raises(DataError, match="missing"):
        task.evaluate(pd.DataFrame({"melt_temp": [230.0]}))


def test_predictions_stay_within_the_widened_training_range_even_when_members_extrapolate():
    """A member pushed to a huge output (what an MLP does far outside the data) must not come back as exp(huge):
    the mean is held to the training range widened by RANGE_MARGIN of its span, in log space for a logged result,
    and the exported ONNX graph does the same."""
    import torch

    from shopfloor.process.optimisation.surrogate import RANGE_MARGIN, SurrogateEnsemble
    from shopfloor.process.optimisation.validation import graph_outputs

    rng = np.random.default_rng(0)
    numeric = rng.uniform(1, 2, size=(50, 2))
    targets = np.column_stack([np.exp(rng.uniform(-4, 0, 50)), rng.uniform(10, 20, 50)])  # logged, linear
    graph = SurrogateEnsemble(2, [], 2, [], members=2)
    graph.fit_scaling(numeric, targets)
    assert graph.out_log.tolist() == [1.0, 0.0]
    with torch.no_grad():
        graph.biases[-1].fill_(1e4)  # every member predicts an absurd value for every input
    log_t = np.log(targets[:, 0])
    high = np.array([np.exp(log_t.max() + RANGE_MARGIN * np.ptp(log_t)),
                     targets[:, 1].max() + RANGE_MARGIN * np.ptp(targets[:, 1])])
    out = graph_outputs(graph, numeric.astype(np.float32), np.zeros((50, 1), dtype=np.int64))
    np.testing.assert_allclose(out["mean"], np.broadcast_to(high, (50, 2)), rtol=1e-4)
    with torch.no_grad():
        graph.biases[-1].fill_(-1e4)
        low = graph.outputs(torch.from_numpy(numeric), torch.zeros(50, 1, dtype=torch.int64))["mean"].numpy()
    np.testing.assert_allclose(low[:, 1], targets[:, 1].min() - RANGE_MARGIN * np.ptp(targets[:, 1]), rtol=1e-4)
    assert np.all(low[:, 0] >= np.exp(log_t.min() - RANGE_MARGIN * np.ptp(log_t)) * (1 - 1e-4))
