"""`shopfloor check`, `suggest` and `train --add-labels` on tiny synthetic class folders: the image side of the
data-quality machinery (leakage, blur, exposure, label errors, what to label next, folding labels back in)."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.inspection.quality import pixel_facts, scan_check_data
from shopfloor.inspection.synthetic import make_defect_classes

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """train/ and test/ class folders with planted problems: a train image copied into test (leakage), a blurred
    and an all-white train image, and a scratch image filed under good (a label error)."""
    base = tmp_path_factory.mktemp("quality")
    make_defect_classes(base / "train", n_per_class=12, size=64, seed=0)
    make_defect_classes(base / "test", n_per_class=3, size=64, seed=1)
    shutil.copyfile(base / "train/spot/spot_003.png", base / "test/spot/leaked.png")
    crack = base / "train/crack/crack_004.png"
    Image.open(crack).filter(ImageFilter.GaussianBlur(3)).save(crack)
    Image.new("L", (64, 64), 255).save(base / "train/crack/crack_005.png")
    shutil.move(base / "train/scratch/scratch_006.png", base / "train/good/scratch_006.png")
    return base


def test_scan_reads_the_splits(root):
    items = scan_check_data(root)
    assert items.classes == ["crack", "good", "scratch", "spot"]
    assert items.splits.count("train") == 48 and items.splits.count("test") == 13


def test_pixel_facts_known_answers():
    flat = np.full((32, 32, 3), 255, np.uint8)
    facts = pixel_facts(flat)
    assert facts["sharpness"] == 0 and facts["bright_fraction"] == 1 and facts["colourfulness"] == 0
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert pixel_facts(noisy)["sharpness"] > 100 and pixel_facts(noisy)["colourfulness"] > 10


def test_check_cli_finds_the_planted_problems(root, tmp_path):
    out = tmp_path / "q.json"
    result = invoke("check", "defect-classification", "--data", root, "--report", tmp_path / "report",
                    "--json", out, "--image-size", 64, "-q")
    assert result.exit_code == 0, result.output
    found = json.loads(out.read_text())
    checks = {f["check"]: f for f in found["findings"]}
    leak = checks["split_leakage"]["items"]
    assert [(i["a"].split("/")[-1], i["split_a"], i["b"].split("/")[-1], i["split_b"]) for i in leak] == [
        ("spot_003.png", "train", "leaked.png", "test")]
    blurred = [i["name"].split("/")[-1] for i in checks["blur"]["items"]]
    assert "crack_004.png" in blurred and len(blurred) <= 3  # (the all-white image has no detail either)
    assert "crack_005.png" in [i["name"].split("/")[-1] for i in checks["exposure"]["items"]]
    suspects = found["suspected_label_errors"]
    assert suspects and set(suspects[0]) == {"path", "given", "suggested", "score"}
    moved = [s for s in suspects[:3] if s["path"].endswith("scratch_006.png")]
    assert moved and moved[0]["given"] == "good" and moved[0]["suggested"] != "good"
    assert "colour_mix" in checks  # the synthetic set saves half its gray images as RGB
    html = (tmp_path / "report" / "report.html").read_text()
    assert "split leakage" in html and len(list((tmp_path / "report").glob("*.png"))) >= 3


def test_check_refuses_bad_input(root, tmp_path):
    missing = invoke("check", "defect-classification", "--data", tmp_path / "nope", "--report", tmp_path / "r")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    other = invoke("check", "rul", "--data", root, "--report", tmp_path / "r")
    assert other.exit_code == 2 and "does not support" in other.output


def write_rows(sheet, rows):
    with sheet.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_suggest_then_train_with_added_labels(root, tmp_path):
    train = tmp_path / "train"
    shutil.copytree(root / "train", train)
    shutil.move(train / "good/scratch_006.png", train / "scratch/scratch_006.png")
    fast = ["--model", "simple-cnn", "--image-size", 32, "--epochs", 1, "--progress", "false"]
    first = invoke("train", "defect-classification", "--data", train, "--out", tmp_path / "m1", *fast)
    assert first.exit_code == 0, first.output
    pool = make_defect_classes(tmp_path / "pool", n_per_class=3, size=64, seed=5)
    result = invoke("suggest", tmp_path / "m1", "--pool", pool, "--n", 4, "--out", tmp_path / "to_label", "-q")
    assert result.exit_code == 0, result.output
    sheet = tmp_path / "to_label" / "to_label.csv"
    rows = list(csv.DictReader(sheet.open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"] and all(r["label"] == "" for r in rows)
    assert len({r["path"] for r in rows}) == 4
    assert all((tmp_path / "to_label" / r["copy"]).is_file() for r in rows)
    uncertainty = [float(r["uncertainty"]) for r in rows]
    assert uncertainty == sorted(uncertainty, reverse=True)
    for r in rows:  # the labeller writes the true class (the pool's folder name)
        r["label"] = r["path"].split("/")[-2]
    write_rows(sheet, rows)
    second = invoke("train", "defect-classification", "--data", train, "--add-labels", sheet, "--out",
                    tmp_path / "m2", *fast)
    assert second.exit_code == 0, second.output
    before = json.loads((tmp_path / "m1" / "manifest.json").read_text())["metrics"]
    after = json.loads((tmp_path / "m2" / "manifest.json").read_text())["metrics"]
    assert after["n_train"] + after["n_val"] == before["n_train"] + before["n_val"] + 4
    rows[0]["label"] = "dent"
    write_rows(sheet, rows)
    wrong = invoke("train", "defect-classification", "--data", train, "--add-labels", sheet, "--out",
                   tmp_path / "m3", *fast)
    assert wrong.exit_code == 2 and "dent" in wrong.output and "not classes" in wrong.output


def test_check_with_a_model_uses_its_own_features(root):
    import torch
    from torch import nn
    from types import SimpleNamespace

    from shopfloor.inspection.images import ImageSpec
    from shopfloor.inspection.quality import image_quality_data

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x / 255).mean(dim=(2, 3))

    model = SimpleNamespace(torch_model=Tiny().eval(), image_spec=ImageSpec(height=32, width=32),
                            config=SimpleNamespace(model="tiny"))
    data = image_quality_data(root / "test", model=model)
    assert data.embeddings.shape == (13, 5)
    assert "the model's own trained tiny at 32 px" in data.notes[0]
    plain = image_quality_data(root / "test", model=SimpleNamespace(torch_model=nn.Linear(2, 2), config=model.config),
                               image_size=32)
    assert plain.embeddings.shape == (13, 2560) and "no pooled-feature layer" in plain.notes[0]
