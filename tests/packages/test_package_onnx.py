"""``pack_model(onnx=True)``: the network as ONNX inside the package (encrypted with it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medimg.packages import pack_model, read_package
from medimg.training import load_model_bundle

pytest.importorskip("medimg.inference.onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_onnx_member_runs_like_the_network(run_dir: Path, tmp_path: Path) -> None:
    path = pack_model(run_dir, tmp_path / "o.medimg", onnx=True, passphrase="pw")
    locked = read_package(path, trust=[])
    names = [m["name"] for m in locked.manifest["members"]]
    assert names[-1] == "network.onnx"
    assert "network.onnx" in locked.manifest["encryption"]["nonces"]
    onnx = read_package(path, passphrase="pw", trust=[]).onnx_bytes()
    assert onnx is not None
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    # a window of another size than the ROI (16, 16, 8): the spatial sizes are dynamic
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 16, 8)).astype(np.float32)
    (found,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        expected = load_model_bundle(run_dir / "model").model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(found, expected, atol=1e-4)
