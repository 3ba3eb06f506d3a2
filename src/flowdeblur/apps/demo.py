"""`flowdeblur demo`: deblur a short synthetic clip with known ground truth and show the gain.

The clip comes from the package's synthetic engine (:func:`flowdeblur.data.synthetic.make_clip`:
bundled real photos moved along known paths and blurred by averaging sub-frames), so the
sharp frames and the true flow are known and the result can be scored. Outputs in
``out_dir``:

- ``side_by_side.mp4``: blurry input | deblurred | ground truth, every frame;
- ``frame.png``: the same three panels for the middle frame;
- ``flow.png``: the network's flow for the middle frame | the true flow, both colour-coded
  with the Middlebury wheel on one scale (:func:`flowdeblur.viz.flow_to_color`).

Default clip: 8 frames of 256 x 384, small enough for a 2-core CPU in about a minute.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.synthetic import SceneConfig, clip_config, make_clip
from ..errors import OptionError, UserError
from ..evaluation.metrics import psnr, ssim
from ..inference import deblur_frames
from ..inference.ensemble import check_ensemble
from ..media import VideoWriter, write_image
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..viz import flow_to_color, side_by_side
from ..weights import load_pretrained

#: Default clip: frames, (height, width). Both sides are multiples of 64 (no padding waste).
DEFAULT_FRAMES = 8
DEFAULT_SIZE = (256, 384)

#: What each output file shows, left to right.
DESCRIPTIONS = {
    "video": "blurry input | deblurred | ground truth, every frame",
    "still": "blurry input | deblurred | ground truth, middle frame",
    "flow": "estimated flow | true flow, middle frame (Middlebury colours, one scale)",
}


@dataclass
class DemoResult:
    """Scores of the demo clip (means over its frames) and the files written."""

    psnr_blurry: float
    ssim_blurry: float
    psnr_deblurred: float
    ssim_deblurred: float
    seconds_clip: float  # making the synthetic clip
    seconds_deblur: float  # running the network over it
    #: "video", "still" and (for models with a flow network) "flow" -> the file written.
    files: dict[str, Path] = field(default_factory=dict)

    def table(self) -> str:
        """The before/after scores as a small text table."""
        rows = [
            f"{'':<12}{'PSNR (dB)':>10}{'SSIM':>8}",
            f"{'blurry':<12}{self.psnr_blurry:>10.2f}{self.ssim_blurry:>8.4f}",
            f"{'deblurred':<12}{self.psnr_deblurred:>10.2f}{self.ssim_deblurred:>8.4f}",
        ]
        return "\n".join(rows)


def _mean_finite(values: torch.Tensor) -> float:
    """Mean of per-frame scores; identical frames give PSNR inf, kept out of the mean."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else float("inf")


def demo_scene(size: tuple[int, int]) -> SceneConfig:
    """The demo's scene: a photographic clip (``clip_config``) with clearly visible blur:
    about 8 px of motion per frame and finer texture detail (blurry PSNR about 23 dB)."""
    return dataclasses.replace(
        clip_config(size), max_camera_motion=24.0, max_object_motion=24.0,
        texture_scale=(1.0, 1.6),
    )


def run_demo(
    out_dir: str | os.PathLike = "demo_out",
    *,
    model: FlowDeblurNet | None = None,
    num_frames: int = DEFAULT_FRAMES,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: bool = True,
    ensemble: int = 1,
) -> DemoResult:
    """Make a blurry clip with known ground truth, deblur it, score it, write pictures.

    Args:
        out_dir: folder for side_by_side.mp4, frame.png and flow.png (created; files in it
            with those names are replaced).
        model: the network; None loads the shipped weights.
        num_frames: clip length (>= 2, so that the flow guidance is on).
        size: (height, width) of the clip, each >= 64.
        seed: seed of the synthetic clip (same seed, same clip).
        device, precision: see :meth:`flowdeblur.runtime.Runtime.resolve`; the demo's scores
            are figures the project reports, so "auto" precision is fp32.
        ensemble: flipped copies averaged per frame (1, 2, 4 or 8; see
            :func:`flowdeblur.inference.deblur_frames`).
    Returns:
        A :class:`DemoResult` with mean PSNR / SSIM of the blurry and the deblurred frames
        against the sharp ones.
    """
    if num_frames < 2:
        raise OptionError("num_frames", f"{{option}} must be at least 2, got {num_frames}")
    h, w = size
    if h < 64 or w < 64:
        raise OptionError("size", f"{{option}} must be at least 64x64, got {w}x{h} (width x "
                          "height)")
    check_ensemble(ensemble)
    runtime = Runtime.resolve(device, precision, purpose="report")  # checked before slow parts
    dev = runtime.device
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if model is None:
        model = load_pretrained()

    start = time.perf_counter()
    clip = make_clip(num_frames, (h, w), seed=seed, config=demo_scene((h, w)), device=dev)
    blur = clip["blur"].float().cpu().clamp(0, 1)  # (T, 3, H, W)
    sharp = clip["sharp"].float().cpu().clamp(0, 1)
    true_flow = clip["flow"].float().cpu()  # (T-1, 2, H, W), frame t -> t+1
    seconds_clip = time.perf_counter() - start

    start = time.perf_counter()
    want_flow = model.flownet is not None
    outputs, flows = [], []
    stream = deblur_frames(model, list(blur), runtime=runtime, return_flow=want_flow,
                           ensemble=ensemble)
    for item in tqdm(stream, total=num_frames, unit="frame", disable=not progress, leave=False):
        image, flow = item if want_flow else (item, None)
        outputs.append(image.cpu())
        flows.append(flow.cpu() if flow is not None else None)
    deblurred = torch.stack(outputs)
    seconds_deblur = time.perf_counter() - start

    result = DemoResult(
        psnr_blurry=_mean_finite(psnr(blur, sharp)),
        ssim_blurry=_mean_finite(ssim(blur, sharp)),
        psnr_deblurred=_mean_finite(psnr(deblurred, sharp)),
        ssim_deblurred=_mean_finite(ssim(deblurred, sharp)),
        seconds_clip=seconds_clip,
        seconds_deblur=seconds_deblur,
    )

    panels = side_by_side(blur, deblurred, sharp)  # (T, 3, H, 3W)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "side_by_side.mp4"
    # Slow enough to see each frame; the clip is only a few frames long.
    with VideoWriter(video, fps=4, width=panels.shape[-1], height=h, crf=16) as writer:
        for frame in panels:
            writer.write(frame)
    middle = (num_frames - 1) // 2  # has a successor, so its true flow t -> t+1 exists
    still = out_dir / "frame.png"
    write_image(still, panels[middle])
    result.files = {"video": video, "still": still}
    if flows[middle] is not None:
        # One scale for both pictures, so colours compare directly.
        scale = float(true_flow[middle].norm(dim=0).max().clamp_min(1.0))
        pictures = side_by_side(
            flow_to_color(flows[middle], max_flow=scale),
            flow_to_color(true_flow[middle], max_flow=scale),
        )
        flow_png = out_dir / "flow.png"
        write_image(flow_png, pictures)
        result.files["flow"] = flow_png
    return result
