"""Tabular reading, schema fitting and the shared encoder: errors for missing/unknown columns, NaN, categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from shopfloor.core.errors import DataError
from shopfloor.maintenance.failure_prediction.models import TabularFeatures
from shopfloor.maintenance.failure_prediction.simulator import make_process_records
from shopfloor.core.tables import read_table
from shopfloor.maintenance.tabular import AI4I_DERIVED, binary_column, encode, fit_schema, parse_derived

EXCLUDE = ["Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF", "UDI", "Product ID"]


@pytest.fixture()
def records():
    return make_process_records(600, seed=1)


def test_csv_with_bom_and_parquet(tmp_path, records):
    path = tmp_path / "r.csv"
    path.write_bytes(records.to_csv(index=False).encode("utf-8-sig"))
    assert list(read_table(path).columns) == list(records.columns)
    records.to_parquet(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "r.parquet"), records)
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "r.txt").write_text("a")
    with pytest.raises(DataError, match="not a table"):
        read_table(tmp_path / "r.txt")


def test_schema_types_derived_and_constant(records):
    records["Line"] = "A"
    schema = fit_schema(records, EXCLUDE, derived=AI4I_DERIVED)
    assert schema.categorical == {"Type": ["H", "L", "M"]}
    assert "Torque [Nm]" in schema.numeric and schema.dropped_constant == ["Line"]
    assert [str(d) for d in schema.derived] == [s.replace("  ", " ") for s in AI4I_DERIVED]
    numeric, categorical = encode(records, schema)
    assert numeric.shape == (600, 5) and categorical.shape == (600, 1) and numeric.dtype == np.float64


def test_identifier_like_column_is_refused(records):
    with pytest.raises(DataError, match="looks like an identifier"):
        fit_schema(records, ["Machine failure"])


def test_derived_feature_parsing():
    columns = ["Torque [Nm]", "Rotational speed [rpm]", "a-b", "c"]
    d = parse_derived("power = Torque [Nm] * Rotational speed [rpm]", columns)
    assert (d.left, d.op, d.right) == ("Torque [Nm]", "*", "Rotational speed [rpm]")
    assert parse_derived("x = a-b - c", columns).left == "a-b"
    with pytest.raises(DataError, match="two known numeric columns"):
        parse_derived("y = Torque * speed", columns)


def test_encode_errors_missing_column_nan_unknown_category(records):
    schema = fit_schema(records, EXCLUDE)
    with pytest.raises(DataError, match=r"missing feature column \['Torque \[Nm\]'\]"):
        encode(records.drop(columns=["Torque [Nm]"]), schema)
    broken = records.copy()
    broken.loc[3, "Torque [Nm]"] = np.nan
    with pytest.raises(DataError, match=r"'Torque \[Nm\]' has 1 missing or infinite values \(rows \[3\]\)"):
        encode(broken, schema)
    broken.loc[3, "Torque [Nm]"] = np.inf
    with pytest.raises(DataError, match="missing or infinite"):
        encode(broken, schema)
    odd = records.copy()
    odd.loc[5, "Type"] = "X"
    with pytest.raises(DataError, match=r"categories never seen in training: \['X'\]"):
        encode(odd, schema)
    text = records.astype({"Tool wear [min]": object})
    text.loc[2, "Tool wear [min]"] = "worn"
    with pytest.raises(DataError, match="must be numeric"):
        encode(text, schema)


def test_impute_uses_training_statistics(records):
    schema = fit_schema(records, EXCLUDE, impute=True)
    broken = records.copy()
    broken.loc[0, "Torque [Nm]"] = np.nan
    broken.loc[1, "Type"] = None
    numeric, categorical = encode(broken, schema)
    assert numeric[0, schema.numeric.index("Torque [Nm]")] == pytest.approx(records["Torque [Nm]"].median())
    assert schema.categorical["Type"][categorical[1, 0]] == records["Type"].mode().iloc[0]


def test_binary_columns_are_checked(records):
    records.loc[4, "HDF"] = 2
    with pytest.raises(DataError, match="only 0 and 1; rows \\[4\\]"):
        binary_column(records, "HDF")
    with pytest.raises(DataError, match="missing column"):
        binary_column(records, "XYZ")


def test_features_module_derives_scales_and_one_hot():
    numeric = torch.tensor([[2.0, 3.0], [4.0, 5.0], [6.0, 1.0]], dtype=torch.float64)
    categorical = torch.tensor([[0], [2], [1]])
    features = TabularFeatures(2, derived=[(0, "*", 1), (0, "-", 1)], category_sizes=[3], n_bins=2, crosses=[(2, 0)])
    features.fit(numeric, categorical)
    out = features(numeric, categorical)
    assert out.shape == (3, 7 * 3 + 3)
    raw = features.unscaled(numeric, categorical)
    torch.testing.assert_close(raw[:, 2], torch.tensor([6.0, 20.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(raw[:, 3], torch.tensor([-1.0, -1.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(raw[:, 4:], torch.tensor([[6.0, 0, 0], [0, 0, 20.0], [0, 6.0, 0]],
                                                        dtype=torch.float64))  # power x category
    torch.testing.assert_close(out[:, :7].mean(dim=0), torch.zeros(7), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, -3:], torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]))


def test_tree_bins_put_an_exact_step_at_a_float64_limit():
    # a temperature difference "8.6" that is 8.599999999999966 in float64 counts as below the limit
    air = torch.tensor([300.1, 300.2, 300.0, 299.9, 300.1, 300.3] * 50, dtype=torch.float64)
    process = torch.tensor([308.7, 308.8, 308.7, 308.5, 308.8, 309.0] * 50, dtype=torch.float64)
    numeric = torch.stack([air, process], dim=1)
    below = (process - air < 8.6).double().unsqueeze(1)
    assert 0 < below.sum() < len(below)
    features = TabularFeatures(2, derived=[(1, "-", 0)], n_bins=2)
    features.fit(numeric, torch.zeros(len(air), 0, dtype=torch.long), below)
    encoded = features(numeric, torch.zeros(len(air), 0, dtype=torch.long))
    steps = encoded[:, 3 + 2 * 2: 3 + 2 * 3]  # bins of the derived feature
    separates = [torch.equal((step > 0.5).double(), 1 - below[:, 0]) for step in steps.T]
    assert any(separates)


def test_ordinal_categories_keep_their_order_and_are_checked(records):
    schema = fit_schema(records, EXCLUDE, ordinal={"Type": ["L", "M", "H"]})
    assert schema.categorical == {"Type": ["L", "M", "H"]} and schema.ordinal == ["Type"]
    _, codes = encode(records, schema)
    assert (codes[records["Type"].to_numpy() == "H", 0] == 2).all()
    with pytest.raises(DataError, match=r"does not list"):
        fit_schema(records, EXCLUDE, ordinal={"Type": ["L", "M"]})
    with pytest.raises(DataError, match="is numeric, so already ordered"):
        fit_schema(records, EXCLUDE, ordinal={"Torque [Nm]": ["1", "2"]})
    with pytest.raises(DataError, match="more than once"):
        fit_schema(records, EXCLUDE, ordinal={"Type": ["L", "M", "H", "L"]})
    with pytest.raises(DataError, match="not a feature column"):
        fit_schema(records, [*EXCLUDE, "Type"], ordinal={"Type": ["L", "M", "H"]})
    # a listed category absent from training stays unknown: refused at prediction like any unseen category
    no_h = records[records["Type"] != "H"]
    schema = fit_schema(no_h, EXCLUDE, ordinal={"Type": ["L", "M", "H"]})
    assert schema.categorical == {"Type": ["L", "M"]}
    with pytest.raises(DataError, match="never seen in training"):
        encode(records, schema)


def test_ordinal_cross_adds_at_least_features():
    numeric = torch.tensor([[10.0], [20.0], [30.0], [40.0]], dtype=torch.float64)
    categorical = torch.tensor([[0], [1], [2], [3]])  # four ordered categories
    features = TabularFeatures(1, category_sizes=[4], crosses=[(0, 0)], ordinal_crosses=[(0, 0)])
    raw = features.unscaled(numeric, categorical)
    assert raw.shape == (4, 1 + 4 + 2) and features.out_features == 7 + 4
    # "at least category 1" and "at least category 2" (the top one is the plain cross already)
    torch.testing.assert_close(raw[:, 5:], torch.tensor([[0, 0], [20.0, 0], [30.0, 30.0], [40.0, 40.0]],
                                                        dtype=torch.float64))


def test_wide_part_starts_at_zero_and_learns_alongside_the_mlp():
    from shopfloor.maintenance.failure_prediction.models import TabularNet

    features = TabularFeatures(2, n_bins=0)
    net = TabularNet(features, 3, hidden=[8], wide=True).eval()
    x, codes = torch.randn(5, 2, dtype=torch.float64), torch.zeros(5, 0, dtype=torch.long)
    torch.testing.assert_close(net(x, codes), net.mlp(features(x, codes)))
    net.wide.bias.data.fill_(1.0)
    torch.testing.assert_close(net(x, codes), net.mlp(features(x, codes)) + 1.0)
    assert TabularNet(features, 3, hidden=[8]).wide is None


def test_tree_splits_find_a_limit_on_every_feature_that_carries_it():
    from shopfloor.maintenance.failure_prediction.models import tree_splits

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 10, 2000)
    x = np.stack([a, a.copy(), rng.uniform(0, 10, 2000)], axis=1)  # a limit on two identical columns
    y = (a > 7.0).astype(float).reshape(-1, 1)
    found = tree_splits(x, y, max_leaves=4)
    for j in (0, 1):  # the joint tree uses only one of the twins; each twin's own tree finds it
        splits = found[j][0]
        assert np.any(np.abs(splits - 7.0) < 0.02), (j, splits)
