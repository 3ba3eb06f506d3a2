"""`flowdeblur import-release`: the authors' caffemodel, proved on files we make ourselves.

We cannot download the released model here. Instead ``caffe_release_reference`` rebuilds the
release's test network from its prototxt and layer sources (without flowdeblur's code), writes a
caffemodel with its layer names and blob shapes through a hand-rolled protobuf encoder, and runs
the network the release's way (transposed W x H blobs). The imported FlowDeblurNet must then
compute the same deblurred frame and the same flows on ordinary (H, W) frames.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import caffe_release_reference as ref  # noqa: E402

from flowdeblur.cli import main  # noqa: E402
from flowdeblur.errors import UserError  # noqa: E402
from flowdeblur.ops import warp  # noqa: E402
from flowdeblur.weights import load_weights, read_weights  # noqa: E402

pytest.importorskip("google.protobuf")

H, W = 128, 192  # a non-square multiple of 64: no padding, so the two networks see the same


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> SimpleNamespace:
    layers = ref.release_layers()
    weights = ref.random_weights(layers, seed=0)
    folder = tmp_path_factory.mktemp("release")
    path = folder / "flownets_deblur_iter_1060000.caffemodel"
    path.write_bytes(ref.encode_caffemodel(layers, weights))
    return SimpleNamespace(layers=layers, weights=weights, path=path, folder=folder)


@pytest.fixture(scope="module")
def imported(release) -> Path:
    out = release.folder / "release.safetensors"
    assert main(["import-release", str(release.path), "-o", str(out)]) == 0
    return out


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours.double() - reference).abs().max() / reference.abs().max())


# ------------------------------------------------------------------- same network, same output


def test_imported_model_computes_the_release_network(release, imported):
    g = torch.Generator().manual_seed(1)
    frame_t, frame_next = torch.rand(2, 1, 3, H, W, generator=g)
    model = load_weights(imported, rnn_backend="torch")
    with torch.no_grad():
        out = model(frame_t, frame_next)
    blobs = ref.run_release(release.layers, release.weights, ref.to_caffe(frame_t, frame_next))

    assert relative_error(out.image, ref.from_caffe(blobs["conv_rnnd_1"])) <= 1e-4
    for scale, flow in zip((2, 3, 4, 5, 6), out.flows, strict=True):
        expected = ref.flow_from_caffe(blobs[f"predict_conv{scale}"])
        assert flow.shape == expected.shape == (1, 2, H >> scale, W >> scale)
        assert relative_error(flow, expected) <= 1e-4, scale

    # The axis swap is the right one: our warp with our flow reproduces the release's own
    # FlowWarp output (its warping-loss branch) wherever the sample lies inside the frame.
    target = ref.from_caffe(blobs["Downsample5"]).float()
    warped, inside = warp(target, out.flows[0], return_mask=True)
    expected = ref.from_caffe(blobs["right_warp_conv2"])
    assert inside.mean() > 0.3
    diff = (warped.double() - expected).abs() * inside
    assert float(diff.max()) <= 1e-4 * float(expected.abs().max())


def test_written_file_is_an_ordinary_weights_file(release, imported, capsys):
    state, metadata = read_weights(imported)
    assert metadata["format"] == "flowdeblur"
    assert '"full"' in metadata["config"]
    assert "tcsvt21_flow_deblur_matcaffe" in metadata["source"]
    assert sum(t.numel() for t in state.values()) == 8_281_696  # Table I, biases included
    # The release's conv1 bias lands unchanged (bias channels are not permuted there) ...
    np.testing.assert_array_equal(state["flownet.conv1.0.bias"].numpy(),
                                  release.weights["conv1"][1])
    # ... and its kernels with the spatial axes swapped.
    np.testing.assert_array_equal(state["flownet.conv1.0.weight"].numpy(),
                                  release.weights["conv1"][0].swapaxes(-1, -2))


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["import-release", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "MODEL.caffemodel" in text and "--output" in text


# ------------------------------------------------------------------------------- refusals


def _not_a_caffemodel_text(release, work):
    path = work / "net.prototxt"
    path.write_text('name: "flownets_deblur"\nlayer {\n  name: "conv1"\n}\n')
    return path, "text file"


def _not_a_caffemodel_binary(release, work):
    path = work / "noise.caffemodel"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path, "noise.caffemodel"


def _missing_layer(release, work):
    path = work / "missing.caffemodel"
    path.write_bytes(ref.encode_caffemodel(release.layers, release.weights,
                                           skip={"conv_rnnd_2_1"}))
    return path, "'conv_rnnd_2_1' is missing"


def _wrong_shape(release, work):
    weights = dict(release.weights)
    weights["conv3"] = [np.zeros((64, 48, 5, 5), np.float32), np.zeros(64, np.float32)]
    path = work / "narrow.caffemodel"
    path.write_bytes(ref.encode_caffemodel(release.layers, weights,
                                           overrides={"conv3": {"num_output": 64}}))
    return path, "'conv3' weight has shape (64, 48, 5, 5), expected (96, 48, 5, 5)"


def _rnn_uses_its_weights(release, work):
    path = work / "wx.caffemodel"
    path.write_bytes(ref.encode_caffemodel(release.layers, release.weights,
                                           overrides={"rnn3_2": {"use_wx": True}}))
    return path, "'rnn3_2' sets use_wx"


def _truncated(release, work):
    path = work / "cut.caffemodel"
    data = release.path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    return path, "truncated or corrupt"


def _with_weight(release, work, name, weight, *, extra=b""):
    """The release's file with layer ``name``'s weight blob replaced (an array, or bytes: an
    encoded BlobProto), and ``extra`` fields appended."""
    weights = dict(release.weights)
    weights[name] = [weight, release.weights[name][1]]
    path = work / f"{name}.caffemodel"
    path.write_bytes(ref.encode_caffemodel(release.layers, weights, extra=extra))
    return path


def _negative_dims(release, work):
    blob = ref.encode_blob(release.weights["conv3"][0], dims=(-96, -48, 5, 5))
    return _with_weight(release, work, "conv3", blob), "'conv3' has a negative dimension"


def _overflowing_dims(release, work):
    # 2**62 * 4 wraps to 0 in int64: the count of an empty blob.
    blob = ref.encode_blob(np.zeros(0, np.float32), dims=(2**62, 4, 1, 1))
    return _with_weight(release, work, "conv3", blob), "more values than a Caffe blob can hold"


def _more_values_than_the_shape(release, work):
    blob = ref.encode_blob(np.zeros(24 * 6 * 7 * 7 + 10_000, np.float32), dims=(24, 6, 7, 7))
    path = _with_weight(release, work, "conv1", blob)
    return path, "more than its shape (24, 6, 7, 7) has room for"


def _shape_of_many_axes(release, work):
    blob = ref.encode_blob(np.zeros(1, np.float32), dims=(1,) * 2000)
    return _with_weight(release, work, "conv1", blob), "has a shape of over 1024 bytes"


def _nan_weight(release, work):
    weight = release.weights["conv3"][0].copy()
    weight[5, 1, 2, 3] = np.nan
    path = _with_weight(release, work, "conv3", weight)
    return path, "'conv3' weight holds 1 NaN or infinite values"


def _fp16_overflow(release, work):
    weight = release.weights["conv3"][0].copy()
    weight[5, 1, 2, 3] = 1e6  # a float32, out of fp16's range
    path = _with_weight(release, work, "conv3", weight)
    message = "in fp16, tensor 'flownet.conv3.0.weight' holds 1 NaN or infinite values"
    return path, message, ["--dtype", "fp16"]


def _many_empty_layers(release, work):
    path = work / "empty_layers.caffemodel"
    path.write_bytes(b"\xa2\x06\x00" * 2000)  # field 100 (layer), length 0
    return path, "holds more than 1000 layers"


def _layer_of_many_fields(release, work):
    extra = ref.encode_layer("x", "ReLU", ["b"] * 300, [])
    path = _with_weight(release, work, "conv1", release.weights["conv1"][0], extra=extra)
    return path, "has more than 256 fields"


def _long_layer_name(release, work):
    blob = ref.encode_blob(np.zeros(1, np.float32))
    extra = ref.encode_layer("n" * 3000, "Convolution", [], [], [blob])
    path = _with_weight(release, work, "conv1", release.weights["conv1"][0], extra=extra)
    return path, "('Convolution') has parameters the release's network does not have"


def _long_bottom_list(release, work):
    layers = [dataclasses.replace(lay, bottom=["b" * 50] * 60) if lay.name == "conv3" else lay
              for lay in release.layers]
    path = work / "bottoms.caffemodel"
    path.write_bytes(ref.encode_caffemodel(layers, release.weights))
    return path, "layer 'conv3' reads ['bbbb"


REFUSALS = {
    "text file": _not_a_caffemodel_text,
    "random bytes": _not_a_caffemodel_binary,
    "missing layer": _missing_layer,
    "wrong shape": _wrong_shape,
    "GateRecurrent using W_x": _rnn_uses_its_weights,
    "truncated": _truncated,
    "negative dims": _negative_dims,
    "overflowing dims": _overflowing_dims,
    "more values than the shape": _more_values_than_the_shape,
    "shape of many axes": _shape_of_many_axes,
    "NaN weight": _nan_weight,
    "fp16 overflow": _fp16_overflow,
    "many empty layers": _many_empty_layers,
    "layer of many fields": _layer_of_many_fields,
    "long layer name": _long_layer_name,
    "long bottom list": _long_bottom_list,
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_is_one_line_exit_2_and_writes_nothing(case, release, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    source, message, *args = REFUSALS[case](release, work)
    before = sorted(p.name for p in work.iterdir())
    code = main(["import-release", str(source), "-o", str(work / "out.safetensors"),
                 *(args[0] if args else [])])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("flowdeblur: error:"), err[:1000]
    assert message in lines[0]
    # What the file states is quoted cut short: the line stays a line (paths aside).
    assert len(lines[0].replace(str(work), "")) < 250, lines[0][:1000]
    assert sorted(p.name for p in work.iterdir()) == before  # no output, no temporary


def test_files_over_the_size_limit_are_refused_unread(release, tmp_path, capsys, monkeypatch):
    from flowdeblur.weights import caffemodel
    from flowdeblur.weights.caffe_release import import_release

    monkeypatch.setattr(caffemodel, "MAX_BYTES", 2**20)  # the test file is 33 MB
    out = tmp_path / "out.safetensors"
    assert main(["import-release", str(release.path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is 32 MB; caffemodels over 1 MB are refused" in err
    assert not out.exists()
    monkeypatch.undo()
    with pytest.raises(UserError, match="over 16 MB are refused"):
        import_release(release.path, out, max_bytes=16 * 2**20)


# Peak memory (MB) of import_release on crafted files above the memory in use before, in a
# fresh process (Linux: /proc/self/clear_refs resets the peak). Each file is refused; what
# matters is what reading it cost. Parsing a file whole costs tens of bytes per file byte.
_MEMORY_CHILD = """
import re, sys
from flowdeblur.errors import UserError
from flowdeblur.weights.caffe_release import import_release

def rss(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\\s+(\\d+) kB", f.read()).group(1)) // 1024

def run(path):
    try:
        import_release(path, sys.argv[1])
    except UserError:
        pass

run(sys.argv[2])  # loads the message classes
for path in sys.argv[3:]:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    before = rss("VmRSS")
    run(path)
    print(rss("VmHWM") - before)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="Linux only")
def test_crafted_files_are_read_in_bounded_memory(tmp_path):
    size = 8 * 10**6
    empty = tmp_path / "empty_layers.caffemodel"  # 3-byte layers: the costliest to parse
    empty.write_bytes(b"\xa2\x06\x00" * (size // 3))
    bottoms = tmp_path / "bottoms.caffemodel"  # layers of 200 empty bottoms, 2 bytes each
    layer = ref.encode_layer("x", "ReLU", [""] * 200, [])
    bottoms.write_bytes(layer * (size // len(layer)))
    tiny = tmp_path / "tiny.caffemodel"
    tiny.write_bytes(b"\xa2\x06\x00" * 10)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(tmp_path / "out.safetensors"), str(tiny),
         str(empty), str(bottoms)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    growth = [int(line) for line in run.stdout.split()]
    assert len(growth) == 2 and max(growth) < 20, f"peak memory grew by {growth} MB"


def test_unwritable_output_is_refused_before_the_work(release, tmp_path, capsys, monkeypatch):
    from flowdeblur.weights import caffe_release

    def work(*args, **kwargs):
        raise AssertionError("the caffemodel was read before the output was checked")

    monkeypatch.setattr(caffe_release, "load_release", work)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "release.safetensors"
    assert main(["import-release", str(release.path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write WEIGHTS" in err and "not a folder" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_output_folder_is_refused_before_the_work(release, tmp_path, capsys):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code = main(["import-release", str(release.path), "-o", str(folder / "w.safetensors")])
    finally:
        folder.chmod(0o700)
    assert code == 2
    assert "cannot write WEIGHTS" in capsys.readouterr().err
    assert not list(folder.iterdir())


def test_existing_output_is_kept_unless_overwrite(release, imported, tmp_path, capsys):
    out = tmp_path / "mine.safetensors"
    out.write_text("keep")
    assert main(["import-release", str(release.path), "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep"
    assert main(["import-release", str(release.path), "-o", str(out), "--overwrite"]) == 0
    ours, theirs = read_weights(out)[0], read_weights(imported)[0]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


# ----------------------------------------------------------------------------- round trip


@pytest.mark.slow
def test_round_trip_deblur_with_the_imported_weights(imported, tmp_path):
    rng = np.random.default_rng(2)
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(3):  # a smooth picture panning right by 2 pixels a frame
        big = np.asarray(Image.fromarray(coarse).resize((70, 48), Image.BICUBIC))
        Image.fromarray(big[:, 2 * i : 2 * i + 64]).save(clip / f"f{i}.png")
    out = tmp_path / "out"
    # Random release weights estimate no meaningful flow: the scene-cut test is off here.
    # fp32, as the reference below (deblur's auto precision is bf16 on a CPU with native bf16).
    args = [str(clip), "-o", str(out), "--weights", str(imported), "--no-progress",
            "--no-scene-cuts", "--precision", "fp32"]
    assert main(["deblur", *args]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["f0.png", "f1.png", "f2.png"]

    def load(p):
        return torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)

    frames = [load(clip / f"f{i}.png").float().div(255).unsqueeze(0) for i in range(2)]
    with torch.no_grad():
        expected = load_weights(imported)(*frames).image.clamp(0, 1)[0]
    got = load(out / "f0.png").float().div(255)
    assert got.shape == (3, 48, 64)
    assert float((got - expected).abs().max()) <= 0.5 / 255 + 1e-5
