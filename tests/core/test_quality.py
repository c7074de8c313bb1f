"""The generic data-quality machinery on synthetic data with known answers: duplicates, label issues, column
checks, outliers, active-learning selection, the labels CSV, and the report/JSON."""

import json

import numpy as np
import pandas as pd
import pytest

from shopfloor.core.errors import DataError
from shopfloor.core.quality import ImageFacts, QualityData
from shopfloor.core.quality.active import margin_uncertainty, read_label_csv, select_for_labelling
from shopfloor.core.quality.check import run_checks
from shopfloor.core.quality.columns import column_issues, duplicate_rows, outliers
from shopfloor.core.quality.duplicates import duplicate_groups, exact_pairs, find_duplicates, near_pairs
from shopfloor.core.quality.labels import finder_precision_recall, out_of_fold_probabilities, rank_label_issues
from shopfloor.core.quality.report import write_quality_json, write_quality_report


def blobs(n_per_class=60, n_classes=3, dim=16, seed=0, spread=0.4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), dim)), labels


def test_exact_pairs_and_groups():
    pairs = exact_pairs(["a", "b", "a", "", "", "a", "c"])
    assert {(p.a, p.b) for p in pairs} == {(0, 2), (0, 5), (2, 5)}  # empty keys are no content
    assert duplicate_groups(7, pairs) == [[0, 2, 5]]


def test_near_pairs_finds_the_planted_copy_only():
    x = np.random.default_rng(0).normal(size=(120, 32))
    x = np.vstack([x, x[7] + 1e-3])  # item 120 is a near copy of item 7
    pairs = near_pairs(x)
    assert [(p.a, p.b) for p in pairs] == [(7, 120)]
    assert pairs[0].similarity > 0.99 and not pairs[0].exact


def test_signature_rule_needs_some_embedding_agreement():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 8))
    sig = rng.normal(size=(30, 64))
    sig[5] = sig[3] * 2  # same thumbnail, correlation 1
    emb[5] = emb[3] + rng.normal(scale=0.01, size=8)  # ... and similar content: a near duplicate
    sig[9] = sig[8]  # same thumbnail but unrelated content (a smooth gradient shared by two parts): not one
    found = {(p.a, p.b) for p in find_duplicates(None, emb, sig)}
    assert (3, 5) in found and (8, 9) not in found


def test_out_of_fold_label_issues_rank_the_flipped_items_first():
    x, labels = blobs(n_per_class=60)
    noisy = labels.copy()
    flipped = np.zeros(len(labels), dtype=bool)
    for i in (3, 70, 150, 151):
        noisy[i] = (labels[i] + 1) % 3
        flipped[i] = True
    probs = out_of_fold_probabilities(x, noisy, 3, folds=5, seed=0)
    issues, scores = rank_label_issues(noisy, probs)
    assert {i.index for i in issues} == {3, 70, 150, 151}
    assert all(i.suggested == labels[i.index] for i in issues)  # the model believes the true class
    assert finder_precision_recall(scores, flipped, 0.05)["recall"] == 1.0
    assert scores[~flipped].min() > scores[flipped].max()


def test_out_of_fold_refuses_a_class_with_one_item():
    x, labels = blobs(n_per_class=5)
    labels[0] = 3
    with pytest.raises(DataError, match="at least 2 labelled items"):
        out_of_fold_probabilities(x, labels, 4)


def test_column_issues_known_answers():
    n = 400
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "steady": rng.normal(size=n), "stuck": np.full(n, 3.5),
        "gappy": np.where(rng.random(n) < 0.8, np.nan, rng.normal(size=n)),
        "drift": rng.normal(size=n) + np.linspace(0, 5, n), "kind": rng.choice(["a", "b"], n),
    })
    found = {(i.column, i.kind) for i in column_issues(frame)}
    assert found == {("stuck", "constant"), ("gappy", "mostly_missing"), ("drift", "drifting")}
    # sorted by a time column, a shuffled drift is still a drift
    shuffled = frame.assign(t=np.arange(n)).sample(frac=1, random_state=0)
    assert ("drift", "drifting") in {(i.column, i.kind) for i in column_issues(shuffled, "t")}


def test_duplicate_and_conflicting_rows():
    frame = pd.DataFrame({"a": [1, 2, 1, 3, 3], "b": ["x", "y", "x", "z", "z"]})
    groups, conflicting = duplicate_rows(frame, np.array([0, 1, 0, 0, 1]))
    assert sorted(groups) == [[0, 2], [3, 4]] and conflicting == [[3, 4]]


def test_robust_outliers():
    values = np.r_[np.random.default_rng(0).normal(100, 5, 200), 10.0, 400.0]
    assert set(outliers(values, "low")) == {200} and set(outliers(values, "high")) == {201}


def test_selection_is_uncertain_and_diverse():
    rng = np.random.default_rng(0)
    # 3 groups of uncertain items far apart: group 0 holds 12 near-copies of the most uncertain part, groups 1
    # and 2 five items each, a little less uncertain; 20 confident items elsewhere
    centres = np.eye(3, 8) * 10
    group = np.r_[np.zeros(12, int), np.ones(5, int), np.full(5, 2)]
    emb = centres[group] + rng.normal(scale=0.05, size=(22, 8))
    confident = rng.normal(size=(20, 8)) * 10
    probs = np.r_[np.tile([0.5, 0.49, 0.01], (12, 1)), np.tile([0.55, 0.4, 0.05], (10, 1)),
                  np.tile([0.98, 0.01, 0.01], (20, 1))]
    picks = select_for_labelling(probs, np.vstack([emb, confident]), 3)
    assert sorted(group[picks]) == [0, 1, 2]  # one from each group, none of the confident items
    assert group[picks[0]] == 0  # most uncertain first
    plain = select_for_labelling(probs, None, 3)
    assert set(group[plain]) == {0}  # without diversity: three near-copies
    assert margin_uncertainty(np.array([[0.5, 0.5], [1.0, 0.0]])).tolist() == [1.0, 0.0]


def test_label_csv(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    good = tmp_path / "labels.csv"
    good.write_text("rank,path,label\n1,a.png,scratch\n2,b.png,\n")
    rows = read_label_csv(good)
    assert [(r.path.name, r.label) for r in rows] == [("a.png", "scratch")]  # the blank label is skipped
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\na.png,scratch\na.png,spot\nmissing.png,spot\n")
    with pytest.raises(DataError, match=r"2 problem\(s\)") as err:
        read_label_csv(bad)
    assert "missing.png does not exist" in str(err.value) and "labelled both" in str(err.value)
    cols = tmp_path / "cols.csv"
    cols.write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match="missing"):
        read_label_csv(cols)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\na.png,\n")
    with pytest.raises(DataError, match="no labelled rows"):
        read_label_csv(empty)


def image_data(n=40):
    x, labels = blobs(n_per_class=n // 2, n_classes=2, dim=12)
    names = [f"img{i}.png" for i in range(len(labels))]
    facts = ImageFacts.empty(len(labels))
    rng = np.random.default_rng(0)
    for i in range(len(labels)):
        facts.set(i, digest=f"d{i}", pixel_hash=f"p{i}", size="64x64", bit_depth="8-bit PNG", colour="gray",
                  sharpness=rng.normal(500, 20), brightness=rng.normal(120, 3), contrast=20, dark_fraction=0,
                  bright_fraction=0, colourfulness=0)
    facts.numeric["sharpness"][4] = 2.0  # a blurred image
    facts.pixel_hash[7] = facts.pixel_hash[30] = "same"  # an exact duplicate across the two splits
    facts.categorical["size"][9] = "640x480"
    splits = ["train"] * 25 + ["test"] * 15
    noisy = labels.copy()
    noisy[12] = 1 - labels[12]
    return QualityData("image", names, splits, noisy, ["a", "b"], embeddings=x, image_facts=facts,
                       picture=lambda name: np.full((8, 8, 3), 128, np.uint8))


def test_run_checks_findings_and_json(tmp_path):
    result = run_checks(image_data())
    checks = {f.check: f for f in result.findings}
    assert {"split_leakage", "exact_duplicates", "label_errors", "blur", "size_mix"} <= set(checks)
    assert checks["split_leakage"].severity == "error" and result.findings[0].severity == "error"
    assert checks["blur"].items[0]["name"] == "img4.png"
    assert all(f.action for f in result.findings)  # every finding says what to do
    out = json.loads(write_quality_json(result, tmp_path / "q.json").read_text())
    first = out["suspected_label_errors"][0]
    assert first == {"path": "img12.png", "given": "b", "suggested": "a", "score": first["score"]}
    assert out["duplicates"][0]["across_splits"] is True
    html = write_quality_report(result, tmp_path / "report").read_text()
    assert "split leakage" in html and "What to do" in html and ".png" in html


def test_run_checks_on_a_table():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"t": np.arange(200), "speed": rng.normal(size=200), "flat": 1.0})
    frame.loc[5] = frame.loc[4]
    data = QualityData("table", [f"row {i}" for i in range(200)], table=frame.drop(columns="t"))
    checks = {f.check for f in run_checks(data).findings}
    assert checks == {"constant_columns", "duplicate_rows"}
