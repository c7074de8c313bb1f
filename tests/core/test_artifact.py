import json

import pytest
import torch

from shopfloor.core.artifact import ONNX_MODEL, WEIGHTS, fingerprint_files, read_artifact, write_artifact
from shopfloor.core.errors import ArtifactError
from shopfloor.core.runtime import export_onnx


@pytest.fixture
def artifact_dir(tmp_path):
    model = torch.nn.Linear(3, 2)
    onnx = export_onnx(model, (torch.zeros(1, 3),), ["x"], ["y"])
    write_artifact(tmp_path / "m", {"task": "toy", "state": {"a": 1}}, model.state_dict(), onnx,
                   {"extra.json": b"{}"})
    return tmp_path / "m"


def test_round_trip_records_hashes_and_versions(artifact_dir):
    art = read_artifact(artifact_dir)
    assert art.task == "toy" and art.manifest["state"] == {"a": 1}
    assert set(art.manifest["files"]) == {WEIGHTS, ONNX_MODEL, "extra.json"}
    assert "torch" in art.manifest["versions"] and "onnxruntime" in art.manifest["versions"]
    assert set(art.state_dict()) == {"weight", "bias"}
    assert not any(p.suffix in (".pt", ".pth", ".pkl", ".ckpt") for p in artifact_dir.iterdir())


@pytest.mark.parametrize("name", [WEIGHTS, ONNX_MODEL, "extra.json"])
def test_tampered_file_is_refused(artifact_dir, name):
    path = artifact_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{name} does not match the SHA-256"):
        read_artifact(artifact_dir)


def test_missing_file_is_refused(artifact_dir):
    (artifact_dir / ONNX_MODEL).unlink()
    with pytest.raises(ArtifactError, match="incomplete: model.onnx is missing"):
        read_artifact(artifact_dir)


def test_edited_manifest_is_refused(artifact_dir):
    path = artifact_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["state"]["a"] = 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="edited after the model was written"):
        read_artifact(artifact_dir)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_artifact(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_artifact(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{truncated")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_artifact(tmp_path / "empty")


def test_fingerprint_changes_with_content(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("1")
    first = fingerprint_files([a], tmp_path)
    a.write_text("2")
    assert fingerprint_files([a], tmp_path) != first
