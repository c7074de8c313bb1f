"""`shopfloor check` on a table: the failure-prediction hook end to end on a small synthetic CSV."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.maintenance.quality import encode_records, table_quality_data


def test_encode_records_numbers_and_categories():
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0], "kind": ["a", "b", "a"]})
    encoded = encode_records(frame)
    assert encoded.shape == (3, 3) and np.isfinite(encoded).all()
    assert encoded[1, 0] == encoded[:, 0].mean()  # the median fills the gap (and lands at the mean here)


def test_check_failure_table(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    torque = rng.normal(40, 5, n)
    frame = pd.DataFrame({"UDI": np.arange(n), "Type": rng.choice(["L", "M", "H"], n), "Torque [Nm]": torque,
                          "Tool wear [min]": np.linspace(0, 200, n) + rng.normal(0, 5, n), "Line": "A",
                          "Humidity": np.where(rng.random(n) < 0.7, np.nan, rng.normal(50, 5, n)),
                          "Machine failure": (torque > 47).astype(int)})
    frame.loc[10, "Machine failure"] = 1 - frame.loc[10, "Machine failure"]  # a wrong label
    frame.loc[20, "Machine failure"] = 1 - frame.loc[20, "Machine failure"]
    frame.loc[299] = frame.loc[298]  # a record logged twice
    frame.loc[299, "UDI"] = 299
    csv = tmp_path / "records.csv"
    frame.to_csv(csv, index=False)
    data = table_quality_data(csv, "Machine failure", ["UDI"])
    assert "UDI" not in data.table.columns and data.classes == ["0", "1"]
    result = CliRunner().invoke(app, ["check", "failure-prediction", "--data", str(csv), "--report",
                                      str(tmp_path / "r"), "--json", str(tmp_path / "q.json"), "-q"])
    assert result.exit_code == 0, result.output
    found = json.loads((tmp_path / "q.json").read_text())
    checks = {f["check"]: f for f in found["findings"]}
    assert [i["column"] for i in checks["constant_columns"]["items"]] == ["Line"]
    assert [i["column"] for i in checks["mostly_missing_columns"]["items"]] == ["Humidity"]
    assert [i["column"] for i in checks["drifting_columns"]["items"]] == ["Tool wear [min]"]
    assert checks["duplicate_rows"]["items"] == [{"rows": ["row 298", "row 299"]}]
    top = [s["path"] for s in found["suspected_label_errors"][:4]]
    assert {"row 10", "row 20"} <= set(top)
