"""flowdeblur.runtime: the Runtime object, the stand-in RNN swap and the fast inference callable."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from flowdeblur.apps.bench.standin import StandInRNN, use_standin_rnn
from flowdeblur.cli import main
from flowdeblur.errors import UserError
from flowdeblur.inference import deblur_frames, deblur_video
from flowdeblur.media import write_image
from flowdeblur.models import FlowDeblurNet, FlowDeblurOutput, SpatialRNN
from flowdeblur.runtime import Runtime
from flowdeblur.runtime import device as device_rules
from flowdeblur.runtime.fastpath import prepare_for_inference

SIZE = (40, 72)  # not a multiple of 64: the network pads and crops


def _frames(n: int = 1, size: tuple[int, int] = SIZE, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 3, *size, generator=g).to(device) for _ in range(2)]


def _rnn_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, (SpatialRNN, StandInRNN))]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see tests/conftest.py


@pytest.fixture(scope="module")
def model() -> FlowDeblurNet:
    torch.manual_seed(0)
    return FlowDeblurNet("full", rnn_backend="torch").eval()


def _forward(model, frames):
    with torch.no_grad():
        return model(*frames)


@pytest.fixture
def prepared(monkeypatch) -> list:
    """Records every Runtime.prepare call: (the runtime, the fast forward it returned)."""
    calls = []
    real = Runtime.prepare

    def spy(self, model, **kwargs):
        fast = real(self, model, **kwargs)
        calls.append(PrepareCall(self, fast))
        return fast

    monkeypatch.setattr(Runtime, "prepare", spy)
    return calls


@dataclasses.dataclass
class PrepareCall:
    runtime: Runtime
    fast: object


def _cpuinfo(monkeypatch, tmp_path, flags: str | None) -> None:
    """Make the runtime read a /proc/cpuinfo whose CPU has ``flags`` (None: no such file)."""
    path = tmp_path / "cpuinfo"
    if flags is not None:
        path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
                        f"processor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(device_rules, "CPUINFO", path)


# ----------------------------------------------------------------------------- Runtime


@pytest.mark.parametrize(
    ("flags", "deblur_default"),
    [
        ("fpu sse2 avx2 avx512f avx512bw", "fp32"),  # AVX-512 without its bf16 extension
        ("fpu avx2 avx512f avx512_bf16", "bf16"),
        ("fpu avx2 amx_bf16 amx_tile", "bf16"),
        (None, "fp32"),  # no cpuinfo (not Linux): nothing known, so fp32
    ],
)
def test_cpu_precision_default_follows_native_bf16(monkeypatch, tmp_path, flags, deblur_default):
    _cpuinfo(monkeypatch, tmp_path, flags)
    assert Runtime.resolve("cpu").precision == deblur_default
    # Reported figures stay fp32, and fp32 is one option away.
    assert Runtime.resolve("cpu", purpose="report").precision == "fp32"
    assert Runtime.resolve("cpu", "fp32").precision == "fp32"
    assert Runtime.resolve("cpu", "bf16", purpose="report").precision == "bf16"


def test_resolve_defaults_and_refusals():
    cpu = Runtime.resolve("cpu", "fp32")
    assert cpu == Runtime(torch.device("cpu"), "fp32", channels_last=False, mode="eager")
    assert cpu.amp_dtype is None and cpu.describe() == "cpu fp32 NCHW eager"
    assert Runtime.resolve("cpu", "bf16", "compile").amp_dtype == torch.bfloat16
    with pytest.raises(dataclasses.FrozenInstanceError):
        cpu.precision = "bf16"
    for kwargs, match in [
        ({"precision": "fp16"}, "fp16 needs a CUDA device"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"mode": "graph"}, "mode 'graph' uses CUDA graphs"),
        ({"mode": "turbo"}, "unknown mode 'turbo'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ]:
        with pytest.raises(UserError, match=match):
            Runtime.resolve(**{"device": "cpu", **kwargs})
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            Runtime.resolve("cuda")


def test_autocast_is_a_no_op_for_fp32_only():
    with Runtime.resolve("cpu", "fp32").autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Runtime.resolve("cpu", "bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_prepare_runs_the_model_in_place_only_when_the_weights_stay_as_they_are(model):
    frames = _frames()
    expected = _forward(model, frames)
    fast = Runtime.resolve("cpu", "fp32").prepare(model)
    assert fast.net is model  # eager NCHW fp32: nothing to copy
    out = fast(*frames)
    assert isinstance(out, FlowDeblurOutput) and out.gates == []
    torch.testing.assert_close(out.image, expected.image, rtol=0, atol=0)
    torch.testing.assert_close(out.flows[0], expected.flows[0], rtol=0, atol=0)
    # bf16 in place: autocast casts the weights per call, with the same numbers as a copy
    # whose weights were cast once.
    in_place = Runtime.resolve("cpu", "bf16").prepare(model)
    copied = Runtime.resolve("cpu", "bf16", channels_last=True).prepare(model)
    assert in_place.net is model and copied.net is not model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(copied(*frames).image, in_place(*frames).image, rtol=0, atol=1e-2)


def test_deblur_and_bench_go_through_the_same_runtime(prepared, tmp_path, capsys):
    net = FlowDeblurNet("full", rnn_backend="torch")
    folder = tmp_path / "frames"
    for i, frame in enumerate(_frames(n=1, size=(32, 48))):
        write_image(folder / f"{i}.png", frame[0])

    deblur_video(folder, tmp_path / "out", model=net, device="cpu", progress=False)
    assert [c.runtime for c in prepared] == [Runtime.resolve("cpu")]
    list(deblur_frames(net, [f[0] for f in _frames(size=(32, 48))], device="cpu"))
    assert len(prepared) == 2

    assert main(["bench", "--quick", "--device", "cpu", "--no-rnn-layers",
                 "--rnn-backend", "torch"]) == 0
    capsys.readouterr()
    bench_calls = prepared[2:]
    # Convolutions only, then the full network: each timed through Runtime.prepare.
    assert len(bench_calls) == 2
    assert {c.runtime for c in bench_calls} == {Runtime.resolve("cpu", purpose="report")}


def test_deblur_command_defaults_to_bf16_only_on_native_bf16_cpus(monkeypatch, tmp_path,
                                                                 prepared, capsys, weights):
    folder = tmp_path / "frames"
    for i, frame in enumerate(_frames(n=1, size=(32, 48))):
        write_image(folder / f"{i}.png", frame[0])

    def deblur(*extra: str) -> str:
        out = tmp_path / f"out{len(prepared)}"
        argv = ["deblur", str(folder), "-o", str(out), "--weights", str(weights),
                "--device", "cpu", "--no-progress", *extra]
        assert main(argv) == 0
        capsys.readouterr()
        return prepared[-1].runtime.precision

    _cpuinfo(monkeypatch, tmp_path, "fpu avx2 avx512f avx512_bf16")
    assert deblur() == "bf16"
    assert deblur("--precision", "fp32") == "fp32"
    _cpuinfo(monkeypatch, tmp_path, "fpu avx2")
    assert deblur() == "fp32"


# ----------------------------------------------------------------------------- stand-in


def test_standin_keeps_shapes_changes_output_and_restores(model):
    frames = _frames()
    originals = _rnn_layers(model)
    assert len(originals) == 3 and all(isinstance(m, SpatialRNN) for m in originals)
    before = _forward(model, frames)

    with use_standin_rnn(model) as m:
        assert m is model
        swapped = _rnn_layers(model)
        assert len(swapped) == 3 and all(isinstance(s, StandInRNN) for s in swapped)
        assert [s.out_channels for s in swapped] == [o.out_channels for o in originals]
        during = _forward(model, frames)

    # Same shapes everywhere (image, five flows, three gate maps), different image.
    assert during.image.shape == before.image.shape
    assert [f.shape for f in during.flows] == [f.shape for f in before.flows]
    assert [g.shape for g in during.gates] == [g.shape for g in before.gates]
    assert (during.image - before.image).abs().max() > 1e-3
    # The flow network does not see the RNNs: its outputs are untouched.
    torch.testing.assert_close(during.flows[0], before.flows[0], rtol=0, atol=0)

    # Restored: the very same module objects, and the very same output.
    assert all(a is b for a, b in zip(_rnn_layers(model), originals))
    after = _forward(model, frames)
    torch.testing.assert_close(after.image, before.image, rtol=0, atol=0)


def test_standin_is_repeat_times_gates():
    x = torch.randn(2, 5, 3, 4)
    w = torch.tanh(torch.randn(2, 20, 3, 4))
    out = StandInRNN(5)(x, w)
    assert out.shape == (2, 20, 3, 4)
    for k in range(4):
        torch.testing.assert_close(out[:, 5 * k:5 * (k + 1)], x * w[:, 5 * k:5 * (k + 1)])


def test_standin_restores_after_an_exception(model):
    originals = _rnn_layers(model)
    with pytest.raises(RuntimeError, match="boom"), use_standin_rnn(model):
        raise RuntimeError("boom")
    assert all(a is b for a, b in zip(_rnn_layers(model), originals))


def test_standin_leaves_ablation_layers_alone():
    net = FlowDeblurNet("concat_gates").eval()  # its RNN layers are cat([x, w]), no recurrence
    frames = _frames()
    before = _forward(net, frames).image
    with use_standin_rnn(net):
        assert not any(isinstance(m, StandInRNN) for m in net.modules())
        torch.testing.assert_close(_forward(net, frames).image, before, rtol=0, atol=0)


# ----------------------------------------------------------------------------- inference


@pytest.mark.parametrize("channels_last", [False, True])
def test_prepare_cpu_fp32_matches_plain_forward(model, channels_last):
    frames = _frames(n=2)
    expected = _forward(model, frames).image
    fast = prepare_for_inference(model, device="cpu", precision="fp32",
                                 channels_last=channels_last)
    out = fast(*frames)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    # NHWC convolutions sum in another order: equal to rounding, not bit for bit.
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert "fp32" in fast.describe()


def test_prepare_leaves_the_callers_model_alone():
    net = FlowDeblurNet("full", rnn_backend="auto").train()
    fast = prepare_for_inference(net, device="cpu", precision="bf16", channels_last=True)
    assert net.training
    assert all(p.dtype == torch.float32 and p.requires_grad for p in net.parameters())
    assert all(p.is_contiguous() for p in net.parameters())
    assert {m.backend for m in net.modules() if isinstance(m, SpatialRNN)} == {"auto"}
    # The private copy: eval, frozen, bf16 weights, and "auto" pinned to a concrete backend.
    assert not fast.net.training
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in fast.net.parameters())
    backends = {m.backend for m in fast.net.modules() if isinstance(m, SpatialRNN)}
    assert len(backends) == 1 and backends <= {"cpu", "torch"}


def test_bf16_weight_cast_equals_autocast(model):
    """Casting the weights once gives exactly what autocast computes casting them per call."""
    frames = _frames()
    cast = prepare_for_inference(model, device="cpu", precision="bf16", cast_weights=True,
                                 channels_last=False)(*frames)
    plain = prepare_for_inference(model, device="cpu", precision="bf16", cast_weights=False,
                                  channels_last=False)(*frames)
    assert cast.dtype == torch.float32
    torch.testing.assert_close(cast, plain, rtol=0, atol=0)
    # And it is bf16 arithmetic: close to fp32, but not equal.
    ref = _forward(model, frames).image
    err = (cast - ref).abs().max().item()
    assert 0 < err < 0.05


def test_example_size_warms_up_and_output_is_fresh(model, monkeypatch):
    # The default on a CPU without native bf16 is fp32 (a CPU with it defaults to bf16).
    monkeypatch.setattr(device_rules, "cpu_computes_bf16", lambda: False)
    fast = prepare_for_inference(model, device="cpu", example_size=SIZE)
    assert fast.amp_dtype is None
    a, b = _frames(seed=1), _frames(seed=2)
    out_a = fast(*a)
    out_b = fast(*b)
    assert not torch.equal(out_a, out_b)
    torch.testing.assert_close(out_a, fast(*a), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"precision": "fp16"}, "fp16 needs a CUDA device"),
        ({"compile": "fastest"}, "unknown compile mode 'fastest'"),
        ({"cuda_graph": True}, "need a CUDA device"),
        ({"compile": "max-autotune"}, "need a CUDA device"),
        ({"freeze": True}, "only applies to a compiled forward"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_options_are_user_errors(model, kwargs, match):
    kwargs = {"device": "cpu", "precision": "fp32", **kwargs}
    with pytest.raises(UserError, match=match):
        prepare_for_inference(model, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_cuda_is_a_user_error(model):
    with pytest.raises(UserError, match="CUDA is not available"):
        prepare_for_inference(model, device="cuda")


def _fresh_net_for_compile() -> tuple[FlowDeblurNet, list[torch.Tensor]]:
    """A seeded network, 32x64 frames for it, and no compiled graphs left from other tests."""
    torch.manual_seed(0)
    net = FlowDeblurNet("full", rnn_backend="torch").eval()
    frames = _frames(size=(32, 64))
    torch._dynamo.reset()
    return net, frames


@pytest.mark.slow
def test_compiled_cpu_forward_matches_eager():
    net, frames = _fresh_net_for_compile()
    with use_standin_rnn(net):  # keeps the compile short: no per-row loop to unroll
        expected = _forward(net, frames).image
        fast = prepare_for_inference(net, device="cpu", precision="fp32", compile="default")
    torch.testing.assert_close(fast(*frames), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_runtime_compile_mode_returns_the_full_output():
    net, frames = _fresh_net_for_compile()
    with use_standin_rnn(net):  # keeps the compile short: no per-row loop to unroll
        expected = _forward(net, frames)
        fast = Runtime.resolve("cpu", "fp32", "compile").prepare(net)
    out = fast(*frames)
    assert isinstance(out, FlowDeblurOutput) and out.padded_size == expected.padded_size
    torch.testing.assert_close(out.image, expected.image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.flows[0], expected.flows[0], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- CUDA


@pytest.fixture(scope="module")
def cuda_model() -> FlowDeblurNet:
    torch.manual_seed(0)
    return FlowDeblurNet("full", rnn_backend="auto").eval()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_matches_cpu_reference(cuda_model, precision):
    frames = _frames(size=(64, 128))
    ref = _forward(cuda_model, frames).image
    out = prepare_for_inference(cuda_model, device="cuda", precision=precision)(
        *[f.cuda() for f in frames])
    assert out.dtype == torch.float32 and out.is_cuda
    tol = {"fp32": 1e-2, "bf16": 0.08, "fp16": 0.03}[precision]  # fp32 may use TF32 convs
    assert (out.cpu() - ref).abs().max().item() < tol


@pytest.mark.gpu
def test_cuda_forward_has_no_host_sync(cuda_model):
    fast = prepare_for_inference(cuda_model, device="cuda", precision="bf16",
                                 example_size=(64, 128))
    frames = _frames(size=(64, 128), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fast(*frames)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.gpu
def test_cuda_graph_replay_matches_eager_and_keeps_old_outputs(cuda_model):
    eager = prepare_for_inference(cuda_model, device="cuda", precision="bf16")
    graph = prepare_for_inference(cuda_model, device="cuda", precision="bf16", cuda_graph=True,
                                  example_size=(64, 128))
    a = _frames(size=(64, 128), seed=1, device="cuda")
    b = _frames(size=(64, 128), seed=2, device="cuda")
    out_a = graph(*a)
    out_b = graph(*b)  # replays into the same graph memory: out_a must be a copy
    torch.testing.assert_close(out_a, eager(*a), rtol=0, atol=2e-2)
    torch.testing.assert_close(out_b, eager(*b), rtol=0, atol=2e-2)
    assert not torch.equal(out_a, out_b)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_compiled_matches_eager(cuda_model, mode):
    torch._dynamo.reset()
    eager = prepare_for_inference(cuda_model, device="cuda", precision="bf16")
    fast = prepare_for_inference(cuda_model, device="cuda", precision="bf16", compile=mode,
                                 example_size=(64, 128))
    a = _frames(size=(64, 128), seed=1, device="cuda")
    b = _frames(size=(64, 128), seed=2, device="cuda")
    out_a, out_b = fast(*a), fast(*b)
    torch.testing.assert_close(out_a, eager(*a), rtol=0, atol=3e-2)
    torch.testing.assert_close(out_b, eager(*b), rtol=0, atol=3e-2)


@pytest.mark.gpu
def test_cuda_deblur_runs_one_cuda_graph_for_its_frame_shape(cuda_model, prepared):
    runtime = Runtime.resolve("cuda")
    assert (runtime.mode, runtime.precision, runtime.channels_last) == ("graph", "bf16", True)
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(3, 64, 96, generator=g) for _ in range(4)]
    fast = list(deblur_frames(cuda_model, frames, device="cuda"))
    assert len(prepared) == 1 and prepared[0].runtime == runtime
    assert prepared[0].fast.cuda_graph and len(prepared[0].fast.captured_shapes) == 1
    eager = list(deblur_frames(cuda_model, frames,
                               runtime=dataclasses.replace(runtime, mode="eager")))
    assert len(fast) == len(eager) == 4
    for a, b in zip(fast, eager, strict=True):
        assert a.device.type == "cpu" and a.shape == (3, 64, 96)
        torch.testing.assert_close(a, b, rtol=0, atol=2e-2)


@pytest.mark.gpu
def test_cuda_deblur_command_reports_the_graph_runtime(tmp_path, capsys, weights):
    folder = tmp_path / "frames"
    for i, frame in enumerate(_frames(n=1, size=(64, 96))):
        write_image(folder / f"{i}.png", frame[0])
    assert main(["deblur", str(folder), "-o", str(tmp_path / "out"), "--weights",
                 str(weights), "--device", "cuda", "--no-progress"]) == 0
    assert "bf16 channels_last graph" in capsys.readouterr().out
    assert len(list((tmp_path / "out").iterdir())) == 2


@pytest.mark.parametrize("frames, compiler, mode", [
    (device_rules.COMPILE_MIN_FRAMES, "/usr/bin/g++", "compile"),
    (device_rules.COMPILE_MIN_FRAMES - 1, "/usr/bin/g++", "eager"),  # a short clip
    (None, "/usr/bin/g++", "eager"),  # length unknown
    (device_rules.COMPILE_MIN_FRAMES, None, "eager"),  # nothing to compile with
])
def test_auto_mode_compiles_long_bf16_inputs_on_the_cpu(monkeypatch, frames, compiler, mode):
    monkeypatch.setattr(device_rules, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(device_rules, "cpp_compiler", lambda: compiler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime = Runtime.resolve("cpu", "auto", frames=frames)
    assert (runtime.precision, runtime.mode) == ("bf16", mode)
    assert runtime.freeze == (mode == "compile")
    assert any("no C++ compiler" in str(w.message) for w in caught) == (
        compiler is None and frames is not None)
    # The same rule once the length is known; a tiled run stays eager; a mode asked stays.
    later = Runtime.resolve("cpu", "auto").for_frames(frames or 0)
    assert later.mode == (mode if frames is not None else "eager")
    assert Runtime.resolve("cpu", "auto").for_frames(500, tiled=True).mode == "eager"
    assert Runtime.resolve("cpu", "auto", "eager").for_frames(500).mode == "eager"
    assert Runtime.resolve("cpu", "fp32", frames=500).mode == "eager"  # measured for bf16 only
    assert Runtime.resolve("cpu", "auto", purpose="report", frames=500).mode == "eager"
