"""Real-footage dev and test clips, blurred as REDS was, and the scores of weights on them.

Two definitions (``--definition``): ``small`` (``references/real_clips.json``, the default:
small motion) and ``motion`` (``references/real_clips_motion.json``: large motion). The clips
come from real camera footage that Debian packages ship, fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` into a cache folder outside the repository (``--cache``, default
``$FLOWDEBLUR_REAL_CLIPS`` or ``~/.cache/flowdeblur/real_clips``). Every source file is checked
against the sha256 recorded in the definition, and the script refuses to go on when one
differs.

Blur, per clip (factors in the JSON): the frame rate is raised by optical-flow interpolation
(OpenCV's DIS flow), ``span`` frame intervals around an original frame are averaged in linear
light (sRGB curve) and the mean is re-encoded to 8-bit sRGB; the sharp target is that original
frame. Grey sources are replicated to three channels. The DEV clips are for choosing between
training recipes; the TEST clips are never used for a choice.

A definition with a "measures" section (``motion``) also has, per clip, measures computed at
build time (duty = span / stride, the 90th percentile of blur length over moving pixels, the
moving fraction, the source's noise sigma; their definitions are in its JSON description), rules
the script checks (blur band, median duty per split, one split per source video), a noisy
variant of the blurry frames (noise and an H.264 round trip re-applied after averaging), and
scores with PSNR over the moving pixels, for the clean and the noisy variant.

Scores, per clip and as the mean of the clip means over dev and over test: PSNR / SSIM (RGB,
``flowdeblur.evaluation.metrics``) of the blurry input, of unsharp masking with (sigma, amount)
tuned by ``flowdeblur.evaluation.heldout`` (on training scenes of
``configs/cpu_shipped.yaml``, never on these clips), and of flowdeblur in fp32 with its outputs
quantised to 8 bits. Frame t is paired with t+1 and the last frame with t-1
(``flowdeblur.deblur_frames``).

Needs ``opencv-python-headless`` (the ``[bench]`` extra: ``pip install -e ".[bench]"``) and, for
the first build, ``apt-get`` and ``dpkg``. OpenCV's decoder, DIS flow and remap, and the numpy
sRGB curve below, are part of the clips' definition (their digests in the JSON): the package's
own video reader, warp and torch sRGB curve differ from them in the last bits.

Other scripts score weights through :func:`score_weights` and :func:`score_dev`.

    python references/real_clips.py [--definition small|motion] [--weights FILE]
                                    [--split dev|test|all] [--json OUT]
    python references/real_clips.py --build-only          # fetch, verify and blur; no scoring
    python references/real_clips.py --look DIR            # deblur a frame of the look-only clips
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from common import scene_settings
from PIL import Image

import flowdeblur
from flowdeblur.evaluation.baselines import unsharp_mask
from flowdeblur.evaluation.heldout import tune_unsharp_on_training_scenes
from flowdeblur.evaluation.metrics import psnr, quantize_8bit, ssim, temporal_error
from flowdeblur.media.atomic import atomic_write_text, file_sha256
from flowdeblur.runtime import Runtime
from flowdeblur.weights import PRETRAINED

try:
    import cv2
except ImportError:  # the [bench] extra; require_opencv() says how to get it
    cv2 = None

#: The clip definitions by name: "small" (the first set, small motion; the default) and
#: "motion" (large motion, physically consistent blur, with a noisy variant of every clip).
DEFINITIONS = {"small": Path(__file__).with_name("real_clips.json"),
               "motion": Path(__file__).with_name("real_clips_motion.json")}
DEFINITION = DEFINITIONS["small"]
DEFAULT_CACHE = Path(
    os.environ.get("FLOWDEBLUR_REAL_CLIPS", Path.home() / ".cache" / "flowdeblur" / "real_clips")
)
DEFAULT_CONFIG = "configs/cpu_shipped.yaml"
#: Bumped whenever the blur synthesis code changes, so cached clips are rebuilt.
SYNTHESIS_VERSION = 1
#: Bumped whenever the code of the measures or the noisy variant changes, likewise.
MEASURES_VERSION = 3


class DefinitionError(SystemExit):
    """A refusal: the sources or the definition are not what the benchmark was recorded with."""


def require_opencv() -> None:
    """Exit with a one-line message without OpenCV; otherwise use one OpenCV thread."""
    if cv2 is None:
        sys.exit("references/real_clips.py needs OpenCV: pip install -e \".[bench]\" "
                 "(or pip install opencv-python-headless)")
    cv2.setNumThreads(1)  # one thread keeps DIS deterministic and leaves the CPU to others


# ----------------------------------------------------------------------------- sources


def deb_version(deb: Path) -> str:
    """The Version field of a .deb (``dpkg-deb -f``)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def download_deb(package: str, version: str, debs: Path) -> Path:
    """The .deb of ``package`` at ``version`` in ``debs``, fetched with apt-get when missing."""
    debs.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob(f"{package}_*.deb")):
        if deb_version(deb) == version:
            return deb
    result = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs,
                            capture_output=True, text=True)
    found = [d for d in sorted(debs.glob(f"{package}_*.deb")) if deb_version(d) == version]
    if result.returncode != 0 or not found:
        raise DefinitionError(
            f"could not fetch {package}={version} with apt-get download ({result.stderr.strip()})."
            f" Put that .deb into {debs} by hand, or run `apt-get update` first."
        )
    return found[0]


def unpacked_package(package: str, version: str, cache: Path) -> Path:
    """The root folder of ``package``'s unpacked files (``dpkg -x``), unpacking when needed."""
    root = cache / "packages" / f"{package}_{version}"
    done = root / ".unpacked"
    if not done.is_file():
        deb = download_deb(package, version, cache / "debs")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        done.write_text(file_sha256(deb) + "\n")
    return root


def clip_source_files(clip: dict) -> list[str]:
    """Paths (inside the package) of every source file a clip (or look-only clip) reads."""
    if "video" in clip:
        return [clip["video"]]
    lo, hi = frame_range(clip)
    return [clip["images"].format(i) for i in range(lo, hi + 1)]


def verify_sources(clip: dict, package: dict, root: Path) -> None:
    """Refuse (DefinitionError) unless every source file of ``clip`` has its recorded sha256."""
    for rel in clip_source_files(clip):
        want = package["files"].get(rel)
        path = root / rel
        if want is None:
            raise DefinitionError(f"the definition records no sha256 for {rel} ({clip['name']})")
        if not path.is_file():
            raise DefinitionError(f"{clip['package']} {package['version']} lacks {rel}")
        got = file_sha256(path)
        if got != want:
            raise DefinitionError(
                f"sha256 mismatch for {rel} of {clip['package']} {package['version']}: "
                f"expected {want}, found {got}. The clips would not be the recorded ones; "
                "refusing to use them."
            )


# ----------------------------------------------------------------------------- frames


def frame_range(clip: dict) -> tuple[int, int]:
    """(first, last) original frame indices a clip's blur windows touch, inclusive."""
    half = clip["span"] / 2
    last_centre = clip["first_centre"] + (clip["frames"] - 1) * clip["stride"]
    return math.floor(clip["first_centre"] - half), math.ceil(last_centre + half)


def read_video(path: Path, lo: int, hi: int, dedup: bool = False) -> list[np.ndarray]:
    """Frames lo..hi (inclusive) of a video file as (H, W, 3) uint8 RGB arrays.

    ``dedup``: count and return only frames that differ from the decoded frame before them, so
    indices refer to the sequence without repeated frames (a frame-rate conversion by
    repetition leaves pairs without motion, which no camera exposure would produce).
    """
    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    previous = None
    while index <= hi:
        ok, bgr = capture.read()
        if not ok:
            raise DefinitionError(f"{path} ends at frame {index}, before frame {hi}")
        if dedup and previous is not None and np.array_equal(bgr, previous):
            continue
        previous = bgr
        if index >= lo:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    return frames


def read_image(path: Path) -> np.ndarray:
    """One 8-bit image file as (H, W, 3) uint8 RGB; grey images are replicated to 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        raise DefinitionError(f"{path} is not an 8-bit image OpenCV can read")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def source_frames(clip: dict, root: Path) -> list[np.ndarray]:
    """The original frames ``frame_range(clip)`` of a clip, (H, W, 3) uint8 RGB each."""
    lo, hi = frame_range(clip)
    if "video" in clip:
        return read_video(root / clip["video"], lo, hi, clip.get("dedup", False))
    return [read_image(root / rel) for rel in clip_source_files(clip)]


# ----------------------------------------------------------------------------- blur synthesis


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> float32 linear light in [0, 1] (IEC 61966-2-1 curve)."""
    c = image.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """(..., 3) float linear light -> uint8 sRGB, rounding halves up as ``quantize_8bit``."""
    x = np.clip(linear, 0.0, 1.0)
    c = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.floor(np.clip(c, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from frame a to frame b ((H, W, 3) uint8) -> (H, W, 2) float32 pixels."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey_a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    grey_b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return dis.calc(grey_a, grey_b, None)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear; (H, W, 3) float32 and (H, W, 2) -> (H, W, 3)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate(i0: np.ndarray, i1: np.ndarray, f01: np.ndarray, f10: np.ndarray,
                a: float) -> np.ndarray:
    """The frame at time a in (0, 1) between linear-light frames i0 and i1, (H, W, 3) float32.

    The flows from time a to each end are the linear combinations of Jiang et al. (2018,
    Super SloMo, Eq. 4), which treat the motion as locally constant in time; each end is
    warped there and the two are blended by temporal distance.
    """
    f_a0 = -(1 - a) * a * f01 + a * a * f10
    f_a1 = (1 - a) * (1 - a) * f01 - a * (1 - a) * f10
    return (1 - a) * backward_warp(i0, f_a0) + a * backward_warp(i1, f_a1)


def window_samples(centre: int, span: int, interp: int) -> list[tuple[float, float]]:
    """(time, weight) samples of one exposure: ``centre +- span / 2`` every ``1 / interp``.

    Trapezoid weights (the end samples weigh half) integrate a box exposure exactly when the
    signal is piecewise linear between samples; weights sum to 1.
    """
    half = span * interp // 2
    steps = range(-half, half + 1)
    weights = [0.5 if abs(j) == half else 1.0 for j in steps]
    total = sum(weights)
    return [(centre + j / interp, w / total) for j, w in zip(steps, weights)]


class FlowCache:
    """Linear-light frames and their DIS flows per frame interval, computed once each."""

    def __init__(self, frames: list[np.ndarray], first_index: int):
        self.frames = frames
        self.linear = [srgb_to_linear(f) for f in frames]
        self.first = first_index
        self.flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def at(self, time_: float) -> np.ndarray:
        """The linear-light frame at (fractional) original time ``time_``, (H, W, 3) float32."""
        k = math.floor(time_ + 1e-9)
        a = time_ - k
        i = k - self.first
        if a < 1e-6:
            return self.linear[i]
        f01, f10 = self.flow(k)
        return interpolate(self.linear[i], self.linear[i + 1], f01, f10, a)

    def flow(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The DIS flows (forward, backward) of frame interval [k, k + 1], (H, W, 2) each."""
        i = k - self.first
        if i not in self.flows:
            self.flows[i] = (dis_flow(self.frames[i], self.frames[i + 1]),
                             dis_flow(self.frames[i + 1], self.frames[i]))
        return self.flows[i]


def check_factors(clip: dict) -> None:
    """Refuse factors that cannot make the blur this script describes."""
    span, interp, stride = clip["span"], clip["interp"], clip["stride"]
    if (span * interp) % 2:
        raise DefinitionError(f"{clip['name']}: span * interp must be even to centre the window")
    if span > stride:
        raise DefinitionError(f"{clip['name']}: span {span} > stride {stride} means an exposure "
                              "longer than the frame interval")


def exposure(cache: FlowCache, centre: int, span: int, interp: int) -> np.ndarray:
    """The blurry frame of one exposure: the frames of ``cache`` interpolated every ``1 /
    interp`` over ``centre +- span / 2`` (:func:`window_samples`), averaged in linear light and
    encoded to (H, W, 3) uint8 sRGB."""
    mean = sum(wt * cache.at(t) for t, wt in window_samples(centre, span, interp))
    return linear_to_srgb8(mean)


def synthesise(clip: dict, frames: list[np.ndarray],
               cache: FlowCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blurry and sharp frames of a clip, each (N, h, w, 3) uint8 RGB after the crop.

    ``frames`` are the originals ``frame_range(clip)``, (H, W, 3) uint8; ``cache``, when given,
    is their FlowCache, left holding the flows for :func:`clip_blur_lengths`.
    """
    check_factors(clip)
    lo, _ = frame_range(clip)
    if cache is None:
        cache = FlowCache(frames, lo)
    top, left, h, w = clip["crop"]
    blurry, sharp = [], []
    for n in range(clip["frames"]):
        centre = clip["first_centre"] + n * clip["stride"]
        blurry.append(exposure(cache, centre, clip["span"], clip["interp"])[top:top + h,
                                                                            left:left + w])
        sharp.append(frames[centre - lo][top:top + h, left:left + w])
    return np.stack(blurry), np.stack(sharp)


def clips_digest(blurry: np.ndarray, sharp: np.ndarray) -> str:
    """sha256 over the shapes and bytes of a built clip, to tell whether a rebuild matches."""
    digest = hashlib.sha256()
    for a in (blurry, sharp):
        digest.update(str(a.shape).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------- large-motion measures
# Used by definitions with a "measures" section (real_clips_motion.json): the statistics that
# make the set honest (blur length, moving pixels, duty) and the noisy variant of each clip.


def exposure_intervals(centre: float, span: float) -> list[tuple[int, float]]:
    """(k, share) for every frame interval [k, k + 1] that the exposure ``centre +- span / 2``
    covers, share = the covered part of that interval (0, 1]; shares sum to ``span``."""
    start, end = centre - span / 2, centre + span / 2
    found = []
    for k in range(math.floor(start), math.ceil(end)):
        share = min(end, k + 1) - max(start, k)
        if share > 1e-9:
            found.append((k, share))
    return found


def blur_length(flows: list[np.ndarray], shares: list[float]) -> np.ndarray:
    """Per-pixel path length (px) over an exposure: the sum over its frame intervals of the
    covered share times the length of that interval's forward flow, (H, W, 2) each -> (H, W).

    The flow of each interval is read at the pixel itself, not followed along the pixel's
    path: exact where the motion is the same all along that path (a pan, a rigid object's
    interior), an approximation at motion boundaries.
    """
    total = np.zeros(flows[0].shape[:2], np.float64)
    for flow, share in zip(flows, shares):
        total += share * np.hypot(flow[..., 0], flow[..., 1])
    return total.astype(np.float32)


def box_mean(image: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window around each pixel of (..., H, W), mirrored border
    (OpenCV's BORDER_REFLECT_101); same shape, float64."""
    r = size // 2
    pad = [(0, 0)] * (image.ndim - 2) + [(r, r), (r, r)]
    padded = np.pad(image.astype(np.float64), pad, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(-2, -1))
    return windows.mean(axis=(-2, -1))


def moving_mask(blurry: np.ndarray, sharp: np.ndarray, threshold: float = 4 / 255,
                size: int = 5) -> np.ndarray:
    """Moving pixels of (N, H, W, 3) uint8 frames: where |blurry - sharp| (in [0, 1], mean over
    the channels) averaged over a size x size window exceeds ``threshold``; (N, H, W) bool."""
    diff = np.abs(blurry.astype(np.float64) - sharp.astype(np.float64)).mean(axis=-1) / 255.0
    return box_mean(diff, size) > threshold


def duty(clip: dict) -> float:
    """Exposure over frame interval of a clip's output frames: span / stride."""
    return clip["span"] / clip["stride"]


def check_duty(clips: list[dict], minimum: float) -> list[str]:
    """What breaks the duty rules: span <= stride per clip, median duty >= ``minimum`` per
    split. An empty list when nothing does."""
    problems = [f"{c['name']}: span {c['span']} > stride {c['stride']}"
                for c in clips if c["span"] > c["stride"]]
    for split in sorted({c["split"] for c in clips}):
        median = float(np.median([duty(c) for c in clips if c["split"] == split]))
        if median < minimum:
            problems.append(f"{split}: median duty {median:.3f} < {minimum}")
    return problems


def check_sources(clips: list[dict]) -> list[str]:
    """Source videos (or image sequences) that give clips to more than one split."""
    splits: dict[tuple[str, str], set[str]] = {}
    for c in clips:
        splits.setdefault((c["package"], c.get("video") or c["images"]), set()).add(c["split"])
    return [f"{source} is in {sorted(s)}" for (_, source), s in splits.items() if len(s) > 1]


def noise_sigma(frames: np.ndarray) -> float:
    """Noise standard deviation (8-bit units) of (N, H, W, 3) uint8 frames: Immerkaer's (1996)
    estimate, sqrt(pi / 2) * mean |response| / 6 of the Laplacian-difference kernel, over the
    half of the pixels with the smallest grey gradient, so that edges and texture (which the
    kernel also answers) count little; per channel, pooled."""
    x = frames.astype(np.float64)
    response = (x[:, :-2, :-2] - 2 * x[:, :-2, 1:-1] + x[:, :-2, 2:]
                - 2 * x[:, 1:-1, :-2] + 4 * x[:, 1:-1, 1:-1] - 2 * x[:, 1:-1, 2:]
                + x[:, 2:, :-2] - 2 * x[:, 2:, 1:-1] + x[:, 2:, 2:])
    gy, gx = np.gradient(x.mean(axis=-1), axis=(1, 2))
    gradient = np.hypot(gx, gy)[:, 1:-1, 1:-1]
    flat = gradient <= np.median(gradient)
    return float(math.sqrt(math.pi / 2) * np.abs(response[flat]).mean() / 6.0)


def add_noise(frames: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames plus Gaussian noise of ``sigma`` (8-bit units), rounded."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, frames.shape)
    return np.clip(np.floor(frames + noise + 0.5), 0, 255).astype(np.uint8)


def h264_round_trip(frames: np.ndarray, crf: int, preset: str, fps: int) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames encoded with libx264 (yuv420p, one thread, mbtree off) at
    ``crf`` and decoded back, same shape."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # Both settings keep the bytes the same from run to run: with PyAV's default thread
        # count (one per core), or with x264's macroblock-tree rate control in a process that
        # has imported torch, this libx264 build gave a different encode on most runs.
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, "r") as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(decoded) != len(frames):
        raise DefinitionError(f"H.264 round trip gave {len(decoded)} of {len(frames)} frames")
    return np.stack(decoded)


def noise_seed(name: str) -> int:
    """A clip's fixed noise seed, from its name (the same noise on every machine)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def clip_blur_lengths(clip: dict, cache: FlowCache) -> np.ndarray:
    """Blur length (:func:`blur_length`) of every output frame of a clip, (N, h, w) cropped."""
    top, left, h, w = clip["crop"]
    lengths = []
    for n in range(clip["frames"]):
        intervals = exposure_intervals(clip["first_centre"] + n * clip["stride"], clip["span"])
        flows = [cache.flow(k)[0][top:top + h, left:left + w] for k, _ in intervals]
        lengths.append(blur_length(flows, [share for _, share in intervals]))
    return np.stack(lengths)


def measure(clip: dict, blurry: np.ndarray, sharp: np.ndarray, lengths: np.ndarray,
            settings: dict) -> tuple[dict, np.ndarray]:
    """(measured, noisy): a clip's duty, blur length p90 over moving pixels, moving fraction and
    source noise sigma, and its noisy variant ((N, h, w, 3) uint8)."""
    mask = moving_mask(blurry, sharp, settings["moving_threshold"], settings["moving_box"])
    sigma = noise_sigma(sharp)
    noisy = h264_round_trip(add_noise(blurry, sigma, noise_seed(clip["name"])),
                            settings["crf"], settings["preset"], settings["fps"])
    p90 = float(np.percentile(lengths[mask], 90)) if mask.any() else 0.0
    return {"duty": round(duty(clip), 4), "blur_p90_px": round(p90, 2),
            "moving_fraction": round(float(mask.mean()), 4), "noise_sigma": round(sigma, 3),
            "noisy_digest": clips_digest(noisy, sharp)}, noisy


def check_measured(clip: dict, measured: dict, settings: dict) -> list[str]:
    """What puts a built clip outside the set's blur-length band; empty when nothing does."""
    lo, hi = settings["blur_p90_px"]
    p90 = measured["blur_p90_px"]
    return [] if lo <= p90 <= hi else [f"{clip['name']}: blur p90 {p90} px outside [{lo}, {hi}]"]


# ----------------------------------------------------------------------------- built clips


@dataclass
class BuiltClip:
    """A built clip: (N, h, w, 3) uint8 blurry and sharp frames and, for definitions with a
    "measures" section, the noisy variant of the blurry frames and the clip's measures."""

    blurry: np.ndarray
    sharp: np.ndarray
    noisy: np.ndarray | None = None
    measured: dict | None = None


#: Recorded per clip by --record, so left out of what a built clip depends on.
RECORDED_FIELDS = ("digest", "measured")


def build_key(clip: dict, tools: dict, measures: dict | None = None) -> str:
    """What a built clip depends on: its definition, the tool versions and this code's version
    (and, with ``measures``, those settings and the PyAV version that encodes the noisy
    variant)."""
    key = {"clip": {k: v for k, v in clip.items() if k not in RECORDED_FIELDS}, "tools": tools,
           "synthesis": SYNTHESIS_VERSION, "installed": tool_versions()}
    if measures:
        key.update(measures=measures, measures_version=MEASURES_VERSION, av=av.__version__)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def save_clip(folder: Path, built: BuiltClip, key: str) -> None:
    """Write a built clip's frames as PNGs and its measures, then the key (last = complete)."""
    kinds = [("blurry", built.blurry), ("sharp", built.sharp)]
    if built.noisy is not None:
        kinds.append(("noisy", built.noisy))
    for kind, frames in kinds:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / kind / f"{i:03d}.png")
    if built.measured is not None:
        (folder / "measured.json").write_text(json.dumps(built.measured, indent=1) + "\n")
    (folder / "key.txt").write_text(key + "\n")


def load_clip(folder: Path, count: int) -> BuiltClip:
    """The clip that :func:`save_clip` wrote."""
    def read(kind: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(folder / kind / f"{i:03d}.png").convert("RGB"))
                         for i in range(count)])
    measured = folder / "measured.json"
    return BuiltClip(read("blurry"), read("sharp"),
                     read("noisy") if (folder / "noisy").is_dir() else None,
                     json.loads(measured.read_text()) if measured.is_file() else None)


def tool_versions() -> dict[str, str]:
    """Installed versions of the packages the blur synthesis depends on."""
    return {name: importlib.metadata.version(name)
            for name in ("opencv-python-headless", "numpy")}


def warn_on_tools(tools: dict) -> None:
    """Say when OpenCV / numpy differ from the versions the definition was recorded with."""
    for name, have in tool_versions().items():
        want = tools.get(name)
        if want != have:
            print(f"note: {name} {have} here, the definition was recorded with {want}; "
                  "the blurred clips may differ slightly", file=sys.stderr)


def warn_on_digest(name: str, what: str, got: str, want: str | None) -> None:
    """Say when a clip built here differs from the recorded build."""
    if want and got != want:
        print(f"note: {name} ({what}) built here differs from the recorded build (digest "
              f"{got[:12]} vs {want[:12]}); scores may differ slightly from the recorded ones",
              file=sys.stderr)


def built_clip(clip: dict, definition: dict, cache: Path) -> BuiltClip:
    """Fetch, verify, blur (and measure, where the definition has "measures") and cache one
    clip."""
    package = definition["packages"][clip["package"]]
    root = unpacked_package(clip["package"], package["version"], cache)
    verify_sources(clip, package, root)
    folder = cache / "clips" / clip["name"]
    measures = definition.get("measures")
    key = build_key(clip, definition["tools"], measures)
    key_file = folder / "key.txt"
    if key_file.is_file() and key_file.read_text().strip() == key:
        return load_clip(folder, clip["frames"])
    frames = source_frames(clip, root)
    flows = FlowCache(frames, frame_range(clip)[0])
    built = BuiltClip(*synthesise(clip, frames, flows))
    warn_on_digest(clip["name"], "blurry and sharp", clips_digest(built.blurry, built.sharp),
                   clip.get("digest"))
    if measures:
        built.measured, built.noisy = measure(clip, built.blurry, built.sharp,
                                              clip_blur_lengths(clip, flows), measures)
        warn_on_digest(clip["name"], "noisy", built.measured["noisy_digest"],
                       clip.get("measured", {}).get("noisy_digest"))
    save_clip(folder, built, key)
    return built


def built_clips(definition: dict, clips: list[dict], cache: Path) -> dict[str, BuiltClip]:
    """Every clip of ``clips`` built (:func:`built_clip`), by name; with "measures", a note on
    each clip that this build puts outside the definition's rules."""
    built = {c["name"]: built_clip(c, definition, cache) for c in clips}
    measures = definition.get("measures")
    if measures:
        for c in clips:
            for problem in check_measured(c, built[c["name"]].measured, measures):
                print(f"note: {problem} in this build", file=sys.stderr)
    return built


def check_definition(definition: dict) -> None:
    """Refuse (DefinitionError) a definition with "measures" that breaks its duty rule or
    gives one source to two splits."""
    measures = definition.get("measures")
    if measures:
        problems = (check_duty(definition["clips"], measures["median_duty_min"])
                    + check_sources(definition["clips"]))
        if problems:
            raise DefinitionError("the definition breaks its rules: " + "; ".join(problems))


def record(definition: dict, cache: Path, path: Path = DEFINITION) -> None:
    """Fill the definition's sha256 values, build digests (and measures) from the sources in
    ``cache`` and write it to ``path``; refuse a clip outside the definition's rules.

    For editing the definition only: after this, the recorded values are whatever was fetched.
    """
    check_definition(definition)
    for name, package in definition["packages"].items():
        root = unpacked_package(name, package["version"], cache)
        package["deb_sha256"] = (root / ".unpacked").read_text().strip()
        package["files"] = {}
    for clip in definition["clips"] + definition.get("look", []):
        package = definition["packages"][clip["package"]]
        root = cache / "packages" / f"{clip['package']}_{package['version']}"
        for rel in clip_source_files(clip):
            package["files"][rel] = file_sha256(root / rel)
    measures = definition.get("measures")
    problems = []
    for clip in definition["clips"]:
        for field in RECORDED_FIELDS:
            clip.pop(field, None)
        built = built_clip(clip, definition, cache)
        clip["digest"] = clips_digest(built.blurry, built.sharp)
        if measures:
            clip["measured"] = built.measured
            problems += check_measured(clip, built.measured, measures)
    if problems:
        raise DefinitionError("not recorded: " + "; ".join(problems))
    definition["tools"].update(tool_versions())
    if measures:
        definition["tools"]["av"] = av.__version__
    path.write_text(json.dumps(definition, indent=1) + "\n")


# ----------------------------------------------------------------------------- scoring


def tuned_unsharp(config: str | None, samples: int = 64) -> tuple[float, float]:
    """(sigma, amount) tuned for PSNR on the first ``samples`` training scenes of ``config``
    (``flowdeblur.evaluation.heldout``), so these clips never influence the choice."""
    sigma, amount, _ = tune_unsharp_on_training_scenes(scene_settings(config), samples)
    return sigma, amount


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def mean_scores(output: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB), SSIM and flicker over frames of (N, 3, H, W) output and target; flicker
    is ``flowdeblur.evaluation.metrics.temporal_error`` in 8-bit levels (no flow involved)."""
    flicker = temporal_error(output[:-1], output[1:], sharp[:-1], sharp[1:]).mean().item()
    return {"psnr": psnr(output, sharp).mean().item(), "ssim": ssim(output, sharp).mean().item(),
            "flicker": 255.0 * flicker}


def deblur_clip(model, blurry: torch.Tensor, device: str, ensemble: int = 1,
                runtime: Runtime | None = None) -> torch.Tensor:
    """flowdeblur's output for (N, 3, H, W) frames, quantised to 8 bits, same shape: in fp32
    on ``device``, or as ``runtime`` runs it (then ``device`` is not used)."""
    where = {"runtime": runtime} if runtime is not None else {"device": device,
                                                                "precision": "fp32"}
    out = flowdeblur.deblur_frames(model, list(blurry), ensemble=ensemble, **where)
    return quantize_8bit(torch.stack([o.cpu() for o in out]))


def masked_psnr(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over frames of the PSNR (dB) over the pixels where ``mask`` is set, all channels:
    (N, 3, H, W) in [0, 1] and (N, H, W) bool. Frames without such pixels are left out; nan
    when none has any."""
    values = []
    for out, tgt, m in zip(output.double(), target.double(), mask):
        if m.any():
            mse = (out - tgt)[:, m].square().mean().item()
            values.append(10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf)
    return float(np.mean(values)) if values else math.nan


def score_clip(model, blurry_u8: np.ndarray, sharp_u8: np.ndarray, unsharp: tuple[float, float],
               device: str, ensemble: int = 1, mask: np.ndarray | None = None) -> dict:
    """Scores of the blurry input, unsharp masking and flowdeblur on one clip; with ``mask``
    ((N, H, W) bool), also each one's PSNR over those pixels ("moving_psnr")."""
    blurry, sharp = to_tensor(blurry_u8), to_tensor(sharp_u8)
    t0 = time.perf_counter()
    restored = deblur_clip(model, blurry, device, ensemble)
    seconds = time.perf_counter() - t0
    outputs = {"blurry": blurry, "unsharp": quantize_8bit(unsharp_mask(blurry, *unsharp)),
               "flowdeblur": restored}
    row = {method: mean_scores(out, sharp) for method, out in outputs.items()}
    if mask is not None:
        moving = torch.from_numpy(mask)
        for method, out in outputs.items():
            row[method]["moving_psnr"] = masked_psnr(out, sharp, moving)
    return {**row, "seconds": seconds}


def score_built(model, built: BuiltClip, unsharp: tuple[float, float], device: str,
                ensemble: int, settings: dict | None) -> dict:
    """:func:`score_clip` of a built clip; with ``settings`` (a definition's "measures"), with
    moving-pixel PSNR and the noisy variant's scores under "noisy", both on the moving pixels
    of the clean clip."""
    if settings is None:
        return score_clip(model, built.blurry, built.sharp, unsharp, device, ensemble)
    mask = moving_mask(built.blurry, built.sharp, settings["moving_threshold"],
                       settings["moving_box"])
    row = score_clip(model, built.blurry, built.sharp, unsharp, device, ensemble, mask)
    row["noisy"] = score_clip(model, built.noisy, built.sharp, unsharp, device, ensemble, mask)
    return row


METHODS = ("blurry", "unsharp", "flowdeblur")


def mean_rows(rows: list[dict]) -> dict:
    """The mean over clip rows of every metric of every method (and of the "noisy" rows)."""
    means = {method: {m: float(np.mean([r[method][m] for r in rows])) for m in rows[0][method]}
             for method in METHODS}
    if "noisy" in rows[0]:
        means["noisy"] = mean_rows([r["noisy"] for r in rows])
    return means


def split_means(rows: dict[str, dict], clips: list[dict]) -> dict[str, dict]:
    """Per split: the mean over its clips of each method's clip-mean PSNR and SSIM (and
    moving-pixel PSNR and noisy-variant scores where the rows have them)."""
    means = {}
    for split in ("dev", "test"):
        names = [c["name"] for c in clips if c["split"] == split and c["name"] in rows]
        if names:
            means[split] = mean_rows([rows[n] for n in names])
    return means


def markdown_table(rows: dict[str, dict], means: dict[str, dict], clips: list[dict]) -> str:
    """Per-clip and per-split rows: PSNR / SSIM of blurry, unsharp, flowdeblur, and the gain."""
    lines = ["| split | clip | frames | blurry PSNR | SSIM | unsharp PSNR | SSIM | "
             "flowdeblur PSNR | SSIM | gain (dB) |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]

    def cells(r: dict) -> str:
        gain = r["flowdeblur"]["psnr"] - r["blurry"]["psnr"]
        return " | ".join(f"{r[m]['psnr']:.2f} | {r[m]['ssim']:.4f}"
                          for m in METHODS) + f" | {gain:+.2f}"

    for split in ("dev", "test"):
        for c in clips:
            if c["split"] == split and c["name"] in rows:
                _, _, h, w = c["crop"]
                lines.append(f"| {split} | {c['name']} | {c['frames']} x {w}x{h} | "
                             f"{cells(rows[c['name']])} |")
        if split in means:
            lines.append(f"| **{split} mean** | | | {cells(means[split])} |")
    return "\n".join(lines)


def motion_table(rows: dict[str, dict], means: dict[str, dict], clips: list[dict],
                 measured: dict[str, dict]) -> str:
    """Per clip and split mean: the clip's factors and measures, then PSNR of blurry, unsharp
    and flowdeblur (and flowdeblur's SSIM), moving-pixel PSNR blurry -> flowdeblur, and the
    same three PSNR on the noisy variant."""
    lines = ["| split | clip (package) | stride / span (duty) | blur p90 px | moving | "
             "blurry | unsharp | flowdeblur / SSIM | gain | moving px: blurry -> flowdeblur | "
             "noise sigma | noisy: blurry | unsharp | flowdeblur | gain |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]

    def cells(r: dict, sigma: str) -> str:
        n = r["noisy"]
        return (f"{r['blurry']['psnr']:.2f} | {r['unsharp']['psnr']:.2f} | "
                f"{r['flowdeblur']['psnr']:.2f} / {r['flowdeblur']['ssim']:.4f} | "
                f"{r['flowdeblur']['psnr'] - r['blurry']['psnr']:+.2f} | "
                f"{r['blurry']['moving_psnr']:.2f} -> {r['flowdeblur']['moving_psnr']:.2f} | "
                f"{sigma} | {n['blurry']['psnr']:.2f} | {n['unsharp']['psnr']:.2f} | "
                f"{n['flowdeblur']['psnr']:.2f} | "
                f"{n['flowdeblur']['psnr'] - n['blurry']['psnr']:+.2f}")

    for split in ("dev", "test"):
        for c in clips:
            if c["split"] == split and c["name"] in rows:
                m = measured[c["name"]]
                lines.append(
                    f"| {split} | {c['name']} ({c['package']}) | {c['stride']} / {c['span']} "
                    f"({m['duty']:.2f}) | {m['blur_p90_px']:.1f} | "
                    f"{100 * m['moving_fraction']:.1f} % | "
                    + cells(rows[c["name"]], f"{m['noise_sigma']:.2f}") + " |")
        if split in means:
            lines.append(f"| **{split} mean** | | | | | "
                         + cells(means[split], "") + " |")
    return "\n".join(lines)


def look(model, definition: dict, cache: Path, out_dir: Path, device: str) -> None:
    """Deblur one frame of each look-only clip (paired with the next) and save input | output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for clip in definition.get("look", []):
        package = definition["packages"][clip["package"]]
        root = unpacked_package(clip["package"], package["version"], cache)
        verify_sources(clip, package, root)
        pair = to_tensor(np.stack(read_video(root / clip["video"], clip["frame"],
                                             clip["frame"] + 1)))
        restored = deblur_clip(model, pair, device)[0]
        side = torch.cat([pair[0], restored], dim=-1)
        image = (side.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(image).save(out_dir / f"{clip['name']}_{clip['frame']}.png")
        print(f"wrote {out_dir / (clip['name'] + '_' + str(clip['frame']) + '.png')} "
              "(input | flowdeblur)")


# ----------------------------------------------------------------------------- main


def definition_path(name: str | Path) -> Path:
    """The JSON file of a definition: a name of :data:`DEFINITIONS` or a path."""
    return DEFINITIONS[name] if name in DEFINITIONS else Path(name)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--definition", default="small",
                   help="clip definition: small (real_clips.json, the default), motion "
                        "(real_clips_motion.json) or a JSON file")
    p.add_argument("--weights", default=None,
                   help="weights file (flowdeblur.load_weights); default: the shipped weights")
    p.add_argument("--split", choices=("dev", "test", "all"), default="all")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"folder for packages and built clips (default {DEFAULT_CACHE})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="training config whose scenes tune unsharp masking")
    p.add_argument("--unsharp", nargs=2, type=float, metavar=("SIGMA", "AMOUNT"), default=None,
                   help="skip the tuning and use these unsharp-mask parameters")
    p.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8),
                   help="flowdeblur's self-ensemble size (flowdeblur deblur --ensemble)")
    p.add_argument("--json", default=None, help="write the scores here")
    p.add_argument("--build-only", action="store_true", help="fetch, verify and blur; no scores")
    p.add_argument("--look", type=Path, default=None,
                   help="also deblur a frame of each look-only clip into this folder")
    p.add_argument("--record", action="store_true",
                   help="(editing the definition only) rewrite its sha256 values and digests")
    return p.parse_args()


def load_model(weights: str | None):
    """The model in ``weights`` (a .safetensors file), or the shipped one."""
    return flowdeblur.load_weights(weights) if weights else flowdeblur.load_pretrained()


def load_definition(path: Path) -> dict:
    """A definition file, refused (DefinitionError) when it breaks its own rules."""
    definition = json.loads(path.read_text())
    check_definition(definition)
    return definition


def score_weights(weights: str | None, *, split: str = "all", cache: Path = DEFAULT_CACHE,
                  device: str = "cpu", config: str | None = DEFAULT_CONFIG,
                  unsharp: tuple[float, float] | None = None, ensemble: int = 1,
                  definition: Path = DEFINITION) -> dict:
    """Scores of ``weights`` (None: the shipped ones) on the clips of ``split`` of the
    ``definition`` file, building them first when needed: ``{"weights", "weights_sha256",
    "ensemble", "unsharp", "clips", "means"}`` (and "definition" and "measured" for a definition
    with "measures"). ``unsharp`` (sigma, amount) skips the tuning on ``config``'s scenes."""
    require_opencv()
    spec = load_definition(definition)
    warn_on_tools(spec["tools"])
    clips = [c for c in spec["clips"] if split in ("all", c["split"])]
    built = built_clips(spec, clips, cache)
    model = load_model(weights)
    unsharp = tuple(unsharp) if unsharp else tuned_unsharp(config)
    settings = spec.get("measures")
    with torch.no_grad():
        rows = {name: score_built(model, b, unsharp, device, ensemble, settings)
                for name, b in built.items()}
    weights = weights or str(PRETRAINED)
    report = {"weights": weights, "weights_sha256": file_sha256(Path(weights)),
              "ensemble": ensemble, "unsharp": {"sigma": unsharp[0], "amount": unsharp[1]},
              "clips": rows, "means": split_means(rows, clips)}
    if settings:
        report["definition"] = definition.name
        report["measured"] = {name: b.measured for name, b in built.items()}
    return report


def format_report(report: dict, device: str, definition: Path = DEFINITION) -> str:
    """A line on the weights and settings of a :func:`score_weights` report, then its table."""
    clips = json.loads(definition.read_text())["clips"]
    rows, unsharp = report["clips"], report["unsharp"]
    seconds = sum(r["seconds"] + r.get("noisy", {}).get("seconds", 0.0) for r in rows.values())
    table = (motion_table(rows, report["means"], clips, report["measured"])
             if "measured" in report else markdown_table(rows, report["means"], clips))
    return (f"weights {report['weights']} (ensemble {report['ensemble']}); unsharp mask sigma "
            f"{unsharp['sigma']}, amount {unsharp['amount']}; "
            f"flowdeblur {seconds:.0f} s on {device}\n" + table)


def score_dev(weights: Path, unsharp: tuple[float, float], definition: str = "small") -> dict:
    """Per-clip scores of ``weights`` on the dev clips of the named definition
    (:data:`DEFINITIONS`), on the CPU, cached beside the weights (``dev_STEM.json`` for
    "small", ``dev-NAME_STEM.json`` otherwise) and read from there when present."""
    tag = "dev" if definition == "small" else f"dev-{definition}"
    target = weights.with_name(f"{tag}_{weights.stem}.json")  # raw and average share a folder
    if not target.is_file():
        report = score_weights(str(weights), split="dev", unsharp=unsharp,
                               definition=DEFINITIONS[definition])
        print(format_report(report, "cpu", DEFINITIONS[definition]), flush=True)
        atomic_write_text(target, json.dumps(report, indent=1))
    return json.loads(target.read_text())


def main() -> None:
    args = parse_args()
    torch.set_grad_enabled(False)
    require_opencv()
    path = definition_path(args.definition)
    definition = load_definition(path)
    if args.record:
        record(definition, args.cache, path)
        print(f"recorded sha256 values and digests into {path}")
        return
    if args.build_only:
        warn_on_tools(definition["tools"])
        clips = [c for c in definition["clips"] if args.split in ("all", c["split"])]
        built = built_clips(definition, clips, args.cache)
        for name, b in built.items():
            if b.measured:
                print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in b.measured.items()
                                              if k != "noisy_digest"))
        print(f"built {len(clips)} clips under {args.cache / 'clips'}")
        return
    report = score_weights(args.weights, split=args.split, cache=args.cache, device=args.device,
                           config=args.config, unsharp=args.unsharp, ensemble=args.ensemble,
                           definition=path)
    print(format_report(report, args.device, path))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
    if args.look:
        look(load_model(args.weights), definition, args.cache, args.look, args.device)


if __name__ == "__main__":
    main()
