"""flowdeblur.apps.bench and the `flowdeblur bench` command."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from flowdeblur.apps import bench
from flowdeblur.apps.bench import (
    BenchReport,
    InferenceResult,
    RnnLayerResult,
    Timing,
    TrainResult,
    format_report,
    time_callable,
)
from flowdeblur.cli import main
from flowdeblur.cli.bench import parse_size
from flowdeblur.errors import UserError

DATASHEETS = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_datasheets.py"


def _load_datasheets():
    spec = importlib.util.spec_from_file_location("gpu_datasheets", DATASHEETS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple looks its module up while building
    spec.loader.exec_module(module)
    return module


peak_fp32_tflops = _load_datasheets().peak_fp32_tflops

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see tests/conftest.py


def _row(out: str, device: str, precision: str, mode: str) -> list[str]:
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:3] == [device, precision, mode]:
            return cells
    raise AssertionError(f"no {device}/{precision}/{mode} row in:\n{out}")


# ----------------------------------------------------------------------------- the command


def test_quick_bench_prints_table_with_parameters_and_ratio(capsys, tmp_path):
    out_json = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--device", "cpu", "--modes", "eager,cudagraphs",
               "--rnn-backend", "torch", "--json", str(out_json)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "8,281,696 parameters" in out
    assert "| convs only (ms) | full network (ms) | full / convs |" in out
    assert "`flowdeblur bench --device cpu --quick --modes eager,cudagraphs --rnn-backend torch`" \
        in out
    cells = _row(out, "cpu", "fp32", "eager")
    convs, full, ratio = (float(c.replace(",", "")) for c in cells[3:6])
    assert convs > 0 and full > 0
    assert ratio == pytest.approx(full / convs, rel=0.02)  # the ratio of the printed times
    assert "needs CUDA" in " ".join(_row(out, "cpu", "fp32", "cudagraphs"))
    # RNN layers alone, at the quick size's shapes (64x128 frame, already a multiple of 64).
    assert "x 1x24x32x64 | x 1x48x16x32 | x 1x96x8x16 | together" in out

    data = json.loads(out_json.read_text())
    assert data["parameters"] == 8_281_696
    eager = data["inference"][0]
    assert eager["mode"] == "eager" and eager["ratio"] == pytest.approx(
        eager["full"]["median_s"] / eager["convs"]["median_s"])
    assert data["rnn_layers"][0]["shapes"][0] == [1, 24, 32, 64]
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind


@pytest.mark.slow
def test_quick_bench_train_step(capsys):
    rc = main(["bench", "--quick", "--device", "cpu", "--train", "--rnn-backend", "torch",
               "--precision", "bf16"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Training step (batch 2, 64x64" in out
    cells = _row(out.split("Training step")[1], "cpu", "fp32", "eager")
    standin, full, ratio = (float(c.replace(",", "")) for c in cells[3:6])
    assert ratio == pytest.approx(full / standin, rel=0.02)
    # RNN layers: forward at inference shapes (bf16 asked) and forward + backward at the
    # training shapes (batch 2 of 64x64, fp32: the CPU default for training).
    fwd, bwd = out.split("RNN layers alone")[1:3]
    assert fwd.startswith(" (forward;") and "| cpu | bf16 | torch |" in fwd
    assert bwd.startswith(" (forward + backward, training shapes;")
    assert "x 2x24x32x32 | x 2x48x16x16 | x 2x96x8x8 |" in bwd and "| cpu | fp32 | torch |" in bwd


def test_no_rnn_layers_flag(capsys):
    assert main(["bench", "--quick", "--device", "cpu", "--no-rnn-layers",
                 "--rnn-backend", "torch"]) == 0
    assert "RNN layers alone" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--precision", "fp8"], "--precision takes a comma list"),
        (["--modes", "turbo"], "--modes takes a comma list"),
        (["--size", "720by1280"], "--size must look like 720x1280"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
        (["--rnn-backend", "magic"], "unknown RNN backend 'magic'"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_bad_options_print_one_line(capsys, argv, message):
    assert main(["bench", "--quick", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("flowdeblur: error:") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_parse_size():
    assert parse_size("720x1280") == (720, 1280)
    assert parse_size("256X256") == (256, 256)
    for bad in ("720", "0x5", "axb", "1x2x3"):
        with pytest.raises(UserError):
            parse_size(bad)


# ----------------------------------------------------------------------------- pieces


def test_time_callable_reports_the_median(monkeypatch):
    """With a fake clock, each call 'takes' the next duration: warm-up apart, median kept."""
    durations = iter([9.0, 5.0, 1.0, 3.0, 2.0])  # first is the warm-up call
    clock = [0.0]

    def fake_perf_counter():
        return clock[0]

    def call():
        clock[0] += next(durations)

    monkeypatch.setattr(bench.timing.time, "perf_counter", fake_perf_counter)
    t = time_callable(call, device="cpu", repeats=4, warmup=1)
    assert t.first_call_s == 9.0
    assert t.median_s == 2.5 and t.min_s == 1.0 and t.max_s == 5.0
    assert t.repeats == 4


def test_conv_flops_match_the_papers_network():
    # docs/BENCHMARKS.md: the Table I skeleton does 191 GFLOP per padded 720p frame.
    gflop = bench.count_conv_gflop("full", (768, 1280))
    assert gflop is not None and 185 < gflop < 197


def test_peak_table_tells_h100_parts_apart():
    assert peak_fp32_tflops("NVIDIA H100 80GB HBM3") == ("H100 SXM", 66.9)
    assert peak_fp32_tflops("NVIDIA H100 PCIe")[1] == 51.2
    assert peak_fp32_tflops("NVIDIA H200")[1] == 66.9
    assert peak_fp32_tflops("Some Future GPU") is None


def _timing(ms: float) -> Timing:
    return Timing(median_s=ms / 1e3, min_s=ms / 1e3, max_s=ms / 1e3, repeats=5, warmup=1,
                  first_call_s=30.0)


def _gpu_report(gpu: str = "NVIDIA H100 80GB HBM3") -> BenchReport:
    machine = bench.machine_info()
    machine["gpus"] = [gpu]
    return BenchReport(
        command="flowdeblur bench --device cuda", date="2025-01-01 00:00 UTC", machine=machine,
        variant="full", parameters=8_281_696, size=(720, 1280), padded_size=(768, 1280),
        batch=1, backends={"cuda": "triton"}, conv_gflop=191.0,
        inference=[
            InferenceResult("cuda", "fp32", "eager", _timing(6.0), _timing(8.0), 1.5),
            InferenceResult("cuda", "bf16", "cudagraphs", _timing(2.5), _timing(4.0), 1.0),
            InferenceResult("cuda", "bf16", "compile", error="RuntimeError: broke"),
        ],
        rnn_layers=[RnnLayerResult("cuda", "bf16", "triton", [(1, 24, 384, 640)] * 3,
                                   [_timing(0.2), _timing(0.1), _timing(0.05)])],
        train=[TrainResult("cuda", "bf16", "eager", 20, (256, 256), _timing(17.0),
                           _timing(20.0))],
    )


def test_report_figures_and_paper_comparison():
    peak = peak_fp32_tflops("NVIDIA H100 80GB HBM3")  # as benchmarks/bench_model.py passes it
    text = format_report(_gpu_report(), peak_tflops=peak.tflops, peak_part=peak.part)
    assert "Inference on cuda = NVIDIA H100 80GB HBM3," in text
    assert "191.0 GFLOP per forward" in text
    cells = _row(text, "cuda", "bf16", "cudagraphs")
    assert cells[3:10] == ["2.50", "4.00", "1.60", "1.50", "250.0", "30.0", "1.00"]
    assert "RuntimeError: broke" in " ".join(_row(text, "cuda", "bf16", "compile"))
    assert "| 0.350 |" in text  # the three RNN layers together
    assert "| 17.00 | 20.00 | 1.18 |" in text  # training step, stand-in vs full
    # 0.20 s / 4.0 ms = 50x; per unit of hardware: 50 / (66.9 / 12.1) = 9.0x.
    assert "4.00 ms (bf16, cudagraphs)" in text and "50x the paper's speed" in text
    assert "9.0x per unit of hardware" in text
    assert "TITAN Xp 12.1 TFLOP/s, H100 SXM 66.9 TFLOP/s" in text
    assert "fastest fp32 here: 8.00 ms" in text  # 25x, 4.5x per unit of hardware
    assert "4.5x per unit of hardware" in text
    # 191 GFLOP in 2.5 ms.
    assert "76.4 TFLOP/s achieved" in text


def test_report_compares_per_unit_of_hardware_only_when_given_a_peak():
    text = format_report(_gpu_report())
    assert "per unit of hardware" in text and "pass --peak-tflops" in text
    assert "x per unit of hardware" not in text and "Hardware basis" not in text
    cpu_only = _gpu_report()
    cpu_only.inference = [InferenceResult("cpu", "fp32", "eager", _timing(600.0), _timing(900.0))]
    assert "Paper (Table III)" not in format_report(cpu_only, peak_tflops=66.9)


def test_report_unknown_gpu_asks_for_peak():
    text = format_report(_gpu_report("Mystery Accelerator"))
    assert "pass --peak-tflops" in text
    text = format_report(_gpu_report("Mystery Accelerator"), peak_tflops=24.2)
    assert "25.0x per unit of hardware" in text  # 50x / (24.2 / 12.1)


def test_write_json_to_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        bench.write_json(_gpu_report(), tmp_path / "nope" / "out.json")


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
def test_quick_bench_on_cuda(capsys):
    rc = main(["bench", "--quick", "--device", "cuda", "--modes", "eager,graph",
               "--precision", "bf16", "--train"])
    assert rc == 0
    out = capsys.readouterr().out
    for mode in ("eager", "graph"):
        cells = _row(out, "cuda", "bf16", mode)
        assert float(cells[5]) > 0  # a ratio, not an error
    assert torch.cuda.get_device_name(0) in out
