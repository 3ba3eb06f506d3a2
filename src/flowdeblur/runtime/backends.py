"""Running the network exported by ``flowdeblur export`` in ONNX Runtime or OpenVINO.

``deblur --backend onnxruntime|openvino`` runs an exported model (``--weights MODEL.onnx``)
through the same streaming, tiling, scene-cut and output code as the PyTorch network:
:class:`ExportedNetwork` stands where inference takes a :class:`~flowdeblur.models.FlowDeblurNet`
(``in_frames``, ``variant``, ``flownet``, the weights' digest for provenance), and
:func:`prepare_forward` gives inference its forward, a callable
``forward(frame_t, frame_next, frame_prev) -> FlowDeblurOutput`` either way.

The graph (docs/EXPORT.md) takes one input ``frames`` (N, 6, H, W): frame t then its
neighbour, RGB in [0, 1]; it pads to multiples of 64 and crops back inside. Output ``image``
is the deblurred frame t, unclamped; output ``flow`` the finest flow (t -> neighbour) at 1/4
of the padded size, which the scene-cut test reads.

Both runtimes run on the CPU. Precisions (``--precision``): ONNX Runtime runs the graph as
exported, fp32 (``auto`` = fp32; nothing else is offered). OpenVINO's CPU plugin takes an
inference precision: ``auto`` is the plugin's own default (bf16 on CPUs with native bf16,
else fp32), ``fp32`` and ``bf16`` ask for that one (bf16 only where the plugin offers it).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from ..errors import OptionError, UserError
from ..models import FlowDeblurOutput, padded_size

#: What ``--backend`` may be: the PyTorch network, or an exported model in one of two runtimes.
BACKENDS = ("torch", "onnxruntime", "openvino")

#: backend -> (the module it imports, the extra that installs it).
RUNTIME_MODULES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}

#: The file name suffix of an exported model.
ONNX_SUFFIX = ".onnx"

#: Names of the exported graph's input and outputs.
INPUT_NAME, IMAGE_NAME, FLOW_NAME = "frames", "image", "flow"

#: Metadata keys (ONNX ``metadata_props``) of an export; FORMAT_KEY holds :data:`FORMAT`.
FORMAT_KEY = "flowdeblur.format"
FORMAT = "flowdeblur-onnx-1"
INPUT_KEY = "flowdeblur.input"
OUTPUTS_KEY = "flowdeblur.outputs"
VERSION_KEY = "flowdeblur.version"
VARIANT_KEY = "flowdeblur.variant"
WEIGHTS_KEY = "flowdeblur.weights_sha256"
#: The ownership record of an export (``--overwrite`` replaces only a file carrying it).
OWNER_KEY, OWNER_TAG = "flowdeblur.written_by", "written by flowdeblur export"

#: Precision name -> OpenVINO's ``INFERENCE_PRECISION_HINT`` value.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def import_runtime(backend: str):
    """The runtime module of ``backend``; UserError naming the extra to install without it."""
    module, extra = RUNTIME_MODULES[backend]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"--backend {backend} needs the {extra} extra: "
                        f"pip install 'flowdeblur[{extra}]'") from None


def check_backend(backend: str, weights: str | None, *, device: str = "auto") -> None:
    """UserError for an unknown backend, an ONNX file given to the torch backend, a device
    other than the CPU for an exported model, or a runtime that is not installed."""
    if backend not in BACKENDS:
        raise OptionError("backend", f"{{option}} must be one of {', '.join(BACKENDS)}, "
                                     f"got {backend!r}")
    is_onnx = weights is not None and Path(weights).suffix.lower() == ONNX_SUFFIX
    if backend == "torch":
        if is_onnx:
            raise UserError(f"--weights {weights} is an exported ONNX model: run it with "
                            "--backend onnxruntime or --backend openvino")
        return
    if str(device) not in ("auto", "cpu"):
        raise OptionError("device", f"--backend {backend} runs on the CPU: leave {{option}} "
                                    f"at auto or cpu, not {device}")
    import_runtime(backend)


def backend_precision(backend: str, precision: str) -> str:
    """The precision an exported model runs in for ``--precision`` (see the module docstring);
    OptionError for one the backend does not offer."""
    if backend == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise OptionError("precision", f"--backend onnxruntime runs the exported model "
                              f"in fp32: leave {{option}} at auto or fp32, not {precision} "
                              "(bf16 and int8 are offered by the torch backend)")
        return "fp32"
    ov = import_runtime("openvino")
    core = ov.Core()
    capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if precision == "auto":
        default = core.get_property("CPU", "INFERENCE_PRECISION_HINT")
        return "bf16" if default == ov.Type.bf16 else "fp32"
    if precision not in OPENVINO_PRECISIONS:
        raise OptionError("precision", f"--backend openvino runs the exported model in fp32 "
                          f"or bf16: {{option}} {precision} is not offered")
    if precision == "bf16" and "BF16" not in capabilities:
        raise OptionError("precision", "{option} bf16: OpenVINO's CPU plugin offers no bf16 "
                          "on this CPU; use fp32")
    return precision


# ----------------------------------------------------------------------------- runtimes


def _onnxruntime_session(path: Path):
    """(run(frames) -> outputs, metadata, output names) of an ONNX Runtime CPU session."""
    ort = import_runtime("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unusable files
        raise UserError(f"{path} cannot be loaded by ONNX Runtime ({_first_line(e)})") from None
    names = [o.name for o in session.get_outputs()]
    metadata = dict(session.get_modelmeta().custom_metadata_map)

    def run(frames: np.ndarray) -> list[np.ndarray]:
        return session.run(names, {INPUT_NAME: frames})

    return run, metadata, names


def _openvino_session(path: Path, precision: str):
    """(run(frames) -> outputs, metadata, output names) of an OpenVINO CPU compiled model."""
    ov = import_runtime("openvino")
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError and its own types for bad files
        raise UserError(f"{path} cannot be read by OpenVINO ({_first_line(e)})") from None
    metadata = {}
    if model.has_rt_info(["framework"]):
        framework = model.get_rt_info()["framework"]  # a dict of OVAny values
        metadata = {str(k): v.astype(str) for k, v in framework.items()}
    names = [o.get_any_name() for o in model.outputs]
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
              "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(frames: np.ndarray) -> list[np.ndarray]:
        results = request.infer({INPUT_NAME: frames})
        # The request reuses its output buffers on the next call: copy them out.
        return [np.array(results[compiled.output(name)], copy=True) for name in names]

    return run, metadata, names


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


# ----------------------------------------------------------------------------- the network


class ExportedNetwork:
    """An exported model loaded in ONNX Runtime or OpenVINO, used where inference takes the
    PyTorch network. UserError if ``path`` is not a flowdeblur export with a flow output.

    Attributes read by inference: ``in_frames`` (2: frame t and its neighbour), ``variant``,
    ``flownet`` (the name of the flow output: never None, as every usable export has one),
    ``weights_sha256`` (the digest of the weights it was exported from, from its metadata).
    """

    in_frames = 2

    def __init__(self, path: str | Path, backend: str, precision: str = "fp32") -> None:
        if backend not in RUNTIME_MODULES:
            raise ValueError(f"backend must be one of {sorted(RUNTIME_MODULES)}, got {backend!r}")
        self.path = Path(path)
        self.backend = backend
        self.precision = precision
        if not self.path.is_file():
            raise UserError(f"exported model not found: {self.path}")
        self._load()

    def _load(self) -> None:
        if self.backend == "onnxruntime":
            self._run, metadata, names = _onnxruntime_session(self.path)
        else:
            self._run, metadata, names = _openvino_session(self.path, self.precision)
        if metadata.get(FORMAT_KEY) != FORMAT:
            raise UserError(f"{self.path} is not a model written by flowdeblur export "
                            f"(no {FORMAT_KEY} = {FORMAT} in its metadata)")
        if names[:2] != [IMAGE_NAME, FLOW_NAME]:
            raise UserError(f"{self.path} has no {FLOW_NAME!r} output (exported with "
                            "--image-only?); deblur needs it: export without --image-only")
        self.metadata = metadata
        self.variant = metadata.get(VARIANT_KEY, "unknown")
        self.weights_sha256 = metadata.get(WEIGHTS_KEY, "")
        self.flownet = FLOW_NAME

    def __getstate__(self) -> dict:
        # A session cannot be pickled: a copy loads the file again.
        return {"path": self.path, "backend": self.backend, "precision": self.precision}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load()

    def __call__(self, frame_t: torch.Tensor, frame_next: torch.Tensor | None = None,
                 frame_prev: torch.Tensor | None = None) -> FlowDeblurOutput:
        """(N, 3, H, W) frames in [0, 1] -> FlowDeblurOutput on the CPU: float32 ``image``
        (unclamped) and ``flows`` = [the finest flow]; gates are not exported."""
        if frame_next is None:
            frame_next = frame_t
        frames = torch.cat([frame_t, frame_next], dim=1).detach()
        frames = frames.to("cpu", torch.float32).contiguous().numpy()
        image, flow = self._run(frames)[:2]
        return FlowDeblurOutput(image=torch.from_numpy(image), flows=[torch.from_numpy(flow)],
                                padded_size=padded_size(tuple(frame_t.shape[-2:])))

    def describe(self) -> str:
        """One line, e.g. ``onnxruntime cpu fp32 (model.onnx)``."""
        return f"{self.backend} cpu {self.precision} ({self.path.name})"


def prepare_forward(runtime, model):
    """Inference's forward for ``model``: an :class:`ExportedNetwork` runs itself; a PyTorch
    network runs through ``runtime.prepare`` (:meth:`flowdeblur.runtime.Runtime.prepare`)."""
    if isinstance(model, ExportedNetwork):
        return model
    return runtime.prepare(model)
