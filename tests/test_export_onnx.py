"""`flowdeblur export` (weights/onnx_export.py) and the exported model run by
`deblur --backend onnxruntime|openvino` (runtime/backends.py), against the PyTorch network.

One export of the shipped weights serves the module (about a minute on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import require, smooth_frames

from flowdeblur.apps.demo import demo_scene
from flowdeblur.cli import main
from flowdeblur.data.synthetic import make_clip
from flowdeblur.errors import UserError
from flowdeblur.media import read_image, write_image
from flowdeblur.media.atomic import file_sha256
from flowdeblur.media.ownership import read_provenance
from flowdeblur.runtime import backends
from flowdeblur.runtime.backends import ExportedNetwork
from flowdeblur.weights import load_pretrained, weights_sha256
from flowdeblur.weights.onnx_export import EXAMPLE_SHAPE, custom_domain_nodes, written_by_export

pytestmark = pytest.mark.slow

onnx = require("onnx")
require("onnxscript")
ort = require("onnxruntime")

#: Agreement asked of the exported model with the PyTorch network, fp32, [0, 1] images.
TOLERANCE = 1e-3

# Awkward sizes (H, W): smaller than the traced example, larger with an odd width, one
# needing no padding on one side, and a single row.
SIZES = [(70, 130), (EXAMPLE_SHAPE[1] + 59, EXAMPLE_SHAPE[2] + 65), (64, 97), (1, 33)]


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "flowdeblur.onnx"
    assert main(["export", str(path)]) == 0
    return path


def _torch_reference(model, frames: torch.Tensor):
    with torch.no_grad():
        out = model(frames[:, :3], frames[:, 3:])
    return out.image.numpy(), out.flows[0][:, :2].numpy()


def test_the_graph_holds_only_standard_operators_and_its_metadata(exported, model):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto)
    assert custom_domain_nodes(proto) == []
    assert {op.domain for op in proto.opset_import} <= {"", "ai.onnx"}
    assert max(op.version for op in proto.opset_import) >= 18
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[backends.FORMAT_KEY] == backends.FORMAT
    assert meta[backends.WEIGHTS_KEY] == weights_sha256(model)
    assert "(N, 6, H, W)" in meta[backends.INPUT_KEY] and meta[backends.VERSION_KEY]
    assert [i.name for i in proto.graph.input] == ["frames"]
    assert [o.name for o in proto.graph.output] == ["image", "flow"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims][1] == 6
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # N, H, W dynamic
    assert written_by_export(exported)


@pytest.mark.parametrize("size", SIZES)
def test_onnxruntime_matches_the_network_on_random_frames(exported, model, size):
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    frames = torch.rand(2 if size == SIZES[0] else 1, 6, *size,
                        generator=torch.Generator().manual_seed(size[1]))
    image, flow = session.run(None, {"frames": frames.numpy()})
    want_image, want_flow = _torch_reference(model, frames)
    assert image.shape == want_image.shape and flow.shape == want_flow.shape
    assert np.abs(image - want_image).max() <= TOLERANCE
    assert np.abs(flow - want_flow).max() <= TOLERANCE * 10  # pixels of the 1/4 scale


def test_onnxruntime_matches_the_network_on_the_demo_clip(exported, model):
    clip = make_clip(3, (256, 384), seed=0, config=demo_scene((256, 384)))["blur"].float()
    frames = torch.cat([clip[:2], clip[1:3]], dim=1).clamp(0, 1)  # pairs (0, 1), (1, 2)
    network = ExportedNetwork(exported, "onnxruntime")
    out = network(frames[:, :3], frames[:, 3:])
    want_image, want_flow = _torch_reference(model, frames)
    assert np.abs(out.image.numpy() - want_image).max() <= TOLERANCE
    assert np.abs(out.flows[0].numpy() - want_flow).max() <= TOLERANCE * 10
    assert out.padded_size == (256, 384)


def test_openvino_matches_the_network_in_fp32(exported, model):
    require("openvino")
    network = ExportedNetwork(exported, "openvino", "fp32")
    for size in SIZES[:2]:
        frames = torch.rand(1, 6, *size, generator=torch.Generator().manual_seed(1))
        out = network(frames[:, :3], frames[:, 3:])
        want_image, _ = _torch_reference(model, frames)
        assert np.abs(out.image.numpy() - want_image).max() <= TOLERANCE


def _clip_with_a_cut(folder: Path) -> Path:
    """Five 150x80 frames: three of one shot, then two of another (a cut between 2 and 3)."""
    frames = smooth_frames(3, 80, 150, seed=0) + smooth_frames(2, 80, 150, seed=5)
    for i, frame in enumerate(frames):
        write_image(folder / f"f{i}.png", frame)
    return folder


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_deblur_with_a_backend_writes_what_the_torch_path_writes(exported, tmp_path, backend):
    if backend == "openvino":
        require("openvino")
    clip = _clip_with_a_cut(tmp_path / "clip")
    common = ["--no-progress", "--bits", "16", "--precision", "fp32"]
    assert main(["deblur", str(clip), "-o", str(tmp_path / "torch"), *common]) == 0
    assert main(["deblur", str(clip), "-o", str(tmp_path / backend), "--backend", backend,
                 "--weights", str(exported), "--save-flow", str(tmp_path / "flow"),
                 *common]) == 0
    assert len(list((tmp_path / "flow").glob("*.png"))) == 5
    record = read_provenance(tmp_path / backend)
    assert record["backend"] == {"name": backend, "model_sha256": file_sha256(exported)}
    assert record["weights_sha256"] == read_provenance(tmp_path / "torch")["weights_sha256"]
    tiled = ["--tile", "64", "--tile-overlap", "16", "--batch", "2", "--ensemble", "2"]
    assert main(["deblur", str(clip), "-o", str(tmp_path / "torch_tiled"), *tiled,
                 *common]) == 0
    assert main(["deblur", str(clip), "-o", str(tmp_path / "tiled"), "--backend", backend,
                 "--weights", str(exported), *tiled, *common]) == 0
    for want_dir, got_dir in (("torch", backend), ("torch_tiled", "tiled")):
        for i in range(5):
            want = read_image(tmp_path / want_dir / f"f{i}.png")
            got = read_image(tmp_path / got_dir / f"f{i}.png")
            assert (got - want).abs().max() <= TOLERANCE


def test_export_replaces_only_its_own_files(exported, tmp_path, capsys):
    mine = tmp_path / "copy.onnx"
    mine.write_bytes(exported.read_bytes())
    assert main(["export", str(mine)]) == 2
    assert "--overwrite replaces it" in capsys.readouterr().err
    foreign = tmp_path / "other.onnx"
    proto = onnx.load(str(exported))
    del proto.metadata_props[:]
    foreign.write_bytes(proto.SerializeToString())
    before = foreign.read_bytes()
    assert main(["export", str(foreign), "--overwrite"]) == 2
    assert "not written by flowdeblur export" in capsys.readouterr().err
    assert foreign.read_bytes() == before
    # ... nor run by deblur, which reads only exports with our metadata
    with pytest.raises(UserError, match="not a model written by flowdeblur export"):
        ExportedNetwork(foreign, "onnxruntime")
