"""runtime/backends.py: how `--backend`, `--weights MODEL.onnx`, `--device` and `--precision`
are refused when they do not fit together, each in one line before anything loads. The
exported model's agreement with the network is in tests/test_export_onnx.py (slow suite)."""

from __future__ import annotations

import sys

import pytest

from flowdeblur.cli import main
from flowdeblur.runtime import backends


def _error(capsys, *args: str) -> str:
    assert main([*args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("flowdeblur: error: ") and "\n" not in err, err
    return err


@pytest.fixture
def runtimes_installed(monkeypatch):
    """Both runtimes importable as far as the option checks look (nothing is run)."""
    monkeypatch.setattr(backends, "import_runtime", lambda backend: object())


def test_an_onnx_file_needs_an_onnx_backend(capsys, frames_dir, tmp_path):
    err = _error(capsys, "deblur", str(frames_dir), "-o", str(tmp_path / "out"),
                 "--weights", str(tmp_path / "model.onnx"))
    assert "--backend onnxruntime or --backend openvino" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend,extra", [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_a_missing_runtime_names_its_extra(capsys, monkeypatch, frames_dir, tmp_path, backend,
                                           extra):
    monkeypatch.setitem(sys.modules, backend, None)  # import fails as if not installed
    err = _error(capsys, "deblur", str(frames_dir), "-o", str(tmp_path / "out"),
                 "--backend", backend, "--weights", str(tmp_path / "model.onnx"))
    assert f"pip install 'flowdeblur[{extra}]'" in err


def test_export_without_the_onnx_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    err = _error(capsys, "export", str(tmp_path / "model.onnx"))
    assert "pip install 'flowdeblur[onnx]'" in err
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.usefixtures("runtimes_installed")
@pytest.mark.parametrize("args,expected", [
    (["--backend", "onnxruntime", "--precision", "bf16"], "--precision at auto or fp32"),
    (["--backend", "onnxruntime", "--precision", "fp16"], "--precision at auto or fp32"),
    (["--backend", "onnxruntime", "--device", "cuda"], "runs on the CPU: leave --device"),
])
def test_options_the_backend_does_not_offer(capsys, frames_dir, tmp_path, args, expected):
    err = _error(capsys, "deblur", str(frames_dir), "-o", str(tmp_path / "out"),
                 "--weights", str(tmp_path / "model.onnx"), *args)
    assert expected in err


@pytest.mark.usefixtures("runtimes_installed")
def test_batch_on_ray_runs_the_torch_backend_only(capsys, frames_dir, tmp_path):
    err = _error(capsys, "batch", str(frames_dir), "-o", str(tmp_path / "out"),
                 "--backend", "onnxruntime", "--engine", "ray")
    assert "--backend onnxruntime runs with --engine local" in err


def test_a_file_that_is_not_an_export_is_refused(capsys, frames_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not a model")
    err = _error(capsys, "deblur", str(frames_dir), "-o", str(tmp_path / "out"),
                 "--backend", "onnxruntime", "--weights", str(fake))
    assert "cannot be loaded by ONNX Runtime" in err
    assert not (tmp_path / "out").exists()


def test_prepare_forward_runs_an_exported_network_itself():
    class Stub(backends.ExportedNetwork):
        def __init__(self) -> None:  # no file: only the dispatch is looked at
            pass

    stub = Stub()
    assert backends.prepare_forward(None, stub) is stub
